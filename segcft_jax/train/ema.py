"""Exponential moving average of parameters with the reference warm-up.

Reference spec §2 (utils.EMA of causal-gen): number the accepted updates n = 0, 1, ...; for
n <= `warmup` the EMA copy is overwritten by the online weights; afterwards, with
e = n - warmup, decay = min(e / (1 + e), rate) and ema <- decay * ema + (1 - decay) * online.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_decay(n: jax.Array, rate: float, warmup: int = 100) -> jax.Array:
  """Decay used for the n-th accepted update (0 means: copy the online weights)."""
  e = (n - warmup).astype(jnp.float32)
  decay = jnp.minimum(e / (1.0 + e), rate)
  return jnp.where(n <= warmup, 0.0, decay)


def ema_update(ema: Any, params: Any, n: jax.Array, rate: float, warmup: int = 100) -> Any:
  """Returns the EMA after the n-th accepted update of `params`."""
  d = ema_decay(n, rate, warmup)
  return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
