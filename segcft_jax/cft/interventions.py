"""Interventions drawn during fine-tuning (SPEC §1; reference spec §4.3).

Per example b, one intervenable variable k_b is chosen — uniformly, k_b ~ U{1..V}, or with
probabilities w_k / sum_j w_j given draw weights w; while a *focus* is active only the
variables it names are drawn (a curriculum: `cft.task`) — and its target is

* `permutation` (default): the value of the same variable in example pi(b) of the batch, for
  one uniform random permutation pi per batch (a draw from the empirical marginal);
* `relative`: v_b (1 + s_b r_b), r_b ~ U(low, high), s_b = +-1 with probability 1/2.

The result is `{variable: (target [B] in data units, mask [B] = (k_b == variable))}`; the
PGM turns it into parents* (descendants updated through the flows).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

MODES = ("permutation", "relative")


def sample_interventions(rng: jax.Array, values: Mapping[str, jax.Array],
                         variables: Sequence[str], mode: str = "permutation",
                         relative_range: tuple[float, float] = (0.1, 0.3),
                         weights: Sequence[float] | None = None,
                         focus: tuple[Sequence[bool], jax.Array] | None = None
                         ) -> dict[str, tuple[jax.Array, jax.Array]]:
  """One intervention per example.

  Args:
    rng: key.
    values: factual values in data units, `[B]` each (at least `variables`).
    variables: intervenable variables.
    mode: one of `MODES`.
    relative_range: `(low, high)` magnitude of a relative change (mode `relative`).
    weights: positive draw weight of each variable (None or all equal: the uniform draw,
      bit-identical to omitting it).
    focus: `(in_focus, active)`: one bool per variable and a (traced) bool scalar; while
      `active` holds, only the variables in focus are drawn (with their weights).

  Returns:
    `{v: (target [B], mask [B] bool)}`; exactly one mask is true per example.
  """
  if mode not in MODES:
    raise ValueError(f"Unknown intervention mode {mode!r}; choose one of {MODES}.")
  if not variables:
    raise ValueError("No intervenable variables (config.scm.intervenable is empty).")
  if weights is not None and (len(weights) != len(variables) or min(weights) <= 0):
    raise ValueError(f"Expected {len(variables)} positive draw weights, got {list(weights)}.")
  k_var, k_perm, k_sign = jax.random.split(rng, 3)
  batch = values[variables[0]].shape[0]
  if focus is not None and (len(focus[0]) != len(variables) or not any(focus[0])):
    raise ValueError(f"The focus must name some of the {len(variables)} variables, got "
                     f"{list(focus[0])}.")
  if focus is None and (weights is None or len(set(weights)) == 1):
    chosen = jax.random.randint(k_var, (batch,), 0, len(variables))  # [B]
  else:
    logits = jnp.log(jnp.asarray(weights or (1.0,) * len(variables), jnp.float32))
    if focus is not None:
      in_focus, active = focus
      logits = jnp.where(active & ~jnp.asarray(in_focus), -jnp.inf, logits)
    chosen = jax.random.categorical(k_var, logits, shape=(batch,))
  if mode == "permutation":
    perm = jax.random.permutation(k_perm, batch)
    targets = {v: values[v][perm] for v in variables}
  else:
    low, high = relative_range
    r = jax.random.uniform(k_perm, (batch,), minval=low, maxval=high)
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (batch,)), 1.0, -1.0)
    targets = {v: values[v] * (1.0 + sign * r) for v in variables}
  return {v: (targets[v].astype(values[v].dtype), chosen == i) for i, v in enumerate(variables)}
