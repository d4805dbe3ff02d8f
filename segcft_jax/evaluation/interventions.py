"""The evaluation's intervention targets, drawn on the host from the batch index (SPEC §4).

For a variable v with factual values a_b (data units) in a batch with valid examples V:

* **permutation**: a random cyclic shift of V: with pi a random order of V (drawn from
  `default_rng([seed, batch index, variable index])`), a*_{pi_i} = a_{pi_(i+1 mod |V|)}.
  An in-batch permutation without fixed points (for |V| >= 2), i.e. a draw from the
  empirical marginal of v that always names another example's value.
* **relative change r** (e.g. "-30%"): a*_b = (1 + r) a_b, applied where a_b > 0 (a relative
  change of a zero area, e.g. an absent plaque, is no intervention) and only for continuous
  variables.

Each returns `(targets [B], mask [B])`; examples outside the mask keep their factual value
and are not intervened (`do` masks), and targets outside the variable's support are masked.
"""

from __future__ import annotations

import numpy as np

from segcft_jax.scm.graph import Graph, Variable

PERMUTATION = "permutation"


def relative_name(change: float) -> str:
  """-0.3 -> "-30%", 0.15 -> "+15%"."""
  return f"{100.0 * change:+.0f}%"


def kinds(graph: Graph, variable: str, relative_changes) -> tuple[str, ...]:
  """Intervention kinds evaluated for `variable` (relative changes: continuous only)."""
  rel = tuple(relative_name(r) for r in relative_changes)
  return (PERMUTATION, *rel) if graph[variable].type == "continuous" else (PERMUTATION,)


def in_support(var: Variable, values: np.ndarray) -> np.ndarray:
  """Element-wise: whether `values` (data units) lie in the variable's support."""
  v = np.asarray(values, np.float64)
  ok = np.isfinite(v)
  if var.type == "binary":
    return ok & ((v == 0) | (v == 1))
  if var.norm == "range":
    return ok & (v >= var.low) & (v <= var.high)
  if var.norm == "log_standard":
    return ok & (v > 0)
  if var.norm == "log1p_standard":
    return ok & (v >= 0)
  return ok


def targets(graph: Graph, variable: str, kind: str, values: np.ndarray, valid: np.ndarray,
            relative_changes, seed: int, batch_index: int, variable_index: int
            ) -> tuple[np.ndarray, np.ndarray]:
  """Targets and mask of intervention `kind` on `variable` (see the module docstring).

  Args:
    graph: the causal graph.
    variable: intervened variable.
    kind: `PERMUTATION` or a `relative_name` of one of `relative_changes`.
    values: factual values `[B]` in data units.
    valid: `[B]` bool, real (non-padding) examples.
    relative_changes: the configured relative changes.
    seed, batch_index, variable_index: what the permutation is drawn from.
  """
  values = np.asarray(values, np.float64)
  valid = np.asarray(valid, bool)
  out = values.copy()
  if kind == PERMUTATION:
    idx = np.flatnonzero(valid)
    order = np.random.default_rng([seed, batch_index, variable_index]).permutation(idx)
    out[order] = values[np.roll(order, -1)]
    mask = valid.copy() if len(idx) > 1 else np.zeros_like(valid)
  else:
    by_name = {relative_name(r): float(r) for r in relative_changes}
    if kind not in by_name:
      raise ValueError(f"Unknown intervention kind {kind!r}; expected {PERMUTATION!r} or one "
                       f"of {', '.join(by_name)}.")
    mask = valid & (values > 0)
    out = np.where(mask, values * (1.0 + by_name[kind]), values)
  mask &= in_support(graph[variable], out)
  return np.where(mask, out, values).astype(np.float32), mask
