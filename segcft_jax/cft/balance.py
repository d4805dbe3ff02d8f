"""Per-structure gradient normalisation of the predictor loss (CFT option `balance`).

The predictor loss splits by structure, aux = sum_k aux_k with
aux_k = sum_{m of structure k} w_m mean_b d_m (a structure's global or regional areas, e.g.
`calcified_area_proximal/mid/distal`). The plain step follows

    g = sum_k grad aux_k + grad L_elbo,

where the structures whose pixels the decoder draws from its parents dominate: on the
positional vessel setting the calcified terms' HVAE gradient is 8-30x weaker than the
others' (docs/experiments.md, `tools/gradient_conflict.py`). With `balance="structure"` every
structure contributes the same gradient norm, the mean of theirs:

    g = sum_k (n_bar / n_k) grad aux_k + grad L_elbo,   n_k = ||grad aux_k||_2,
    n_bar = mean_k n_k,

(times the structure's weight W_k from `distance_weights`, 1 by default), the scales
being constants of the step (the equal-norm target of GradNorm, Chen et al.,
ICML 2018, computed exactly each step instead of learned), so the predictor gradient keeps
the sum of the structures' norms while its direction stops favouring the strong ones. The
ELBO term keeps its own gradient. Cost: one forward pass and K + 1 backward passes, batched
into one vmapped VJP.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

MODES = ("", "structure")


def structure_of(name: str) -> str:
  """The structure a measurement belongs to: `calcified_area_mid` -> `calcified`.

  A name `<structure>_area[_<region>]`, or the structure's own name (e.g. `thickness`); the
  one rule by which `cft.settings.parse_weights` also applies per-structure weights.
  """
  return name.partition("_area")[0]


def structures(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
  """Measurement names grouped by structure, in order of first appearance."""
  groups: dict[str, list[str]] = {}
  for n in names:
    groups.setdefault(structure_of(n), []).append(n)
  return {k: tuple(v) for k, v in groups.items()}


def balanced_value_and_grad(parts_fn: Callable[[Any], tuple[jax.Array, dict]], params: Any,
                            mask: Any, weights: Sequence[float] | None = None
                            ) -> tuple[tuple[jax.Array, dict], Any, jax.Array]:
  """Value and structure-balanced gradient of sum_k W_k part_k + part_K (`parts_fn`).

  Args:
    parts_fn: `params -> (parts [K + 1], metrics)`: the K structures' predictor losses,
      then the rest of the loss (the ELBO Lagrangian), whose gradient is kept as it is.
    params: the trainable parameters.
    mask: a pytree of bools like `params`: the leaves the norms n_k are taken over (the
      parameters the optimiser updates; e.g. without a frozen encoder).
    weights: K structure weights W_k (None: all 1): structure k's share gets norm
      W_k n_bar, so a structure's `distance_weights` keep their meaning under balance.

  Returns:
    `((loss, metrics), grads, scales)`: the unbalanced loss sum_k W_k part_k + part_K,
    the metrics,
    sum_k s_k grad part_k + grad part_K with s_k = W_k n_bar / n_k, and the K scales s_k.
  """
  parts, vjp_fn, metrics = jax.vjp(parts_fn, params, has_aux=True)
  k = parts.shape[0] - 1
  (per_part,) = jax.vmap(vjp_fn)(jnp.eye(k + 1, dtype=parts.dtype))
  leaves = [g for g, m in zip(jax.tree_util.tree_leaves(per_part),
                              jax.tree_util.tree_leaves(mask)) if m]
  sq = sum(jnp.sum(jnp.square(g.reshape(k + 1, -1)), axis=1) for g in leaves)
  norms = jnp.sqrt(sq[:k])
  w = jnp.ones((k,), parts.dtype) if weights is None else jnp.asarray(weights, parts.dtype)
  scales = jax.lax.stop_gradient(w * norms.mean() / jnp.maximum(norms, 1e-12))
  coef = jnp.concatenate([scales, jnp.ones((1,), scales.dtype)])
  grads = jax.tree_util.tree_map(lambda g: jnp.tensordot(coef, g, axes=1), per_part)
  loss = jnp.dot(w, parts[:k]) + parts[k]
  return (loss, metrics), grads, scales
