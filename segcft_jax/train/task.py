"""The per-stage task: the only stage-specific part of training.

A stage trains by handing `train.loop.fit` a `Task`: how to initialise the trainable
parameters, the loss, and a per-example evaluation function. Frozen networks (a segmentor used
as a predictor, a pretrained PGM) are *not* part of the trainable pytree: they are passed to
every call as the separate `frozen` argument, so the optimiser never sees them while gradients
still flow through their activations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax

Batch = Mapping[str, jax.Array]
Params = Any
Frozen = Any
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
  """What a stage trains.

  Attributes:
    name: stage name, used in messages.
    init: `(rng, batch) -> params` of the trainable model.
    loss_fn: `(params, batch, rng, frozen) -> (scalar loss, metrics)`; metrics are scalars.
    eval_fn: `(params, batch, frozen, rng) -> metrics` with per-example `[B]` arrays; the
      caller averages them over valid (non-padding) examples.
    fingerprint: JSON-able description of the architecture; a checkpoint written under a
      different fingerprint is refused on restore.
  """

  name: str
  init: Callable[[jax.Array, Batch], Params]
  loss_fn: Callable[[Params, Batch, jax.Array, Frozen], tuple[jax.Array, Metrics]]
  eval_fn: Callable[[Params, Batch, Frozen, jax.Array], Metrics]
  fingerprint: Mapping[str, Any]
