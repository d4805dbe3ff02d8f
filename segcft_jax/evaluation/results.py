"""Masked accumulation of per-example metrics and the `metrics.json` layout (SPEC §4).

Every reported number is a mean over (example, intervention) pairs:
`mean(path) = sum_b mask_b m_b / sum_b mask_b`, summed in float64 in a fixed order, so two
runs give byte-identical files. Means over no example are `null`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

Path = tuple
LOCALISATION = ("outside_share", "outside_shift", "outside_shift_abs")


class Accumulator:
  """Masked sums and counts per path (a tuple naming section, method, variable, ...)."""

  def __init__(self):
    self._sum: dict[Path, float] = {}
    self._count: dict[Path, int] = {}

  def add(self, path: Path, values: Any, mask: Any) -> None:
    """Adds `values[mask]` (`[B]` each) to `path`."""
    v = np.asarray(values, np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(mask, bool).reshape(-1), v.shape)
    self._sum[path] = self._sum.get(path, 0.0) + float(v[m].sum())
    self._count[path] = self._count.get(path, 0) + int(m.sum())

  def count(self, path: Path) -> int:
    """Number of examples added under `path` (after masking)."""
    return self._count.get(path, 0)

  def mean(self, path: Path) -> float | None:
    """The masked mean, rounded to 6 significant digits; None when empty or not finite."""
    n = self._count.get(path, 0)
    if not n:
      return None
    value = self._sum[path] / n
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _present(d: Mapping[str, Any]) -> dict:
  """Drops None entries and empty dicts."""
  return {k: v for k, v in d.items() if v is not None and v != {}}


def _errors(acc: Accumulator, *path) -> dict:
  return _present({"mape": acc.mean((*path, "mape")), "mae": acc.mean((*path, "mae"))})


def method_metrics(acc: Accumulator, method: str, variables: Sequence[str],
                   kinds: Mapping[str, Sequence[str]], predictors: Sequence[str],
                   own_predictor: str | None, localised: Sequence[str],
                   composition_times: Sequence[int]) -> dict:
  """The SPEC §4 block of one method.

  Args:
    acc: the filled accumulator.
    method: method key.
    variables: evaluated variables.
    kinds: variable -> its intervention kinds.
    predictors: measuring predictors; the first one measures the headline numbers.
    own_predictor: the predictor the method was fine-tuned with (None for no_cft).
    localised: variables with a structure (localisation is defined for them).
    composition_times: numbers of null interventions reported.
  """
  m = method
  out: dict[str, Any] = {"effectiveness": {}, "preservation": {}, "localisation": {},
                         "true_cf": {}}
  for v in variables:
    main = next((p for p in predictors if acc.count(("eff", m, v, "all", p, "mae"))), None)
    if main is None:
      continue
    e = _errors(acc, "eff", m, v, "all", main)
    e["measured_by"] = main
    if own_predictor is not None and acc.count(("eff", m, v, "all", own_predictor, "mae")):
      own = _errors(acc, "eff", m, v, "all", own_predictor)
      e.update({f"{k}_by_predictor": val for k, val in own.items()})
      e["predictor"] = own_predictor
    e["by_predictor"] = _present({p: _errors(acc, "eff", m, v, "all", p) for p in predictors})
    e["by_target"] = _present({k: _errors(acc, "eff", m, v, k, main) for k in kinds[v]})
    e["count"] = acc.count(("eff", m, v, "all", main, "mae"))
    out["effectiveness"][v] = e
    p = _errors(acc, "pres", m, v, main)
    if p:
      p["by_predictor"] = _present({q: _errors(acc, "pres", m, v, q) for q in predictors})
      out["preservation"][v] = p
    if v in localised:
      keys = LOCALISATION
      loc = {k: acc.mean(("loc", m, v, k)) for k in keys}
      loc["by_target"] = _present({
          kind: _present({k: acc.mean(("loc", m, v, kind, k)) for k in keys[:2]})
          for kind in kinds[v]})
      out["localisation"][v] = _present(loc)
    tcf = _present({k: acc.mean(("true_cf", m, v, k)) for k in ("mae", "psnr")})
    if tcf:
      tcf["count"] = acc.count(("true_cf", m, v, "mae"))
      out["true_cf"][v] = tcf
  out["composition"] = _present({f"l1_{n}": acc.mean(("comp", m, n)) for n in composition_times})
  rev = {v: acc.mean(("rev", m, v)) for v in variables}
  out["reversibility"] = _present({"l1": acc.mean(("rev", m, "all")), "by_variable": _present(rev)})
  out["fit"] = _present({"bpd": acc.mean(("fit", m))})
  return _present(out)


def exposure_key(gain: float) -> str:
  """metrics.json key of an exposure gain: 0.9 -> "gain_0.9"."""
  return f"gain_{gain:g}"


def reference_metrics(acc: Accumulator, variables: Sequence[str],
                      predictors: Sequence[str] = (), gains: Sequence[float] = ()) -> dict:
  """Method-independent numbers: the oracle on factual images (vs the true areas) and on the
  rendered true counterfactuals (vs their targets), the localisation of those true
  counterfactuals (`LOCALISATION` keys: what a perfect x* changes outside the target), and each
  predictor's exposure sensitivity `{predictor: {variable: {"gain_<g>": mean % change}}}`."""
  ref = {"oracle_on_factual": {}, "oracle_on_true_cf": {}}
  for v in variables:
    for key in ref:
      errs = _errors(acc, "ref", key, v)
      if errs:
        ref[key][v] = errs
  ref["true_cf_localisation"] = _present({v: _present(
      {k: acc.mean(("ref", "true_cf_localisation", v, k)) for k in LOCALISATION})
      for v in variables})
  ref["exposure_sensitivity"] = _present({p: _present({v: _present(
      {exposure_key(g): acc.mean(("exposure", p, v, float(g))) for g in gains})
      for v in variables}) for p in predictors})
  return _present(ref)
