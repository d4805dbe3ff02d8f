"""The damped Lagrangian, lambda's gradient ascent, its clamp, and the frozen encoder."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from segcft_jax.cft import lagrangian
from segcft_jax.train import defaults


def test_gradients_of_the_damped_lagrangian():
  eps, damping = 2.0, 100.0
  aux, nelbo, lmbda = 0.3, 2.5, 0.7
  d_aux, d_nelbo, d_lmbda = jax.grad(
      lambda a, n, l: lagrangian.lagrangian(a, n, l, eps, damping), argnums=(0, 1, 2))(
          aux, nelbo, lmbda)
  assert float(d_aux) == 1.0
  assert float(d_nelbo) == pytest.approx(lmbda + damping * (nelbo - eps))
  assert float(d_lmbda) == pytest.approx(nelbo - eps)
  assert float(lagrangian.lagrangian(aux, nelbo, lmbda, eps, damping)) == pytest.approx(
      aux - (lmbda - damping * (eps - nelbo)) * (eps - nelbo))


def _cfg(train_encoder=True):
  return defaults.cft_config(seed=0, batch_size=2, num_steps=1, lr=1e-2, weight_decay=0.1,
                             train_encoder=train_encoder, lr_lagrange=0.1)


def _params():
  return {"hvae": {"encoder": {"w": jnp.ones(3)}, "decoder": {"w": jnp.ones(2)}},
          "lmbda": jnp.asarray(0.05)}


def _step(cfg, params, grads):
  tx = lagrangian.make_optimizer(cfg)
  updates, _ = tx.update(grads, tx.init(params), params)
  return lagrangian.project(optax.apply_updates(params, updates))


def test_lambda_ascends_while_the_constraint_is_violated_and_stays_nonnegative():
  cfg, params = _cfg(), _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  # d loss / d lambda = nelbo - eps > 0 (violated): lambda grows.
  up = _step(cfg, params, dict(zeros, lmbda=jnp.asarray(0.4)))
  assert float(up["lmbda"]) == pytest.approx(0.05 + 0.1, rel=1e-4)
  # Satisfied by a wide margin: the ascent step would go below 0 and is clamped to exactly 0.
  down = _step(cfg, params, dict(zeros, lmbda=jnp.asarray(-0.4)))
  assert float(down["lmbda"]) == 0.0


def test_the_encoder_can_be_frozen():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  new = _step(_cfg(train_encoder=False), params, grads)
  np.testing.assert_array_equal(np.asarray(new["hvae"]["encoder"]["w"]), np.ones(3))
  assert (np.asarray(new["hvae"]["decoder"]["w"]) < 1.0).all()
  new = _step(_cfg(train_encoder=True), params, grads)
  assert (np.asarray(new["hvae"]["encoder"]["w"]) < 1.0).all()


def test_unknown_cft_field_is_refused():
  with pytest.raises(ValueError, match="valid"):
    defaults.cft_config(seed=0, batch_size=2, num_steps=1, lr=1e-3, weight_decay=0.0,
                        dampening=3.0)
