"""Element-wise bijectors for the scalar mechanisms (pure JAX, no parameters of their own).

Every bijector has ``*_forward(x, ...) -> (y, log|dy/dx|)`` and
``*_inverse(y, ...) -> (x, log|dx/dy|)``, both element-wise (the log-determinant has the
shape of ``x``).

**Monotone rational-quadratic spline** (Durkan et al. 2019, "Neural Spline Flows"), ``K``
bins on ``[-B, B]``, identity outside (linear tails, unit slope at both boundary knots so the
map is C^1). From unnormalised parameters ``w, h`` ([..., K]) and ``d`` ([..., K-1]):

    widths  w_k = m_w + (1 - K m_w) softmax(w)_k,   knots x_k = -B + 2B sum_{j<k} w_j
    heights h_k = m_h + (1 - K m_h) softmax(h)_k,   knots y_k = -B + 2B sum_{j<k} h_j
    derivs  d_k = m_d + softplus(d_k + c),          c = log(expm1(1 - m_d)),  d_0 = d_K = 1

(``c`` makes all-zero parameters the identity map.) In bin ``k`` with ``s = (y_{k+1} - y_k)
/ (x_{k+1} - x_k)`` and ``xi = (x - x_k) / (x_{k+1} - x_k)``:

    y = y_k + (y_{k+1} - y_k) (s xi^2 + d_k xi (1 - xi)) / (s + (d_{k+1} + d_k - 2s) xi (1 - xi))
    dy/dx = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2)
            / (s + (d_{k+1} + d_k - 2s) xi (1 - xi))^2

and the inverse solves the quadratic ``a xi^2 + b xi + c = 0`` for its root in ``[0, 1]``,
``xi = 2c / (-b - sqrt(b^2 - 4ac))`` (the numerically stable form).

**Conditional affine**: ``y = loc + exp(log_scale) x`` (``loc``, ``log_scale`` broadcast with
``x``; they come from a network of the parents), ``log|dy/dx| = log_scale``.

**Sigmoid squash** onto ``(-1, 1)`` for range-normalised variables (as causal-gen's
``2 sigmoid(.) - 1``): ``y = 2 sigmoid(x) - 1 = tanh(x / 2)``,
``log|dy/dx| = log 2 - softplus(x) - softplus(-x)``, inverse
``x = log1p(y) - log1p(-y)`` after clamping ``|y| <= 1 - eps`` (data contains exact +-1 after
range normalisation; the clamp keeps the inverse finite, as the reference does).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "rqs_knots", "rqs_forward", "rqs_inverse", "rqs_num_params",
    "affine_forward", "affine_inverse",
    "squash_forward", "squash_inverse",
]

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
SQUASH_EPS = 1e-6


def rqs_num_params(num_bins: int) -> tuple[int, int, int]:
  """Sizes of the unnormalised (widths, heights, derivatives) of a ``num_bins`` spline."""
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}")
  return num_bins, num_bins, num_bins - 1


def _knots(unnormalised: jax.Array, bound: float, minimum: float) -> tuple[jax.Array, jax.Array]:
  """Bin sizes and knot positions ([..., K+1], ends exactly at -B and B)."""
  k = unnormalised.shape[-1]
  if minimum * k >= 1.0:
    raise ValueError(f"minimum bin size {minimum} is too large for {k} bins")
  sizes = minimum + (1.0 - minimum * k) * jax.nn.softmax(unnormalised, axis=-1)
  cum = jnp.cumsum(sizes, axis=-1)
  zero = jnp.zeros_like(cum[..., :1])
  knots = 2.0 * bound * jnp.concatenate([zero, cum], axis=-1) - bound
  # The cumulative sum drifts by rounding; force the ends so the tails join exactly.
  knots = knots.at[..., 0].set(-bound).at[..., -1].set(bound)
  return knots[..., 1:] - knots[..., :-1], knots


def rqs_knots(widths: jax.Array, heights: jax.Array, derivatives: jax.Array, bound: float):
  """Normalised spline parameters.

  Args:
    widths: Unnormalised bin widths ``[..., K]``.
    heights: Unnormalised bin heights ``[..., K]``.
    derivatives: Unnormalised interior knot derivatives ``[..., K-1]``.
    bound: Half-width ``B`` of the spline interval ``[-B, B]``.

  Returns:
    ``(x_knots, y_knots, derivs)``, each ``[..., K+1]``; boundary derivatives are 1.
  """
  if widths.shape[-1] != heights.shape[-1] or derivatives.shape[-1] != widths.shape[-1] - 1:
    raise ValueError(
        f"spline parameters need shapes [..., K], [..., K], [..., K-1]; got "
        f"{widths.shape}, {heights.shape}, {derivatives.shape}")
  _, xk = _knots(widths, bound, MIN_BIN_WIDTH)
  _, yk = _knots(heights, bound, MIN_BIN_HEIGHT)
  shift = math.log(math.expm1(1.0 - MIN_DERIVATIVE))
  interior = MIN_DERIVATIVE + jax.nn.softplus(derivatives + shift)
  one = jnp.ones_like(interior[..., :1])
  return xk, yk, jnp.concatenate([one, interior, one], axis=-1)


def _gather_bin(z: jax.Array, knots: jax.Array, *params: jax.Array):
  """Per element of ``z``: index of its bin in ``knots`` and the bin's parameters.

  Returns ``(lo, hi)`` pairs (values at knots k and k+1) for ``knots`` and every array in
  ``params`` (all [..., K+1], broadcast against ``z``).
  """
  k = knots.shape[-1] - 1
  shape = jnp.broadcast_shapes(z.shape, knots.shape[:-1])
  z = jnp.broadcast_to(z, shape)
  arrays = [jnp.broadcast_to(a, shape + (k + 1,)) for a in (knots,) + params]
  # Interior knots only: the index is in [0, K-1] even at the end points.
  idx = jnp.sum(z[..., None] >= arrays[0][..., 1:-1], axis=-1)[..., None]
  out = []
  for a in arrays:
    out.append((jnp.take_along_axis(a, idx, -1)[..., 0],
                jnp.take_along_axis(a, idx + 1, -1)[..., 0]))
  return z, out


def rqs_forward(x: jax.Array, widths: jax.Array, heights: jax.Array,
                derivatives: jax.Array, bound: float = 3.0) -> tuple[jax.Array, jax.Array]:
  """Rational-quadratic spline ``y = S(x)`` with identity tails.

  Args:
    x: Inputs (any shape broadcastable with the parameters' batch shape).
    widths: Unnormalised widths ``[..., K]``.
    heights: Unnormalised heights ``[..., K]``.
    derivatives: Unnormalised interior derivatives ``[..., K-1]``.
    bound: Spline interval half-width ``B``.

  Returns:
    ``(y, log|dy/dx|)``, element-wise.
  """
  xk, yk, dk = rqs_knots(widths, heights, derivatives, bound)
  inside = jnp.abs(x) <= bound
  xc = jnp.clip(x, -bound, bound)  # Safe values in the tails (result replaced there).
  xc, [(x0, x1), (y0, y1), (d0, d1)] = _gather_bin(xc, xk, yk, dk)
  w, h = x1 - x0, y1 - y0
  s = h / w
  xi = jnp.clip((xc - x0) / w, 0.0, 1.0)
  t = xi * (1.0 - xi)
  denom = s + (d1 + d0 - 2.0 * s) * t
  y = y0 + h * (s * xi ** 2 + d0 * t) / denom
  logdet = (2.0 * jnp.log(s) + jnp.log(d1 * xi ** 2 + 2.0 * s * t + d0 * (1.0 - xi) ** 2)
            - 2.0 * jnp.log(denom))
  x = jnp.broadcast_to(x, y.shape)
  return jnp.where(inside, y, x), jnp.where(inside, logdet, 0.0)


def rqs_inverse(y: jax.Array, widths: jax.Array, heights: jax.Array,
                derivatives: jax.Array, bound: float = 3.0) -> tuple[jax.Array, jax.Array]:
  """Inverse spline ``x = S^{-1}(y)`` by the closed-form quadratic root.

  Args:
    y: Outputs.
    widths: Unnormalised widths ``[..., K]``.
    heights: Unnormalised heights ``[..., K]``.
    derivatives: Unnormalised interior derivatives ``[..., K-1]``.
    bound: Spline interval half-width ``B``.

  Returns:
    ``(x, log|dx/dy|)``, element-wise.
  """
  xk, yk, dk = rqs_knots(widths, heights, derivatives, bound)
  inside = jnp.abs(y) <= bound
  yc = jnp.clip(y, -bound, bound)
  # The bin is found on the y knots: S maps y-bins onto x-bins monotonically.
  yc, [(y0, y1), (x0, x1), (d0, d1)] = _gather_bin(yc, yk, xk, dk)
  w, h = x1 - x0, y1 - y0
  s = h / w
  dy = yc - y0
  slope_sum = d1 + d0 - 2.0 * s
  a = h * (s - d0) + dy * slope_sum
  b = h * d0 - dy * slope_sum
  c = -s * dy
  disc = jnp.maximum(b ** 2 - 4.0 * a * c, 0.0)
  # 2c / (-b - sqrt(disc)) avoids the cancellation of (-b + sqrt(disc)) / 2a when a ~ 0.
  xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
  x = x0 + xi * w
  t = xi * (1.0 - xi)
  denom = s + slope_sum * t
  logdet_fwd = (2.0 * jnp.log(s) + jnp.log(d1 * xi ** 2 + 2.0 * s * t + d0 * (1.0 - xi) ** 2)
                - 2.0 * jnp.log(denom))
  y = jnp.broadcast_to(y, x.shape)
  return jnp.where(inside, x, y), jnp.where(inside, -logdet_fwd, 0.0)


def affine_forward(x: jax.Array, loc: jax.Array,
                   log_scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``y = loc + exp(log_scale) x``; returns ``(y, log_scale)`` broadcast to ``y``."""
  y = loc + jnp.exp(log_scale) * x
  return y, jnp.broadcast_to(log_scale, y.shape)


def affine_inverse(y: jax.Array, loc: jax.Array,
                   log_scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``x = (y - loc) exp(-log_scale)``; returns ``(x, -log_scale)`` broadcast to ``x``."""
  x = (y - loc) * jnp.exp(-log_scale)
  return x, jnp.broadcast_to(-log_scale, x.shape)


def _squash_logdet(x: jax.Array) -> jax.Array:
  # log(2 sigmoid(x) sigmoid(-x)), written with softplus so it stays finite for large |x|.
  return math.log(2.0) - jax.nn.softplus(x) - jax.nn.softplus(-x)


def squash_forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``y = 2 sigmoid(x) - 1`` in ``(-1, 1)``; returns ``(y, log|dy/dx|)``."""
  return jnp.tanh(0.5 * x), _squash_logdet(x)


def squash_inverse(y: jax.Array, eps: float = SQUASH_EPS) -> tuple[jax.Array, jax.Array]:
  """``x = logit((y + 1) / 2)`` after clamping ``|y| <= 1 - eps``; returns ``(x, log|dx/dy|)``.

  Range-normalised data hits exactly +-1 at the declared bounds; without the clamp those
  values would abduct to infinite noise.
  """
  yc = jnp.clip(y, -1.0 + eps, 1.0 - eps)
  x = jnp.log1p(yc) - jnp.log1p(-yc)
  return x, -_squash_logdet(x)
