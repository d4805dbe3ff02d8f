"""Training state as a plain pytree.

One `TrainState` serves every stage: the trainable parameters, their optimiser state, an EMA
copy of the parameters (what later stages load), the step counter and the number of skipped
(non-finite or oversized) updates. Stage-specific arrays that are not trained by gradient
(e.g. a Lagrange multiplier's own optimiser) live in `extras`.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data-iterator position.

  Attributes:
    step: number of steps taken (accepted + skipped), int32 scalar.
    skipped: number of skipped updates, int32 scalar.
    params: trainable parameters.
    opt_state: optax state of `params`.
    ema_params: exponential moving average of `params` (reference spec §2).
    extras: stage-specific pytree (may be empty).
  """

  step: jax.Array
  skipped: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  extras: Any

  @property
  def accepted(self) -> jax.Array:
    """Number of updates that were applied."""
    return self.step - self.skipped


def create(params: Any, tx, extras: Any = None) -> TrainState:
  """Builds the initial state for `params` under optimiser `tx`."""
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      skipped=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params),
      extras={} if extras is None else extras,
  )


def count_params(params: Any) -> int:
  """Total number of scalar parameters in a pytree."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
