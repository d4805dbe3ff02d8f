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
import ml_collections
import optax

from segcft_jax.train import optim

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
    make_optimizer: `(stage config) -> optax transformation`; None: the default AdamW of
      `train.optim.make_optimizer(cfg.optim)`. A stage whose parameters need different
      rules (e.g. a Lagrange multiplier trained by gradient ascent) supplies its own.
    project: `params -> params` applied after every accepted update (projected gradient
      steps, e.g. clamping a multiplier to >= 0); None: identity.
    pretrained: initial parameters (e.g. a pretrained model to fine-tune). When given, the
      state starts from them (passed to the jitted init as an argument, not baked into it)
      and `init` is used only for shapes.
    step_aware: the training step passes its step counter to `loss_fn` as keyword `step`
      (a traced int32 scalar; e.g. a schedule of the interventions drawn).
    grad_fn: `(params, batch, rng, frozen) -> ((loss, metrics), grads)` replacing
      `value_and_grad(loss_fn)` in the training step, for a task whose update is not the
      plain gradient of its loss (e.g. `cft.balance`); None: the plain gradient.
  """

  name: str
  init: Callable[[jax.Array, Batch], Params]
  loss_fn: Callable[[Params, Batch, jax.Array, Frozen], tuple[jax.Array, Metrics]]
  eval_fn: Callable[[Params, Batch, Frozen, jax.Array], Metrics]
  fingerprint: Mapping[str, Any]
  make_optimizer: Callable[[ml_collections.ConfigDict], optax.GradientTransformation] | None = None
  project: Callable[[Params], Params] | None = None
  pretrained: Params | None = None
  step_aware: bool = False
  grad_fn: Callable[..., tuple[tuple[jax.Array, Metrics], Params]] | None = None

  def optimizer(self, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The optimiser of this task under stage config `cfg`."""
    if self.make_optimizer is not None:
      return self.make_optimizer(cfg)
    return optim.make_optimizer(cfg.optim)
