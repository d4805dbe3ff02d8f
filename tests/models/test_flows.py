"""Bijectors: round trips (incl. tails), log-determinants against autodiff, monotonicity."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from segcft_jax.models import flows

K, BOUND = 6, 3.0

# Compiled once per shape: op-by-op dispatch of the spline would dominate the test time.
rqs_forward = jax.jit(flows.rqs_forward, static_argnums=4)
rqs_inverse = jax.jit(flows.rqs_inverse, static_argnums=4)
# Fixed-bound maps for the (static-function) autodiff checks below.
_spline_fwd = functools.partial(flows.rqs_forward, bound=BOUND)
_spline_inv = functools.partial(flows.rqs_inverse, bound=BOUND)

# Inside the interval, near the knots' ends, and in both identity tails.
X = jnp.concatenate([jnp.linspace(-5.0, 5.0, 201), jnp.array([-BOUND, BOUND, -2.999, 2.999])])


def _spline_params(seed, batch=()):
  kw, kh, kd = jax.random.split(jax.random.PRNGKey(seed), 3)
  # N(0, 1) as the reference initialises them; much larger values make bins so flat that a
  # float32 inverse cannot reach 1e-5 (the map itself is then ill-conditioned).
  return (jax.random.normal(kw, batch + (K,)), jax.random.normal(kh, batch + (K,)),
          jax.random.normal(kd, batch + (K - 1,)))


@functools.partial(jax.jit, static_argnums=0)
def _jacobian(fn, x, *args):
  return jax.jacfwd(lambda t: fn(t, *args)[0])(x)


def _check_logdet(fn, x, logdet, *args):
  """log|d fn(x, *args)/dx| from jax.jacfwd (diagonal: the map is element-wise)."""
  jac = _jacobian(fn, x, *args)
  diag = jnp.diag(jac)
  np.testing.assert_allclose(jac, jnp.diag(diag), atol=1e-6)
  np.testing.assert_allclose(logdet, jnp.log(jnp.abs(diag)), atol=1e-4)


def test_spline_round_trips_logdet_and_monotone():
  for seed in (0, 1):
    p = _spline_params(seed)
    y, ld = rqs_forward(X, *p, BOUND)
    x_back, ld_inv = rqs_inverse(y, *p, BOUND)
    np.testing.assert_allclose(x_back, X, atol=1e-5)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-4)
    np.testing.assert_allclose(rqs_forward(rqs_inverse(X, *p, BOUND)[0], *p, BOUND)[0], X,
                               atol=1e-5)
    # Identity tails; the interval maps onto itself.
    tails = jnp.abs(X) > BOUND
    np.testing.assert_array_equal(y[tails], X[tails])
    assert np.all(np.abs(y[~tails]) <= BOUND + 1e-6)
    assert np.all(np.diff(np.asarray(y[:201])) > 0)  # Strictly increasing.
    # Element-wise log|dy/dx| against autodiff, both directions; off the end knots, where
    # jacfwd would take the one-sided derivative of the tail or of the spline.
    x = X[jnp.abs(jnp.abs(X) - BOUND) > 1e-2]
    _check_logdet(_spline_fwd, x, rqs_forward(x, *p, BOUND)[1], *p)
    _check_logdet(_spline_inv, x, rqs_inverse(x, *p, BOUND)[1], *p)


def test_spline_batched_params():
  p = _spline_params(3, batch=(7,))
  x = jnp.linspace(-3.5, 3.5, 7)
  y, ld = rqs_forward(x, *p, BOUND)
  _check_logdet(_spline_fwd, x, ld, *p)
  np.testing.assert_allclose(rqs_forward(rqs_inverse(x, *p, BOUND)[0], *p, BOUND)[0], x,
                             atol=1e-5)
  # x = S^{-1}(y) is ill-conditioned where S is flat: float32 rounding of y (~1e-7) is
  # divided by the slope. Some bins of these random parameters have slopes ~1e-3.
  err = np.abs(rqs_inverse(y, *p, BOUND)[0] - x)
  assert np.all(err <= 1e-5 + 1e-6 * np.exp(-np.asarray(ld))), err


def test_zero_parameters_are_identity():
  z = (jnp.zeros(K), jnp.zeros(K), jnp.zeros(K - 1))
  y, ld = rqs_forward(X, *z, BOUND)
  np.testing.assert_allclose(y, X, atol=1e-5)
  np.testing.assert_allclose(ld, 0.0, atol=1e-5)


def test_affine():
  x = jnp.linspace(-2.0, 2.0, 5)
  loc, log_scale = jnp.arange(5.0) - 2.0, jnp.linspace(-1.0, 1.0, 5)
  y, ld = flows.affine_forward(x, loc, log_scale)
  xb, ldi = flows.affine_inverse(y, loc, log_scale)
  np.testing.assert_allclose(xb, x, atol=1e-6)
  np.testing.assert_allclose(ldi, -ld)
  _check_logdet(flows.affine_forward, x, ld, loc, log_scale)


def test_squash_round_trip_logdet_and_clamp():
  # float32 autodiff of tanh loses relative precision beyond |x| ~ 6 (1 - tanh^2 rounds);
  # the closed-form log-det is the accurate one there.
  x = jnp.linspace(-6.0, 6.0, 41)
  y, ld = flows.squash_forward(x)
  np.testing.assert_allclose(y, 2.0 * jax.nn.sigmoid(x) - 1.0, atol=1e-6)
  xb, ldi = flows.squash_inverse(y)
  np.testing.assert_allclose(flows.squash_forward(xb)[0], y, atol=1e-5)
  np.testing.assert_allclose(xb[jnp.abs(x) < 5], x[jnp.abs(x) < 5], atol=1e-3)
  np.testing.assert_allclose(ldi, -ld, atol=1e-3)
  _check_logdet(flows.squash_forward, x, ld)
  yy = jnp.linspace(-0.99, 0.99, 9)
  _check_logdet(flows.squash_inverse, yy, flows.squash_inverse(yy)[1])
  # Exact +-1 (the ends of a declared range) abduct to finite noise.
  edge, ld_edge = flows.squash_inverse(jnp.array([-1.0, 1.0]))
  assert np.all(np.isfinite(edge)) and np.all(np.isfinite(ld_edge))
  np.testing.assert_allclose(flows.squash_forward(edge)[0], [-1.0, 1.0], atol=1e-5)
