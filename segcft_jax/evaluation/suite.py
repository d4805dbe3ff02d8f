"""The SPEC §4 evaluation suite over a test subset, for every trained method.

Batch b gets the key k_b = fold_in(PRNGKey(seed), b); every method sees the same keys (the
same posterior samples), so differences between methods are not sampling noise. For each
evaluated variable v (index i) and intervention kind j (`interventions`: an in-batch
permutation and the fixed relative changes), with targets a*_v:

    x*, pa* = counterfactual(x, pa, do(v = a*_v), fold_in(k_b, 1 + 64 i + j))
    effectiveness  |m_p(x*)_v - a*_v| per predictor p (`measure`); MAPE = 100 |.| / a*_v
                   over targets >= 1 px, MAE in pixels; headline p = the oracle
    preservation   the same for every other evaluated variable w, against pa*_w (the PGM's
                   counterfactual: downstream effects are targets, not errors)
    localisation   `metrics.localisation` with T = struct_v(oracle(x)) ∪ struct_v(oracle(x*))
                   (the variable's region only, in the positional setting), dilated
    true_cf        (relative changes) MAE / PSNR of x* against the rendered x*_true
    reversibility  (permutation) x'' = counterfactual(x*, pa*, do(v = a_v), fold_in(k_b,
                   REVERSE + i)); mean |x'' - x| in 0-255 units
    composition    (first batches) null interventions n = 1 .. N, key fold_in(k_b, COMPOSE)
    fit            test -ELBO in bits/dim (the hvae task's eval_fn), key fold_in(k_b, FIT)
    exposure       (per predictor, method-independent) 100 (m_p(g x) - m_p(x)) / m_p(x) of the
                   factual images re-exposed by each gain g (`pipeline.rescale_exposure`),
                   areas >= 1 px: how much each predictor reads areas from the brightness

Each computation is jitted once; the HVAE parameters are an argument, so every method reuses
the same compiled executables.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from segcft_jax.cft import methods as methods_lib
from segcft_jax.data import pipeline
from segcft_jax.evaluation import (interventions, measure, metrics, morphometry, results,
                                   true_cf)
from segcft_jax.evaluation.trained import TRAINING_PREDICTOR, Trained
from segcft_jax.models import hvae as hvae_lib
from segcft_jax.scm import counterfactual as cf_lib

log = logging.getLogger(__name__)

REVERSE, COMPOSE, FIT = 10_000, 20_000, 30_000  # key offsets (below them: interventions)


@dataclasses.dataclass
class Batch:
  """A padded evaluation batch: decoded arrays (with `valid`) and the raw records."""
  index: int
  arrays: dict[str, np.ndarray]
  records: list[dict]


def test_batches(source, keys, batch_size: int, num_examples: int) -> list[Batch]:
  """The first `num_examples` (0: all) examples of `source`, in order, padded batches."""
  n = len(source) if not num_examples else min(num_examples, len(source))
  if n == 0:
    raise ValueError("The test split is empty; nothing to evaluate.")
  decode = pipeline.Decode(keys)
  raw = [source[i] for i in range(n)]
  out = []
  for index, start in enumerate(range(0, n, batch_size)):
    items = raw[start:start + batch_size]
    valid = np.zeros((batch_size,), np.float32)
    valid[:len(items)] = 1.0
    items = items + [items[-1]] * (batch_size - len(items))
    decoded = [decode.map(r) for r in items]
    arrays = {k: np.stack([d[k] for d in decoded]) for k in decoded[0]}
    out.append(Batch(index, dict(arrays, valid=valid), items))
  return out


def _localisation_record(loc) -> dict[str, np.ndarray]:
  """The `results.LOCALISATION` values of one intervention from `metrics.localisation`'s
  output (numpy): share, signed shift and its absolute value, per example."""
  return {"outside_share": loc["outside_share"], "outside_shift": loc["outside_shift"],
          "outside_shift_abs": np.abs(loc["outside_shift"])}


@dataclasses.dataclass
class Examples:
  """Figure material of one method and variable: a few examples of one intervention."""
  kind: str
  x: list = dataclasses.field(default_factory=list)
  x_cf: list = dataclasses.field(default_factory=list)
  target_mask: list = dataclasses.field(default_factory=list)
  factual: list = dataclasses.field(default_factory=list)
  target: list = dataclasses.field(default_factory=list)
  measured: list = dataclasses.field(default_factory=list)


class Suite:
  """Runs the suite; `run(batches)` then `metrics()`, `examples` and `sweep` for figures."""

  def __init__(self, trained: Trained):
    t = self.t = trained
    self.cfg = cfg = trained.config.evaluate
    self.kinds = {v: interventions.kinds(t.graph, v, cfg.relative_changes) for v in t.variables}
    self.predictors = measure.predictors(t)
    self.render = true_cf.renderer(t.config.data.name)
    self.acc = results.Accumulator()
    self.examples: dict[str, dict[str, Examples]] = {m: {} for m in t.methods}
    # method -> variable -> [(target, oracle-measured, kind index)] of every intervention.
    self.sweep: dict[str, dict[str, list]] = {m: {v: [] for v in t.variables} for m in t.methods}
    self.num_examples = 0
    self._cf = jax.jit(self._counterfactual)
    self._score_fn = jax.jit(self._score)
    self._measure = jax.jit(lambda frozen, x, regions: measure.measure(t, frozen, x, regions))
    self._exposed = jax.jit(lambda frozen, x, regions, gain: measure.measure(
        t, frozen, pipeline.rescale_exposure(x, gain), regions))
    self._bpd = jax.jit(self._bits_per_dim)
    self._true_error = jax.jit(metrics.true_counterfactual_error)
    self._true_loc = jax.jit(self._true_localisation, static_argnames="variable")
    self._l1 = jax.jit(metrics.image_l1)

  def figure_kind(self, variable: str) -> str:
    """The intervention shown in the figures: the largest relative change (else permutation)."""
    rel = sorted(self.cfg.relative_changes, key=lambda r: (abs(r), r))
    kinds = self.kinds[variable]
    return interventions.relative_name(rel[-1]) if len(kinds) > 1 and rel else kinds[0]

  # -- jitted computations --------------------------------------------------------------------

  def _counterfactual(self, hvae, frozen, x, parents_n, do_raw, do_mask, rng):
    """`counterfactual` with a do over every evaluated variable (masks select the intervened
    examples), so one executable serves every variable, kind, method and the null do."""
    do_n = self.t.graph.normalize(do_raw)
    do = {v: (do_n[v], do_mask[v]) for v in self.t.variables}
    return cf_lib.counterfactual(self.t.models, {"pgm": frozen["pgm"], "hvae": hvae}, x,
                                 parents_n, do, rng)

  def _bits_per_dim(self, hvae, batch, rng):
    """Test -ELBO in bits/dim of `batch` (the image and the HVAE's parents, data units)."""
    t, parents = self.t, tuple(self.t.config.hvae.parents)
    rngs = hvae_lib.streams(rng)
    pa = t.graph.to_vector(t.graph.normalize({n: batch[n] for n in parents}), parents)
    out = hvae_lib.elbo(t.models.hvae, hvae, batch["image"], pa, t.config.hvae.beta, rngs,
                        training=False)
    return out["nelbo"] / math.log(2.0)

  def _score(self, x, x_cf, parents_cf, measured, labels_f, do_mask, regions):
    """Errors of every predictor against pa* and the localisation of x* - x (SPEC §4)."""
    t = self.t
    targets = t.graph.denormalize({w: parents_cf[w] for w in t.variables})
    errors = {p: {w: {"mae": metrics.absolute_error(a, targets[w]),
                      "mape": metrics.absolute_percentage_error(a, targets[w])}
                  for w, a in measured[p].items()} for p in self.predictors}
    target = jnp.zeros(labels_f.shape, bool)  # [B, H, W]
    for v in t.localised:
      s = measure.structure_union(t, v, labels_f, measured["labels"], regions)
      target = target | (s & do_mask[v][:, None, None])
    loc = metrics.localisation(x, x_cf, target, self.cfg.dilation)
    return dict(targets=targets, errors=errors,
                target_mask=metrics.dilate(target, self.cfg.dilation), **loc)

  def _true_localisation(self, x, x_true, labels_f, labels_true, regions, variable):
    """`localisation` of the rendered true counterfactual: what a perfect x* changes outside
    T (e.g. under do(heart) the lungs refit to keep their visible areas)."""
    target = measure.structure_union(self.t, variable, labels_f, labels_true, regions)
    return metrics.localisation(x, x_true, target, self.cfg.dilation)

  def _intervene(self, hvae, x, parents_n, do_raw, do_mask, labels_f, regions, rng) -> dict:
    """x*, pa*, the oracle's areas of x* and `_score`, as numpy arrays."""
    x_cf, parents_cf = jax.device_get(
        self._cf(hvae, self.t.frozen, x, parents_n, do_raw, do_mask, rng))
    measured = measure.add_morphometry(
        self.t, x_cf, jax.device_get(self._measure(self.t.frozen, x_cf, regions)))
    scores = self._score_fn(x, x_cf, parents_cf, measured, labels_f, do_mask, regions)
    return dict(jax.device_get(scores), x_cf=x_cf, parents_cf=parents_cf,
                oracle=measured["oracle"])

  # -- host loop ------------------------------------------------------------------------------

  def run(self, batches: list[Batch]) -> None:
    """Evaluates every method on every batch (in order), filling `acc`, `examples`, `sweep`."""
    for batch in batches:
      t0 = time.perf_counter()
      self._batch(batch)
      log.info("[evaluate] batch %d/%d, %d method(s): %.1f s", batch.index + 1, len(batches),
               len(self.t.methods), time.perf_counter() - t0)

  def _add_errors(self, path, errors, target, mask) -> None:
    self.acc.add((*path, "mae"), errors["mae"], mask)
    self.acc.add((*path, "mape"), errors["mape"], mask & (np.asarray(target) >= 1.0))

  def _batch(self, batch: Batch) -> None:
    t, cfg, a = self.t, self.cfg, batch.arrays
    valid = a["valid"] > 0
    self.num_examples += int(valid.sum())
    x, regions = a["image"], a.get("regions")
    parents_n = jax.device_get(t.graph.normalize({n: a[n] for n in t.graph.order}))
    factual = measure.add_morphometry(t, x, jax.device_get(self._measure(t.frozen, x, regions)))
    for v, m in factual["oracle"].items():
      err = {"mae": np.abs(m - a[v]), "mape": 100.0 * np.abs(m - a[v]) / np.maximum(a[v], 1e-8)}
      self._add_errors(("ref", "oracle_on_factual", v), err, a[v], valid)
    for gain in cfg.exposure_gains:
      exposed = jax.device_get(self._exposed(t.frozen, x, regions, float(gain)))
      for p in self.predictors:
        for w, m in exposed[p].items():
          base = np.asarray(factual[p][w])
          change = 100.0 * (np.asarray(m) - base) / np.maximum(base, 1.0)
          self.acc.add(("exposure", p, w, float(gain)), change, valid & (base >= 1.0))
    plans = []
    none = np.zeros_like(valid)
    for i, v in enumerate(t.variables):
      for j, kind in enumerate(self.kinds[v]):
        target, mask = interventions.targets(t.graph, v, kind, a[v], valid, cfg.relative_changes,
                                             cfg.seed, batch.index, i)
        do_raw = {u: (target if u == v else a[u]) for u in t.variables}
        do_mask = {u: (mask if u == v else none) for u in t.variables}
        true = None
        if self.render is not None and kind != interventions.PERMUTATION:
          images, rendered = true_cf.render_batch(self.render, batch.records, v, target, mask,
                                                  x.shape[1])
          if v in t.structures:
            on_true = jax.device_get(self._measure(t.frozen, images, regions))
            m = on_true["oracle"][v]
            err = {"mae": np.abs(m - target),
                   "mape": 100.0 * np.abs(m - target) / np.maximum(target, 1e-8)}
            self._add_errors(("ref", "oracle_on_true_cf", v), err, target, rendered)
            loc = _localisation_record(jax.device_get(self._true_loc(
                x, images, factual["labels"], on_true["labels"], regions, variable=v)))
            for k, val in loc.items():
              self.acc.add(("ref", "true_cf_localisation", v, k), val, rendered)
          true = (images, rendered)
        plans.append((i, j, v, kind, do_raw, do_mask, mask, true))
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), batch.index)
    for method, hvae in t.methods.items():
      self._method_batch(method, hvae, batch, key, parents_n, factual["labels"], plans)

  def _method_batch(self, method, hvae, batch, key, parents_n, labels_f, plans) -> None:
    t, cfg, a, acc = self.t, self.cfg, batch.arrays, self.acc
    x, regions, valid = a["image"], a.get("regions"), a["valid"] > 0
    for i, j, v, kind, do_raw, do_mask, mask, true in plans:
      out = self._intervene(hvae, x, parents_n, do_raw, do_mask, labels_f, regions,
                            jax.random.fold_in(key, 1 + 64 * i + j))
      for p in self.predictors:
        for w, errors in out["errors"][p].items():
          if w == v:
            for k in (kind, "all"):
              self._add_errors(("eff", method, v, k, p), errors, out["targets"][v], mask)
          else:
            self._add_errors(("pres", method, w, p), errors, out["targets"][w], mask)
      if v in t.localised:
        loc = _localisation_record(out)
        for k, val in loc.items():
          acc.add(("loc", method, v, k), val, mask)
          acc.add(("loc", method, v, kind, k), val, mask)
      if v in out["oracle"]:
        self.sweep[method][v].append(np.stack([out["targets"][v][mask], out["oracle"][v][mask],
                                               np.full(int(mask.sum()), j)], axis=1))
      if true is not None:
        err = jax.device_get(self._true_error(out["x_cf"], true[0]))
        for k in ("mae", "psnr"):
          acc.add(("true_cf", method, v, k), err[k], true[1])
      if kind == interventions.PERMUTATION:
        back = {u: a[u] for u in t.variables}
        x_back, _ = jax.device_get(self._cf(hvae, t.frozen, out["x_cf"], out["parents_cf"], back,
                                            do_mask, jax.random.fold_in(key, REVERSE + i)))
        l1 = jax.device_get(self._l1(x_back, x))
        acc.add(("rev", method, v), l1, mask)
        acc.add(("rev", method, "all"), l1, mask)
      if batch.index == 0 and kind == self.figure_kind(v):
        self._keep_examples(method, v, kind, x, a[v], out, mask)
    times = int(cfg.composition_times)
    if times and batch.index < math.ceil(cfg.composition_examples / len(valid)):
      null_raw = {u: a[u] for u in t.variables}
      null_mask = {u: np.zeros_like(valid) for u in t.variables}
      cf = lambda x_n, pa, do, rng: jax.device_get(
          self._cf(hvae, t.frozen, x_n, pa, null_raw, null_mask, rng))
      series = metrics.composition_series(cf, x, parents_n, jax.random.fold_in(key, COMPOSE),
                                          times)
      for n in sorted({1, times}):
        acc.add(("comp", method, n), jax.device_get(series[n - 1]), valid)
    fit_batch = {"image": x, **{n: a[n] for n in t.config.hvae.parents}}
    acc.add(("fit", method), jax.device_get(self._bpd(hvae, fit_batch,
                                                      jax.random.fold_in(key, FIT))), valid)

  def _keep_examples(self, method, variable, kind, x, factual, out, mask) -> None:
    ex = self.examples[method].setdefault(variable, Examples(kind))
    for b in np.flatnonzero(mask)[:max(0, self.cfg.figure_examples - len(ex.x))]:
      ex.x.append(x[b, ..., 0])
      ex.x_cf.append(out["x_cf"][b, ..., 0])
      ex.target_mask.append(out["target_mask"][b])
      ex.factual.append(float(factual[b]))
      ex.target.append(float(out["targets"][variable][b]))
      ex.measured.append(float(out["oracle"].get(variable, np.full(len(mask), np.nan))[b]))

  # -- results --------------------------------------------------------------------------------

  def conventions(self) -> dict[str, Any]:
    """metrics.json["conventions"]: every definition and unit the numbers follow (SPEC §4)."""
    cfg = self.cfg
    return {
        "measured_by": "oracle", "oracle": "hard argmax area of the evaluation-only oracle "
        "segmentor (never used in fine-tuning)", "area_units": "pixels",
        "pixel_units": "0-255", "area_error": cfg.area_error,
        "mape": "100 |measured - target| / target, over targets >= 1 px",
        "mae": "|measured - target| in pixels",
        "targets": "in-batch permutation (a random cyclic shift of the batch, no fixed points) "
                   "and fixed relative changes a* = (1 + r) a of positive factual values",
        "relative_changes": [float(r) for r in cfg.relative_changes],
        "preservation": "error of each non-intervened variable against its counterfactual "
                        "value pa* from the PGM, over the interventions on the other variables",
        "localisation": f"share of sum |x* - x| outside T = (factual ∪ counterfactual oracle "
                        f"mask of the intervened structure, its region only in the positional "
                        f"setting) dilated by {cfg.dilation} px; outside_shift = mean signed "
                        f"x* - x outside T in 0-255 units (it cancels between opposite "
                        f"interventions: see by_target, and outside_shift_abs = mean of its "
                        f"absolute value)",
        "true_cf": "mean |x* - x*_true| (0-255) and PSNR (dB) against the phantom renderer's "
                   "true counterfactual, relative-change interventions",
        "true_cf_localisation": "the localisation measures of x*_true - x (T from the oracle "
                                "on x and x*_true), relative-change interventions",
        "composition": f"mean |x^(n) - x| (0-255) after n null interventions, "
                       f"n = 1 and {cfg.composition_times}, on the first "
                       f"{cfg.composition_examples} examples",
        "reversibility": "x -> do(v = a*) -> do(v = a), mean |x'' - x| (0-255), permutation "
                         "targets",
        "fit": "test -ELBO in bits/dim",
        "exposure_sensitivity": "per predictor, mean 100 (m(x') - m(x)) / m(x) of its measurement "
                                "of the factual test images x re-exposed by a global gain g, "
                                "x01' = clip(g x01, 0, 1), over areas m(x) >= 1 px",
        "exposure_gains": [float(g) for g in cfg.exposure_gains],
        "predictors": list(self.predictors), "training_predictor": dict(TRAINING_PREDICTOR),
        "split": "test", "num_examples": self.num_examples, "batch_size": cfg.batch_size,
        "seed": cfg.seed, "setting": methods_lib.setting(self.t.config),
        **({"morphometric": {
            "variables": list(self.t.morphometric),
            "oracle": "non-learned (evaluation.morphometry): thickness = 2 mean distance "
                      "transform along the skeleton of the Otsu-binarised 4x bicubic upsample "
                      "/ 4 (px); intensity = median of the pixels >= Otsu's threshold (0-255)",
            "localised_by": f"the oracle mask of {morphometry.STRUCTURE!r}"}}
           if self.t.morphometric else {})}

  def metrics(self) -> dict[str, Any]:
    """metrics.json: conventions, method-independent reference floors and every method."""
    times = sorted({1, int(self.cfg.composition_times)}) if self.cfg.composition_times else []
    methods = {m: results.method_metrics(
        self.acc, m, self.t.variables, self.kinds, self.predictors, TRAINING_PREDICTOR.get(m),
        tuple(self.t.localised), times) for m in self.t.methods}
    return {"conventions": self.conventions(),
            "reference": results.reference_metrics(self.acc, self.t.variables, self.predictors,
                                                   tuple(self.cfg.exposure_gains)),
            "methods": methods}
