"""Masked evaluation over padded batches.

`Evaluator` jits `(params, batch, frozen, rng) -> per-example metrics` once and reduces it as
`mean_k = sum_b valid_b * m_k[b] / sum_b valid_b`, so padding examples added to fill the last
batch never count. Batch i gets the key `fold_in(PRNGKey(seed), i)`, so a stochastic
evaluation (e.g. an ELBO) gives identical numbers on every run.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from segcft_jax.train import sharding


class Evaluator:
  """Averages a per-example metric function over a dataset split.

  Args:
    eval_fn: `(params, batch, frozen, rng) -> {name: [B, ...] array}`.
    mesh: device mesh; batches are sharded over its data axis.
    seed: evaluation seed.
  """

  def __init__(self, eval_fn: Callable, mesh, seed: int = 0):
    self.mesh = mesh
    self._key = jax.random.PRNGKey(seed)

    def masked_sums(params, batch, frozen, rng):
      metrics = eval_fn(params, batch, frozen, rng)
      valid = batch["valid"].astype(jnp.float32)
      sums = {k: jnp.tensordot(valid, v.astype(jnp.float32), axes=(0, 0))
              for k, v in metrics.items()}
      return sums, valid.sum()

    self._fn = jax.jit(masked_sums, out_shardings=sharding.replicated(mesh))

  def __call__(self, params: Any, batches: Iterable[Mapping[str, np.ndarray]],
               frozen: Any = None) -> dict[str, np.ndarray]:
    frozen = {} if frozen is None else frozen
    totals, count = None, 0.0
    for i, batch in enumerate(batches):
      sums, n = jax.device_get(self._fn(params, sharding.to_global(batch, self.mesh), frozen,
                                        jax.random.fold_in(self._key, i)))
      totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
      count += float(n)
    if not count:
      raise ValueError("Evaluation split is empty.")
    return {k: np.asarray(v) / count for k, v in totals.items()}
