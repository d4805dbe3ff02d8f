"""Normalisation statistics measured on the training split, for variables declared without them.

A continuous variable with ``norm`` in :data:`MEASURABLE` may leave ``mean`` and ``std`` as
None in ``config.scm``: the data stage then measures them on the train split,

    mean = E[t(v)],  std = sqrt(Var[t(v)])  with t = log, log1p or the identity

(the transform of the declared norm, :mod:`segcft_jax.scm.graph`), and every later stage runs
with the measured numbers written into its config. A real dataset's organ areas are known only
after the build (their scale follows the image size and the masks), so nobody has to type
them. A ``range`` norm's bounds are a modelling choice (the support), never measured.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import ml_collections
import numpy as np

__all__ = ["MEASURABLE", "unmeasured", "measure", "statistics", "fill"]

_TRANSFORMS = {"log_standard": np.log, "log1p_standard": np.log1p, "standard": lambda v: v}
MEASURABLE = tuple(_TRANSFORMS)


def unmeasured(scm: Mapping[str, Any]) -> tuple[str, ...]:
  """Names of the continuous variables of ``config.scm`` whose mean or std is None."""
  return tuple(n for n, v in scm["variables"].items()
               if v.get("type") == "continuous" and v.get("norm") in MEASURABLE
               and (v.get("mean") is None or v.get("std") is None))


def measure(values: np.ndarray, norm: str, name: str = "variable") -> dict[str, float]:
  """``{mean, std}`` of ``t(values)`` for ``norm``'s transform ``t`` (population std).

  Raises:
    ValueError: values outside the transform's support, or a constant variable.
  """
  v = np.asarray(values, np.float64)
  low = {"log_standard": (v <= 0, "positive"), "log1p_standard": (v < 0, "non-negative")}
  if norm in low and np.any(low[norm][0]):
    raise ValueError(f"{name}: norm={norm!r} needs {low[norm][1]} values; the train split "
                     f"has min {v.min():g}. Choose another norm in config.scm.")
  t = _TRANSFORMS[norm](v)
  if not (t.size and np.all(np.isfinite(t)) and t.std() > 0):
    raise ValueError(f"{name}: cannot measure norm={norm!r} statistics from {t.size} train "
                     f"values (non-finite or constant); set its mean and std in config.scm.")
  return dict(mean=round(float(t.mean()), 6), std=round(float(t.std()), 6))


def statistics(scm: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> dict[str, dict]:
  """``{name: {norm, mean, std}}`` for every measurable variable with a column in ``columns``
  (declared statistics or not: the data stage reports them all)."""
  out = {}
  for n, v in scm["variables"].items():
    if v.get("type") == "continuous" and v.get("norm") in MEASURABLE and n in columns:
      out[n] = dict(norm=v["norm"], **measure(columns[n], v["norm"], n))
  return out


def fill(config: ml_collections.ConfigDict, stats: Mapping[str, Mapping[str, float]],
         where: str) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose unmeasured variables take the measured ``stats``.

  Args:
    config: the experiment config (``config.scm.variables``).
    stats: ``statistics(...)`` of the train split (the data stage's summary).
    where: where ``stats`` came from, for the error message.

  Raises:
    ValueError: a variable to fill that ``stats`` lacks, or was measured under another norm.
  """
  names = unmeasured(config.scm)
  if not names:
    return config
  out = copy.deepcopy(config)
  with out.unlocked():
    for n in names:
      v, s = out.scm.variables[n], stats.get(n)
      if s is None or s.get("norm") != v.norm:
        raise ValueError(f"config.scm.variables.{n} (norm={v.norm!r}) leaves mean/std to be "
                         f"measured, but {where} has no {v.norm} statistics of {n!r}: move "
                         f"that file aside and run --stages=data (it re-measures without "
                         f"rebuilding), or set them in the config.")
      v.mean, v.std = float(s["mean"]), float(s["std"])
  return out
