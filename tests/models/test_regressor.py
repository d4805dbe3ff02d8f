"""The anticausal CNN: shapes, per-example independence, and that it can learn a brightness cue."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segcft_jax.models.regressor import Regressor


def test_shapes_and_per_example_independence():
  m = Regressor(outputs=3, width=4)
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 1), minval=-1, maxval=1)
  p = m.init(jax.random.PRNGKey(1), x)
  y = m.apply(p, x)
  assert y.shape == (4, 3) and y.dtype == jnp.float32
  y2 = m.apply(p, x.at[1:].set(0.0))
  np.testing.assert_allclose(y[0], y2[0], atol=1e-6)


def test_learns_mean_brightness():
  rng = np.random.default_rng(0)
  level = rng.uniform(-0.8, 0.8, (32,)).astype(np.float32)
  x = level[:, None, None, None] + 0.05 * rng.normal(size=(32, 16, 16, 1)).astype(np.float32)
  m = Regressor(outputs=1, width=4)
  params = m.init(jax.random.PRNGKey(0), x)
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    loss, g = jax.value_and_grad(lambda p: jnp.mean((m.apply(p, x)[:, 0] - level) ** 2))(params)
    upd, opt = tx.update(g, opt)
    return optax.apply_updates(params, upd), opt, loss

  for _ in range(150):
    params, opt, loss = step(params, opt)
  assert float(loss) < 0.1 * float(np.var(level))


def test_group_norm_divides_out_a_global_gain_and_none_does_not():
  """GroupNorm after bias-free convs makes f(g x) = f(x): the predictor cannot read a global
  exposure gain; without normalisation it sees absolute intensities."""
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 1), minval=-1, maxval=1)
  for norm, same in (("group", True), ("none", False)):
    m = Regressor(outputs=2, width=4, norm=norm)
    p = m.init(jax.random.PRNGKey(1), x)
    y, y_gain = m.apply(p, x), m.apply(p, 1.5 * x)
    assert np.allclose(y, y_gain, atol=1e-4) == same, (norm, y, y_gain)


def test_unknown_norm_is_named():
  m = Regressor(outputs=1, width=4, norm="batch")
  with pytest.raises(ValueError, match="config.regressor.model.norm.*group"):
    m.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)))
