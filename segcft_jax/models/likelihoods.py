"""Pixel likelihood and Gaussian helpers of the HVAE (reference spec §1.6, §1.7).

Discretised Gaussian on 256 levels in ``[-1, 1]`` (bin half-width ``1/255``) with the tanh
approximation of the normal CDF, kept for parity with the reference::

    Phi~(v)  = 0.5 (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
    c        = x - loc,   s = exp(-logscale)
    cdf_plus = Phi~(s (c + 1/255)),   cdf_min = Phi~(s (c - 1/255))
    log p    = log max(cdf_plus, 1e-12)          if x < -0.999   (left edge bin)
             = log max(1 - cdf_min, 1e-12)       if x >  0.999   (right edge bin)
             = log max(cdf_plus - cdf_min, 1e-12) otherwise
    NLL(x)   = -mean_{H, W, C} log p             (nats/dim, one value per example)

Latent KL between diagonal Gaussians (elementwise, no clamping of log-scales)::

    KL(q || p) = -1/2 + log s_p - log s_q + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2)
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["DGaussNet", "discretised_gaussian_nll", "gaussian_kl", "approx_std_normal_cdf",
           "sample_gaussian", "MIN_LOGSCALE"]

MIN_LOGSCALE = -9.0  # reference EPS: pixel log-scales are clamped from below at this value
_HALF_BIN = 1.0 / 255.0
_EDGE = 0.999
_FLOOR = 1e-12


def approx_std_normal_cdf(v: jnp.ndarray) -> jnp.ndarray:
  """Tanh approximation of the standard normal CDF (as in the reference)."""
  return 0.5 * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))


def discretised_gaussian_nll(x: jnp.ndarray, loc: jnp.ndarray,
                             logscale: jnp.ndarray) -> jnp.ndarray:
  """Per-example negative log-likelihood of 8-bit images, in nats per dimension.

  Args:
    x: Images ``[B, H, W, C]`` on the grid ``(k - 127.5) / 127.5``, ``k = 0..255``.
    loc: Means ``[B, H, W, C]``.
    logscale: Log standard deviations ``[B, H, W, C]`` (already clamped by the caller).

  Returns:
    ``[B]``: ``-mean over (H, W, C)`` of the log bin probabilities.
  """
  centred = x - loc
  inv_std = jnp.exp(-logscale)
  cdf_plus = approx_std_normal_cdf(inv_std * (centred + _HALF_BIN))
  cdf_min = approx_std_normal_cdf(inv_std * (centred - _HALF_BIN))
  # The 1e-12 floors keep log finite when a bin's mass underflows (far-off means).
  log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, _FLOOR))
  log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, _FLOOR))
  log_delta = jnp.log(jnp.maximum(cdf_plus - cdf_min, _FLOOR))
  # Edge bins absorb the tails: (-inf, -1 + 1/255] and [1 - 1/255, inf).
  log_probs = jnp.where(x < -_EDGE, log_cdf_plus,
                        jnp.where(x > _EDGE, log_one_minus_cdf_min, log_delta))
  return -jnp.mean(log_probs, axis=tuple(range(1, x.ndim)))


def gaussian_kl(q_loc: jnp.ndarray, q_logscale: jnp.ndarray, p_loc: jnp.ndarray,
                p_logscale: jnp.ndarray) -> jnp.ndarray:
  """Elementwise ``KL(N(q_loc, e^q_logscale) || N(p_loc, e^p_logscale))`` (spec §1.6)."""
  return (-0.5 + p_logscale - q_logscale
          + 0.5 * (jnp.exp(2.0 * q_logscale) + (q_loc - p_loc) ** 2)
          / jnp.exp(2.0 * p_logscale))


def sample_gaussian(key: jax.Array, loc: jnp.ndarray, logscale: jnp.ndarray) -> jnp.ndarray:
  """Reparameterised draw ``loc + exp(logscale) * eps``, ``eps ~ N(0, I)``."""
  return loc + jnp.exp(logscale) * jax.random.normal(key, loc.shape, loc.dtype)


class _Conv1x1(nn.Module):
  """1x1 convolution whose kernel and/or bias can be frozen by ``stop_gradient``.

  Freezing replaces the reference's ``requires_grad = False``. Note that a decoupled weight
  decay still acts on frozen parameters unless the optimiser masks them out.
  """

  features: int
  kernel_init: nn.initializers.Initializer
  bias_init: nn.initializers.Initializer
  freeze_kernel: bool = False
  freeze_bias: bool = False

  @nn.compact
  def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param("kernel", self.kernel_init, (1, 1, h.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    if self.freeze_kernel:
      kernel = jax.lax.stop_gradient(kernel)
    if self.freeze_bias:
      bias = jax.lax.stop_gradient(bias)
    return jnp.einsum("bhwc,cd->bhwd", h, kernel[0, 0]) + bias  # [B, H, W, features]


class DGaussNet(nn.Module):
  """Discretised-Gaussian head: features ``[B, H, W, w0]`` -> ``(loc, logscale)``.

  ``loc = conv1x1(h)``, ``logscale = max(conv1x1(h), -9)``. With ``std_init > 0`` the
  log-scale kernel starts at zero and its bias at ``log(std_init)``; covariance ``"fixed"``
  then freezes both, ``"shared"`` freezes the kernel (a learnt global scale) and ``"diag"``
  trains both. With ``std_init = 0`` all three are the same fully trainable head.

  Attributes:
    channels: Image channels (1 only; the reference's RGB autoregressive means are not
      ported).
    std_init: Initial pixel standard deviation, or 0 for the default random init.
    covariance: ``"fixed"``, ``"shared"`` or ``"diag"``.
  """

  channels: int = 1
  std_init: float = 0.0
  covariance: str = "diag"

  @nn.compact
  def __call__(self, h: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Returns ``loc`` and clamped ``logscale``, each ``[B, H, W, channels]``."""
    if self.channels != 1:
      raise ValueError(f"DGaussNet supports 1-channel images only, got channels="
                       f"{self.channels} (RGB channel coupling is not implemented)")
    if self.covariance not in ("fixed", "shared", "diag"):
      raise ValueError(f"covariance must be fixed/shared/diag, got {self.covariance!r}")
    # PyTorch default conv init; biases zero as in the reference's main.py.
    default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    zeros = nn.initializers.zeros_init()
    loc = _Conv1x1(self.channels, default, zeros, name="x_loc")(h)
    if self.std_init > 0:
      scale_kernel = zeros
      scale_bias = nn.initializers.constant(math.log(self.std_init))
      freeze = self.covariance != "diag"
      freeze_bias = self.covariance == "fixed"
    else:
      scale_kernel, scale_bias, freeze, freeze_bias = default, zeros, False, False
    logscale = _Conv1x1(self.channels, scale_kernel, scale_bias, freeze_kernel=freeze,
                        freeze_bias=freeze_bias, name="x_logscale")(h)
    return loc, jnp.maximum(logscale, MIN_LOGSCALE)
