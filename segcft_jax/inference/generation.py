"""A counterfactual dataset: every example of a split under every intervention rule, written
shard by shard so that an interrupted run resumes without rewriting finished shards.

    <out>/generate.json           the run's settings (another run's are refused)
    <out>/images/<e>_<k>.png      counterfactual k of example e of the split
    <out>/shards/<s>.csv          the rows of shard s, written last (its presence = done)
    <out>/counterfactuals.csv     every row: file, example, variable, rule, target, each
                                  variable before / after, the oracle's areas of x and x*

Rules: `heart_area=-15%` (relative), `heart_area=250` (absolute), `heart_area=-30%:+30%:15`
(a sweep of relative changes, 0 left out); `per_image=K` draws K more per example, a
variable and a change of `config.evaluate.relative_changes` each, from (seed, example).
Counterfactual noise of a shard comes from (seed, shard), so the files depend only on the
settings, not on interruptions.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import time
from typing import Any, Sequence

import numpy as np
from PIL import Image

from segcft_jax.evaluation.interventions import in_support
from segcft_jax.inference.batched import Model
from segcft_jax.inference.requests import parse_value
from segcft_jax.train import metrics_log

log = logging.getLogger("segcft_jax")

_SWEEP = re.compile(r"^([+-]?\d+(?:\.\d+)?)%:([+-]?\d+(?:\.\d+)?)%:(\d+(?:\.\d+)?)$")


@dataclasses.dataclass(frozen=True)
class Rule:
  """One intervention: `variable` set to `value` (a % change when `relative`)."""
  variable: str
  value: float
  relative: bool

  @property
  def text(self) -> str:
    return f"{self.value:+g}%" if self.relative else f"{self.value:g}"


def parse_rules(specs: Sequence[str], intervenable: Sequence[str]) -> list[Rule]:
  """`--do` rules -> `Rule`s (a sweep expands to one rule per change)."""
  rules = []
  for spec in specs:
    name, sep, value = spec.partition("=")
    name = name.strip()
    if not sep or name not in intervenable:
      raise ValueError(f"--do {spec!r}: expected VARIABLE=VALUE with VARIABLE one of "
                       f"{', '.join(intervenable)}.")
    sweep = _SWEEP.match(value.strip())
    if sweep:
      lo, hi, step = map(float, sweep.groups())
      if step <= 0 or hi < lo:
        raise ValueError(f"--do {spec!r}: a sweep is FROM%:TO%:STEP with FROM <= TO, STEP > 0.")
      changes = np.round(np.arange(lo, hi + step / 2, step), 6)
      rules += [Rule(name, float(c), True) for c in changes if c != 0]
    else:
      num, rel = parse_value(name, value.strip())
      if rel and num <= -100:
        raise ValueError(f"--do {spec!r}: a change of {num:g}% leaves no {name}.")
      rules.append(Rule(name, num, rel))
  return rules


def plan(num_examples: int, rules: Sequence[Rule], per_image: int,
         variables: Sequence[str], changes: Sequence[float], seed: int
         ) -> list[tuple[int, int, Rule]]:
  """(example, k, rule) of every counterfactual, in output order."""
  items = []
  for e in range(num_examples):
    drawn = []
    rng = np.random.default_rng([seed, e])
    for _ in range(per_image):
      v, c = variables[rng.integers(len(variables))], changes[rng.integers(len(changes))]
      drawn.append(Rule(v, round(100.0 * float(c), 6), True))
    items += [(e, k, r) for k, r in enumerate([*rules, *drawn])]
  return items


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def _write_atomic(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def check_out_dir(out: str, settings: dict, overwrite: bool) -> None:
  """Refuses an output directory holding another run's files (unless `overwrite`)."""
  path = os.path.join(out, "generate.json")
  if os.path.exists(path):
    with open(path) as f:
      try:
        old = json.load(f)
      except ValueError:
        old = {}
    changes = metrics_log.differences(old, metrics_log.canonical(settings))
    if changes and not overwrite:
      raise FileExistsError(f"{out} holds another generation ({'; '.join(changes[:3])}); "
                            f"choose another --out, or --overwrite to replace it.")
    if changes:  # --overwrite: the other run's shards must not count as this run's
      for name in ("shards", "images"):
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)
      for name in ("counterfactuals.csv", "generate.json"):
        with contextlib.suppress(FileNotFoundError):
          os.remove(os.path.join(out, name))
  elif os.path.isdir(out) and set(os.listdir(out)) - {"inputs.csv"} and not overwrite:
    raise FileExistsError(f"{out} is not empty and holds no generate.json; choose another "
                          f"--out, or --overwrite to write into it.")


class Generator:
  """Writes the counterfactuals of `items` (`plan`) of `examples` into `out`, by shards."""

  def __init__(self, model: Model, out: str, settings: dict, shard_size: int = 256):
    self.model, self.out, self.settings, self.shard_size = model, out, settings, shard_size
    self.graph = model.trained.graph
    self.write_seconds = 0.0  # time spent encoding and writing PNGs (in the writer thread)
    self.skipped = 0  # rules whose target leaves the support

  def _write_png(self, path: str, image: np.ndarray) -> None:
    t0 = time.perf_counter()
    _write_atomic(path, _png(image))
    self.write_seconds += time.perf_counter() - t0

  def _columns(self) -> list[str]:
    names = list(self.graph.order)
    measured = sorted(self.model.trained.structures)
    return (["file", "example", "variable", "rule", "target"]
            + [f"{v}_{w}" for v in names for w in ("before", "after")]
            + [f"measured_{v}_{w}" for v in measured for w in ("before", "after")])

  def _shard(self, s: int, items, images, parents, regions, writer) -> list[dict]:
    """The rows of shard `s`, computed in one `Model.counterfactual` call (each row's
    variable set, NaN elsewhere); its PNGs go to `writer` (a thread: encoding and writing
    overlap the next shard's counterfactuals)."""
    rows = []
    examples = np.array(sorted({e for e, _, _ in items}))
    measured = self.model.measure(images[examples],
                                  None if regions is None else regions[examples])
    at = {e: i for i, e in enumerate(examples)}  # once per example, not per rule
    idx = np.array([e for e, _, _ in items])
    factual = {v: parents[v][idx] for v in parents}
    variables = sorted({r.variable for _, _, r in items})
    targets = {v: np.full(len(items), np.nan) for v in variables}  # NaN: not this row's
    for i, (_, _, r) in enumerate(items):
      before = factual[r.variable][i]
      targets[r.variable][i] = before * (1 + r.value / 100) if r.relative else r.value
    # A relative change that leaves a variable's support (e.g. +30 % of a thickness near its
    # upper bound) has no counterfactual: those rows are skipped and counted.
    keep = np.ones(len(items), bool)
    for v in variables:
      rows_v = ~np.isnan(targets[v])
      keep[rows_v] &= in_support(self.graph[v], targets[v][rows_v])
    if not keep.all():
      self.skipped += int((~keep).sum())
      log.warning("[generate] shard %d: %d rule(s) leave their variable's support; skipped",
                  s, int((~keep).sum()))
      items, idx = [it for it, k in zip(items, keep) if k], idx[keep]
      factual = {v: a[keep] for v, a in factual.items()}
      targets = {v: a[keep] for v, a in targets.items()}
      if not items:
        return []
    out = self.model.counterfactual(
        images[idx], factual, do=targets,
        regions=None if regions is None else regions[idx],
        measured={v: m[[at[e] for e in idx]] for v, m in measured.items()},
        seed=int(np.random.default_rng([self.settings["seed"], s]).integers(2 ** 31)))
    for i, (e, k, r) in enumerate(items):
      name = f"{e:06d}_{k:03d}.png"
      writer.append(self._pool.submit(self._write_png, os.path.join(self.out, "images", name),
                                      out.images[i]))
      row = dict(file=f"images/{name}", example=e, variable=r.variable, rule=r.text,
                 target=float(targets[r.variable][i]))
      for v in self.graph.order:
        row[f"{v}_before"] = float(out.parents_before[v][i])
        row[f"{v}_after"] = float(out.parents_after[v][i])
      for v in out.measured_before:
        row[f"measured_{v}_before"] = float(out.measured_before[v][i])
        row[f"measured_{v}_after"] = float(out.measured_after[v][i])
      rows.append(row)
    return rows

  def run(self, items, images: np.ndarray, parents: dict, regions=None) -> str:
    """Writes every shard not yet written, then `counterfactuals.csv`; returns its path."""
    os.makedirs(os.path.join(self.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(self.out, "shards"), exist_ok=True)
    metrics_log.write_json(os.path.join(self.out, "generate.json"), self.settings)
    examples = sorted({e for e, _, _ in items})
    shards = [examples[i:i + self.shard_size]
              for i in range(0, len(examples), self.shard_size)]
    t0, columns = time.perf_counter(), self._columns()
    with concurrent.futures.ThreadPoolExecutor(1) as self._pool:
      self._write_shards(shards, items, images, parents, regions, columns, t0)
    final = os.path.join(self.out, "counterfactuals.csv")
    parts = [open(os.path.join(self.out, "shards", f"{s:05d}.csv")).read().splitlines()
             for s in range(len(shards))]
    lines = parts[0][:1] + [l for p in parts for l in p[1:]]
    _write_atomic(final, ("\n".join(lines) + "\n").encode())
    return final

  def _write_shards(self, shards, items, images, parents, regions, columns, t0) -> None:
    done_now = 0
    for s, shard in enumerate(shards):
      path = os.path.join(self.out, "shards", f"{s:05d}.csv")
      if os.path.exists(path):
        continue
      members, pending = set(shard), []
      rows = self._shard(s, [it for it in items if it[0] in members], images, parents,
                         regions, pending)
      for future in pending:  # every PNG of the shard is on disk before its CSV
        future.result()
      text = io.StringIO()
      writer = csv.DictWriter(text, columns, lineterminator="\n")
      writer.writeheader()
      writer.writerows(rows)
      _write_atomic(path, text.getvalue().encode())
      done_now += len(rows)
      rate = done_now / max(time.perf_counter() - t0, 1e-9)
      left = sum(1 for it in items if it[0] > shard[-1])
      log.info("[generate] shard %d/%d: %d counterfactuals | %.1f img/s | ETA %s", s + 1,
               len(shards), len(rows), rate, metrics_log.format_seconds(left / rate))
