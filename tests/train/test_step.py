"""The guarded step: skipped updates leave the state untouched; EMA schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.train import defaults, ema, optim
from segcft_jax.train import state as state_lib
from segcft_jax.train.step import make_train_step
from segcft_jax.train.task import Task


def _linear_task():
  def init(rng, batch):
    return {"w": jax.random.normal(rng, (3,)), "b": jnp.zeros(())}

  def loss_fn(params, batch, rng, frozen):
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2), {}

  return Task("toy", init, loss_fn, lambda p, b, f, r: {}, {"task": "toy"})


def _setup(grad_skip=1e4):
  task = _linear_task()
  cfg = defaults.optim_config(lr=0.1, warmup_steps=0)
  tx = optim.make_optimizer(cfg)
  state = state_lib.create(task.init(jax.random.PRNGKey(0), None), tx)
  step = jax.jit(make_train_step(task, tx, jax.random.PRNGKey(1), grad_skip=grad_skip,
                                 ema_rate=0.999))
  return state, step


def _batch(scale=1.0):
  x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10 * scale
  return {"x": x, "y": x.sum(1)}


def _assert_same(a, b):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_good_step_updates():
  state, step = _setup()
  new, metrics = step(state, _batch(), {})
  assert int(new.step) == 1 and int(new.skipped) == 0
  assert float(metrics["update_skipped"]) == 0.0
  assert not np.allclose(new.params["w"], state.params["w"])


def test_nan_batch_is_skipped_and_state_unchanged():
  state, step = _setup()
  state, _ = step(state, _batch(), {})  # a real Adam state, not the initial zeros
  bad = _batch()
  bad["x"][0, 0] = np.nan
  new, metrics = step(state, bad, {})
  assert not np.isfinite(float(metrics["loss"]))
  assert float(metrics["update_skipped"]) == 1.0
  assert int(new.step) == 2 and int(new.skipped) == 1
  _assert_same((new.params, new.opt_state, new.ema_params),
               (state.params, state.opt_state, state.ema_params))


def test_oversized_gradient_is_skipped():
  state, step = _setup(grad_skip=1.0)
  new, metrics = step(state, _batch(scale=100.0), {})
  assert float(metrics["grad_norm"]) > 1.0 and int(new.skipped) == 1
  _assert_same(new.params, state.params)


@pytest.mark.parametrize("n,expected", [(0, 0.0), (100, 0.0), (101, 0.5), (102, 2 / 3),
                                        (5000, 0.999)])
def test_ema_decay_schedule(n, expected):
  assert float(ema.ema_decay(jnp.asarray(n), 0.999)) == pytest.approx(expected, abs=1e-6)


def test_ema_copies_during_warmup_then_averages():
  e, p = {"a": jnp.zeros(2)}, {"a": jnp.ones(2)}
  np.testing.assert_allclose(ema.ema_update(e, p, jnp.asarray(3), 0.999)["a"], 1.0)
  np.testing.assert_allclose(ema.ema_update(e, p, jnp.asarray(101), 0.999)["a"], 0.5)
