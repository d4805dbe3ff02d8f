"""The fast building blocks of the HVAE equal their textbook forms (values and gradients)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from segcft_jax.models.hvae_blocks import PointwiseConv, concat_broadcast, gelu, kernel_init


def test_gelu_is_the_exact_erf_form_with_its_analytic_derivative():
  x = np.linspace(-6.0, 6.0, 241)
  want = x * 0.5 * (1.0 + special.erf(x / np.sqrt(2.0)))
  np.testing.assert_allclose(gelu(jnp.asarray(x, jnp.float32)), want, atol=2e-6)
  np.testing.assert_allclose(gelu(jnp.asarray(x)), jax.nn.gelu(jnp.asarray(x), False),
                             atol=1e-6)
  # d/dx x Phi(x) = Phi(x) + x phi(x), against central differences in float64 numpy.
  grad = jax.vmap(jax.grad(gelu))(jnp.asarray(x, jnp.float32))
  h = 1e-5
  f = lambda v: v * 0.5 * (1.0 + special.erf(v / np.sqrt(2.0)))
  np.testing.assert_allclose(grad, (f(x + h) - f(x - h)) / (2 * h), atol=1e-5)


def test_pointwise_conv_of_parts_equals_a_1x1_conv_of_their_broadcast_concatenation():
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(size=(3, 4, 4, 5)), jnp.float32)
  pa = jnp.asarray(rng.normal(size=(3, 1, 1, 2)), jnp.float32)  # constant over space
  act = jnp.asarray(rng.normal(size=(3, 4, 4, 6)), jnp.float32)
  ours = PointwiseConv(7, kernel_init(0.5), nn.initializers.normal(1.0))
  params = ours.init(jax.random.key(0), h, pa, act)
  assert params["params"]["kernel"].shape == (1, 1, 13, 7)  # nn.Conv's layout
  full = concat_broadcast((h, pa, act))
  assert full.shape == (3, 4, 4, 13)
  conv = nn.Conv(7, (1, 1))
  want = conv.apply(params, full)
  np.testing.assert_allclose(ours.apply(params, h, pa, act), want, atol=1e-5)
  g_ours = jax.grad(lambda p: jnp.sum(ours.apply(p, h, pa, act) ** 2))(params)
  g_conv = jax.grad(lambda p: jnp.sum(conv.apply(p, full) ** 2))(params)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_conv)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
