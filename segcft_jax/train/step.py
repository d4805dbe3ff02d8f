"""One guarded optimisation step, shared by every stage.

Per step t: rng_t = fold_in(rng, t); (loss, g) = value_and_grad(loss_fn) (or the task's own
`grad_fn`); the update is applied
only if loss and ||g||_2 are finite and ||g||_2 < grad_skip (reference spec §2, "grad skip");
otherwise params, optimiser state and EMA are returned untouched and the skip is counted.
Clipping to `grad_clip` happens inside the optimiser.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from segcft_jax.train import ema as ema_lib
from segcft_jax.train.state import TrainState
from segcft_jax.train.task import Task


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    *,
    grad_skip: float | None,
    ema_rate: float,
    ema_warmup: int = 100,
) -> Callable:
  """Returns `step(state, batch, frozen) -> (state, metrics)` (not yet jitted).

  Args:
    task: the stage's task.
    tx: optimiser of the trainable params.
    rng: base key; the step key is `fold_in(rng, state.step)` so that a resumed run draws
      the same randomness as an uninterrupted one.
    grad_skip: updates whose pre-clip gradient norm is >= this are skipped (None: never).
    ema_rate: EMA rate cap.
    ema_warmup: accepted updates during which the EMA copies the online weights.
  """
  skip = math.inf if grad_skip is None or grad_skip <= 0 else float(grad_skip)

  def step(state: TrainState, batch, frozen):
    key = jax.random.fold_in(rng, state.step)
    extra = {"step": state.step} if task.step_aware else {}
    grad_fn = task.grad_fn or jax.value_and_grad(task.loss_fn, has_aux=True)
    (loss, metrics), grads = grad_fn(state.params, batch, key, frozen, **extra)
    grad_norm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (grad_norm < skip)

    def accept(operands):
      state, grads = operands
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      if task.project is not None:
        params = task.project(params)
      ema = ema_lib.ema_update(state.ema_params, params, state.accepted, ema_rate, ema_warmup)
      return params, opt_state, ema

    def reject(operands):
      state, _ = operands
      return state.params, state.opt_state, state.ema_params

    # A skipped update keeps every array of the old state, and nothing of the rejected
    # gradients (NaNs included) reaches it. One conditional instead of a select per array:
    # the per-leaf selects doubled the step's compile time on XLA:CPU (benchmarks/README.md).
    params, opt_state, ema = jax.lax.cond(ok, accept, reject, (state, grads))
    new_state = state.replace(
        step=state.step + 1,
        skipped=state.skipped + jnp.where(ok, 0, 1).astype(state.skipped.dtype),
        params=params, opt_state=opt_state, ema_params=ema)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, update_skipped=1.0 - ok)
    return new_state, metrics

  return step
