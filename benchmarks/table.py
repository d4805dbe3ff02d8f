"""Markdown table of the latest `steps.py` figures per (config, step) of a results file.

  python benchmarks/table.py [--results=benchmarks/results/cpu-2core.jsonl] [--commit=abc1234]

Rows are the newest record of each (config, step, batch, mesh size, compute dtype) — of
`--commit` only if given — in the order of `steps.py`'s configs and steps; bfloat16 rows are
marked in the step column. The ratio column divides a float32 row's img/s by the PyTorch
reference of that config and step (float32): the median of the side-by-side
`reference_causal_gen.py` records in the same file (same config, step and batch; those of the
row's commit if there are any), else the errata's figure (marked "errata").
"""

from __future__ import annotations

import json
import os
import statistics
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.steps import CONFIGS, STEPS
# pylint: enable=g-import-not-at-top,wrong-import-position

# Throughput targets: multiples of the reference at identical architecture and batch.
TARGET = {"morphomnist": 2.0, "chest64": 1.5}
# PyTorch causal-gen on the 2-core CPU machine type, batch 32 (design errata; CFT: the issue).
ERRATA = {("morphomnist", "train"): 108.0, ("morphomnist", "counterfactual"): 205.0,
          ("morphomnist", "cft_reg"): 34.0, ("chest64", "train"): 28.0,
          ("chest64", "counterfactual"): 48.0}
# This project's step name -> the reference script's.
REFERENCE_STEP = {"cft_reg": "cft"}


def _dtype(record: dict) -> str:
  return record.get("compute_dtype", "float32")  # records before the option: float32


def reference(row: dict, records: list[dict]) -> tuple[float, str] | None:
  """`(img/s, source)` of the reference for a float32 `steps` record, or None if there is
  none (or the row is not float32: the reference runs in float32 only)."""
  if _dtype(row) != "float32":
    return None
  step = REFERENCE_STEP.get(row["step"], row["step"])
  refs = [r for r in records if r.get("benchmark") == "reference_causal_gen"
          and r["config"] == row["config"] and r["step"] == step and r["batch"] == row["batch"]]
  same = [r for r in refs if r.get("commit") == row.get("commit")]
  if refs:
    figures = [r["img_per_s_median"] for r in (same or refs)]
    return statistics.median(figures), f"side by side, {len(figures)} run(s)"
  if (row["config"], row["step"]) in ERRATA:
    return ERRATA[(row["config"], row["step"])], "errata"
  return None


def latest(records: list[dict], commit: str | None = None) -> list[dict]:
  """The newest `steps` record per (config, step, batch, mesh size, compute dtype), in
  benchmark order (float32 before bfloat16)."""
  rows = {}
  for r in records:
    if r.get("benchmark") != "steps" or (commit and r.get("commit") != commit):
      continue
    key = (r["config"], r["step"], r["batch"], r.get("mesh_devices", 1), _dtype(r))
    rows[key] = r  # later wins
  order = lambda k: (CONFIGS.index(k[0]) if k[0] in CONFIGS else 99,
                     STEPS.index(k[1]) if k[1] in STEPS else 99, k[2], k[3], k[4] != "float32")
  return [rows[k] for k in sorted(rows, key=order)]


def markdown(rows: list[dict], records: list[dict] = ()) -> str:
  """One table line per record: img/s median (min-max), reference ratio, compile, FLOPs.

  `records`: the whole results file, where the side-by-side reference runs are looked up.
  """
  out = ["| config | step | batch | img/s | reference img/s | ratio (target) | compile s "
         "| GFLOP/step | GFLOP/s | peak MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ref = reference(r, list(records))
    target = TARGET.get(r["config"])
    ratio = "—"
    if ref:
      ratio = f"{r['img_per_s_median'] / ref[0]:.2f}×" + (f" (≥ {target:g}×)" if target else "")
    ref_text = f"{ref[0]:.1f} ({ref[1]})" if ref else "—"
    step_note = "" if _dtype(r) == "float32" else f" ({_dtype(r)})"
    out.append(
        f"| {r['config']} | {r['step']}{step_note} | {r['batch']} | {r['img_per_s_median']:.1f} "
        f"({r['img_per_s_min']:.1f}–{r['img_per_s_max']:.1f}) | {ref_text} "
        f"| {ratio} | {r['compile_s']:.1f} | {r['flops_per_step'] / 1e9:.2f} "
        f"| {r['flops_per_s'] / 1e9:.1f} | {r['peak_bytes'] / 2**20:,.0f} |")
  return "\n".join(out)


def main(argv):
  del argv
  f = flags.FLAGS
  with open(f.results) as fh:
    records = [json.loads(line) for line in fh if line.strip()]
  print(markdown(latest(records, f.commit), records))


if __name__ == "__main__":
  flags.DEFINE_string("results", os.path.join(ROOT, "benchmarks", "results", "cpu-2core.jsonl"),
                      "Results file written by steps.py.")
  flags.DEFINE_string("commit", None, "Only records of this git commit (short hash).")
  app.run(main)
