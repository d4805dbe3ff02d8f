"""Tests for segcft_jax.models.likelihoods."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.models.likelihoods import (DGaussNet, approx_std_normal_cdf,
                                           discretised_gaussian_nll, gaussian_kl)


def _numpy_nll(x, loc, logscale):
  """Straightforward per-pixel loop version of the reference's discretised Gaussian NLL."""
  cdf = lambda v: 0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))
  out = np.zeros(x.shape[0])
  for b in range(x.shape[0]):
    total = 0.0
    for xv, m, ls in zip(x[b].ravel(), loc[b].ravel(), logscale[b].ravel()):
      xv, m, ls = float(xv), float(m), float(ls)
      plus = cdf((xv - m + 1 / 255) / math.exp(ls))
      minus = cdf((xv - m - 1 / 255) / math.exp(ls))
      if xv < -0.999:
        lp = math.log(max(plus, 1e-12))
      elif xv > 0.999:
        lp = math.log(max(1.0 - minus, 1e-12))
      else:
        lp = math.log(max(plus - minus, 1e-12))
      total += lp
    out[b] = -total / x[b].size
  return out


def test_discretised_gaussian_nll_matches_numpy():
  rng = np.random.default_rng(0)
  shape = (3, 4, 5, 1)
  x = (rng.integers(0, 256, shape) - 127.5) / 127.5
  x[0, 0, :, 0] = -1.0  # edge bins
  x[1, 1, :, 0] = 1.0
  logscale = rng.uniform(-5.0, 0.0, shape)
  # Means within 1.5 scales of the pixel: far-off means make the CDF differences cancel
  # in float32 (as in the float32 reference), which a float64 loop would not reproduce.
  loc = x + np.exp(logscale) * rng.uniform(-1.5, 1.5, shape)
  loc[0, 0, 0, 0], loc[1, 1, 0, 0] = -3.0, 3.0  # edge bins absorb the far tails
  loc[2, 2, 0, 0], logscale[2, 2, 0, 0] = 1.0, -9.0  # bin mass underflows -> 1e-12 floor
  x[2, 2, 0, 0] = 0.0
  got = discretised_gaussian_nll(*(jnp.asarray(a, jnp.float32) for a in (x, loc, logscale)))
  assert got.shape == (3,)
  np.testing.assert_allclose(np.asarray(got), _numpy_nll(x, loc, logscale), rtol=1e-4)


def test_nll_sharp_gaussian_on_pixel_is_near_zero_and_edges_absorb_tails():
  x = jnp.full((1, 2, 2, 1), 0.0)
  # An almost-deterministic prediction at the pixel value: bin mass ~ 1.
  assert float(discretised_gaussian_nll(x, x, jnp.full_like(x, -9.0))[0]) < 1e-5
  # Edge pixels: a mean far outside [-1, 1] still puts ~all mass in the edge bin.
  edge = jnp.array([-1.0, 1.0]).reshape(1, 1, 2, 1)
  nll = discretised_gaussian_nll(edge, 5.0 * edge, jnp.full_like(edge, -3.0))
  assert float(nll[0]) < 1e-5


def test_approx_cdf_close_to_normal_cdf():
  v = np.linspace(-4, 4, 41)
  exact = 0.5 * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))
  np.testing.assert_allclose(np.asarray(approx_std_normal_cdf(jnp.asarray(v))), exact,
                             atol=3e-4)


def test_gaussian_kl_matches_closed_form():
  rng = np.random.default_rng(1)
  mq, mp = rng.normal(size=10), rng.normal(size=10)
  lq, lp = rng.uniform(-2, 1, 10), rng.uniform(-2, 1, 10)
  vq, vp = np.exp(2 * lq), np.exp(2 * lp)
  closed = 0.5 * (vq / vp + (mp - mq) ** 2 / vp - 1.0 + np.log(vp / vq))
  got = gaussian_kl(*(jnp.asarray(a, jnp.float32) for a in (mq, lq, mp, lp)))
  np.testing.assert_allclose(np.asarray(got), closed, rtol=1e-5, atol=1e-6)
  same = gaussian_kl(jnp.asarray(mq), jnp.asarray(lq), jnp.asarray(mq), jnp.asarray(lq))
  np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-6)


def test_dgaussnet_clamp_and_default_init():
  h = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  net = DGaussNet(channels=1)
  params = net.init(jax.random.key(1), h)
  assert params["params"]["x_loc"]["kernel"].shape == (1, 1, 4, 1)
  assert float(jnp.abs(params["params"]["x_logscale"]["bias"]).max()) == 0.0  # zero biases
  bound = 1.0 / math.sqrt(4)  # PyTorch default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  assert float(jnp.abs(params["params"]["x_loc"]["kernel"]).max()) <= bound
  params = jax.tree_util.tree_map(lambda p: p, params)
  params["params"]["x_logscale"]["bias"] = jnp.full((1,), -50.0)
  loc, logscale = net.apply(params, h)
  assert loc.shape == logscale.shape == (2, 3, 3, 1)
  assert float(logscale.min()) == -9.0


@pytest.mark.parametrize("cov,kernel_grad,bias_grad", [
    ("fixed", False, False), ("shared", False, True), ("diag", True, True)])
def test_dgaussnet_std_init_covariances(cov, kernel_grad, bias_grad):
  h = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  net = DGaussNet(channels=1, std_init=0.1, covariance=cov)
  params = net.init(jax.random.key(1), h)
  _, logscale = net.apply(params, h)
  np.testing.assert_allclose(np.asarray(logscale), math.log(0.1), rtol=1e-6)
  grads = jax.grad(lambda p: net.apply(p, h)[1].sum())(params)["params"]["x_logscale"]
  assert bool(jnp.any(grads["kernel"] != 0)) == kernel_grad
  assert bool(jnp.any(grads["bias"] != 0)) == bias_grad


def test_dgaussnet_rejects_rgb():
  with pytest.raises(ValueError, match="1-channel"):
    DGaussNet(channels=3).init(jax.random.key(0), jnp.zeros((1, 2, 2, 4)))
