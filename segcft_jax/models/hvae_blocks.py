"""Residual block and top-down decoder block of the HVAE (reference spec §1.1, §1.3, §1.4).

``Block`` (pre-activation bottleneck, stride 1, all convs with bias)::

    default: conv1x1(in->b) . GELU . convkxk(b->b) . GELU . convkxk(b->b) . GELU
             . conv1x1(b->out) . GELU            (applied right to left; GELU is exact erf)
    light:   convkxk(b->out) . ReLU . convkxk(in->b) . ReLU
    out = path(x) + skip(x)   if residual   (skip = x, or a 1x1 ``width_proj`` if in != out)
    out = avg_pool_d(out)     if down_rate d

``DecoderBlock`` at resolution r, with state h (deterministic path), s (prior path)::

    (p_loc, p_logscale, p_feat) = split(prior([s, pa_prior] if cond_prior else s))
    q = posterior([h, pa, act_r])                         (stochastic, with encoder acts)
    z ~ q (KL(q || p) recorded), or z = given latent, or z ~ p; z = p_loc if deterministic
    h' = conv(h + p_feat + z_proj([z, pa]))
    s' = z_feat_proj([z, p_feat])                         (unused after the last block)

Initialisation as the reference (PyTorch default kernels, biases zeroed by main.py): kernels
``U(-g/sqrt(fan_in), g/sqrt(fan_in))``, i.e. ``variance_scaling(g^2/3, fan_in, uniform)``,
with gain ``g = 1`` except the last conv of each encoder block (``sqrt(1/n_enc)``), the decoder
``z_proj`` and ``conv``'s last conv (``sqrt(1/n_dec)``) and the prior's last conv (0, so the
prior starts at N(0, I) with zero features).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segcft_jax.models.hvae_arch import DecoderBlockSpec
from segcft_jax.models.likelihoods import gaussian_kl, sample_gaussian

__all__ = ["Block", "DecoderBlock", "PointwiseConv", "concat_broadcast", "conv", "gelu",
           "kernel_init"]


def kernel_init(gain: float = 1.0) -> nn.initializers.Initializer:
  """PyTorch's default conv kernel init scaled by ``gain`` (zeros for gain 0)."""
  if gain == 0.0:
    return nn.initializers.zeros_init()
  return nn.initializers.variance_scaling(gain ** 2 / 3.0, "fan_in", "uniform")


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@jax.custom_jvp
def gelu(x: jnp.ndarray) -> jnp.ndarray:
  """Exact GELU ``x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2`` (``torch.nn.GELU()``).

  Written with ``erf`` and a hand-written derivative ``Phi(x) + x * phi(x)``: on XLA:CPU
  ``jax.nn.gelu(approximate=False)`` (an ``erfc`` form) is ~5x slower forward, and the
  derivative reuses ``Phi`` instead of differentiating through ``erf``.
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF))


@gelu.defjvp
def _gelu_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  cdf = 0.5 * (1.0 + jax.lax.erf(x * _SQRT_HALF))
  pdf = jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI
  return x * cdf, (cdf + x * pdf) * t


class PointwiseConv(nn.Module):
  """A 1x1 conv of the channel concatenation of its inputs, as one matmul per input.

  ``PointwiseConv(f)(a, b) == nn.Conv(f, (1, 1))(concat([a, b], -1))`` with the same
  parameters (``kernel [1, 1, C_a + C_b, f]``, rows in input order; ``bias [f]``), so
  checkpoints and parameter counts are unchanged. Each input is flattened to
  ``[N, C_i] @ kernel[C_i rows]`` and the products are summed with broadcasting: an input
  that is constant over space (the parents, ``[B, 1, 1, C_pa]``) costs ``B`` rows instead of
  ``B*H*W`` and is never broadcast or concatenated. On XLA:CPU this runs 2-5x faster than the
  1x1 convolution of the concatenation (benchmarks/README.md, "Profile").
  """

  features: int
  kernel_init: nn.initializers.Initializer
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, *xs: jnp.ndarray) -> jnp.ndarray:
    """Maps inputs ``[B, h_i, w_i, C_i]`` (spatial dims broadcastable) to
    ``[B, H, W, features]`` in ``dtype`` (float32 parameters cast to it)."""
    sizes = [x.shape[-1] for x in xs]
    kernel = self.param("kernel", self.kernel_init, (1, 1, sum(sizes), self.features))
    kernel = kernel.astype(self.dtype)
    y = self.param("bias", self.bias_init, (self.features,)).astype(self.dtype)
    start = 0
    for x, c in zip(xs, sizes):
      k = kernel[0, 0, start:start + c]
      x = x.astype(self.dtype)
      y = y + (x.reshape(-1, c) @ k).reshape(*x.shape[:-1], self.features)
      start += c
    return y


def concat_broadcast(parts: tuple[jnp.ndarray, ...]) -> jnp.ndarray:
  """Channel concatenation of ``parts`` after broadcasting their spatial dims."""
  if len(parts) == 1:
    return parts[0]
  shape = jnp.broadcast_shapes(*(p.shape[:-1] for p in parts))
  return jnp.concatenate([jnp.broadcast_to(p, shape + p.shape[-1:]) for p in parts], -1)


def conv(features: int, k: int, gain: float = 1.0, stride: int = 1,
         name: str | None = None, dtype: Any = jnp.float32) -> nn.Module:
  """A ``k x k`` conv with PyTorch padding ``k // 2`` (1 for 3x3, 3 for 7x7), zero bias.

  It computes and returns ``dtype`` (inputs and float32 parameters cast to it).
  """
  if k == 1 and stride == 1:
    return PointwiseConv(features, kernel_init(gain), dtype=dtype, name=name)
  pad = k // 2
  return nn.Conv(features, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 kernel_init=kernel_init(gain), bias_init=nn.initializers.zeros_init(),
                 dtype=dtype, param_dtype=jnp.float32, name=name)


class Block(nn.Module):
  """Residual bottleneck block (spec §1.1).

  Attributes:
    out_width: Output channels.
    bottleneck: Bottleneck channels ``b``.
    kernel: Size of the inner convs (3 or 1).
    residual: Whether to add the (projected) input.
    down_rate: Average-pool factor applied after the residual add, or None.
    version: ``"default"`` or ``"light"``.
    last_gain: Init gain of the last conv of the conv path.
    dtype: Compute dtype of the conv path (``HVAEConfig.compute_dtype``); the block's
      output, the skip (``width_proj`` included) and the pooling are float32.
  """

  out_width: int
  bottleneck: int
  kernel: int = 3
  residual: bool = True
  down_rate: int | None = None
  version: str = "default"
  last_gain: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray | tuple[jnp.ndarray, ...]) -> jnp.ndarray:
    """Maps ``[B, H, W, C_in]`` to ``[B, H / d, W / d, out_width]``.

    ``x`` may be a tuple of parts whose channel concatenation (spatial dims broadcast) is the
    input; the default version then feeds them to its first 1x1 conv without concatenating.
    """
    b, k, dt = self.bottleneck, self.kernel, self.dtype
    parts = x if isinstance(x, tuple) else (x,)
    low = tuple(p.astype(dt) for p in parts)  # no-op at float32
    if self.version == "light":
      x = concat_broadcast(low)
      h = conv(b, k, name="conv_0", dtype=dt)(nn.relu(x))
      h = conv(self.out_width, k, self.last_gain, name="conv_1", dtype=dt)(nn.relu(h))
    else:
      h = conv(b, 1, name="conv_0", dtype=dt)(*(gelu(p) for p in low))
      h = conv(b, k, name="conv_1", dtype=dt)(gelu(h))
      h = conv(b, k, name="conv_2", dtype=dt)(gelu(h))
      h = conv(self.out_width, 1, self.last_gain, name="conv_3", dtype=dt)(gelu(h))
    h = h.astype(jnp.float32)
    if self.residual:
      x = concat_broadcast(parts)
      # The reference only creates width_proj when down-sampling or narrowing; every shipped
      # block with in != out is one of those, so "whenever widths differ" is equivalent.
      skip = x if x.shape[-1] == self.out_width else conv(  # float32: part of the stream
          self.out_width, 1, name="width_proj")(x)
      h = h + skip
    if self.down_rate:
      d = self.down_rate
      h = nn.avg_pool(h, (d, d), strides=(d, d))  # floor, like F.avg_pool2d
    return h


class DecoderBlock(nn.Module):
  """One top-down block (spec §1.3, steps 2-5 of §1.4).

  Attributes:
    spec: Resolution, widths, stochasticity and kernel size.
    z_dim: Latent channels.
    bottleneck: Bottleneck factor (``b = int(in_width / bottleneck)``).
    cond_prior: Whether the prior input includes the parents.
    version: Residual block version.
    n_blocks: Number of decoder blocks (for the init gains).
    is_last: The last block's ``z_feat_proj`` exists (parameter parity) but is not applied.
    dtype: Compute dtype of the convolutions; states, latents and the KL stay float32.
  """

  spec: DecoderBlockSpec
  z_dim: int
  bottleneck: int = 4
  cond_prior: bool = False
  version: str = "default"
  n_blocks: int = 1
  is_last: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jnp.ndarray, s: jnp.ndarray, pa: jnp.ndarray, pa_prior: jnp.ndarray,
               act: jnp.ndarray | None = None, latent: jnp.ndarray | None = None,
               log_t: jnp.ndarray | float | None = None,
               ) -> tuple[jnp.ndarray, jnp.ndarray | None, dict]:
    """Applies the block.

    Args:
      h: Deterministic state ``[B, r, r, in_width]``.
      s: Prior state ``[B, r, r, in_width]``.
      pa: Parents ``[B, 1, 1, C_pa]`` (constant over space; used as if broadcast to r x r).
      pa_prior: Parents for the prior (possibly with dropped channels), same shape.
      act: Encoder activation ``[B, r, r, in_width]`` (posterior mode) or None.
      latent: Latent ``[B, r, r, z_dim]`` to use instead of a prior draw (no ``act``).
      log_t: Log temperature added to prior and posterior log-scales, or None.

    Returns:
      ``(h', s', stats)``: ``h'`` ``[B, r, r, out_width]``; ``s'`` likewise (None for the
      last block); ``stats`` with ``z`` and either ``kl``, ``q_loc``, ``q_logscale``
      (posterior mode) or ``p_loc``, ``p_logscale`` (prior mode); empty if deterministic.
    """
    spec, z_dim = self.spec, self.z_dim
    b = int(spec.in_width / self.bottleneck)
    gain = math.sqrt(1.0 / self.n_blocks)
    prior = Block(2 * z_dim + spec.in_width, b, spec.kernel, residual=False,
                  version=self.version, last_gain=0.0, dtype=self.dtype, name="prior")
    p_in = (s, pa_prior) if self.cond_prior else s  # the prior sees [s, pa_prior]
    p_out = prior(p_in)  # [B, r, r, 2 z_dim + in_width]
    p_loc, p_logscale, p_feat = jnp.split(p_out, [z_dim, 2 * z_dim], axis=-1)
    if log_t is not None:
      p_logscale = p_logscale + log_t

    stats = {}
    if spec.stochastic:
      posterior = Block(2 * z_dim, b, spec.kernel, residual=False, version=self.version,
                        dtype=self.dtype, name="posterior")
      if act is not None:
        q_in = (h, pa, act)  # the posterior sees [h, pa, act] (reference order)
        q_loc, q_logscale = jnp.split(posterior(q_in), 2, axis=-1)  # [B, r, r, z_dim] each
        if log_t is not None:
          q_logscale = q_logscale + log_t
        z = sample_gaussian(self.make_rng("sample"), q_loc, q_logscale)
        stats = dict(z=z, kl=gaussian_kl(q_loc, q_logscale, p_loc, p_logscale),
                     q_loc=q_loc, q_logscale=q_logscale)
      else:
        if self.is_initializing():
          # Create the posterior's parameters whichever method initialises the model.
          posterior((h, pa, h))
        z = latent if latent is not None else sample_gaussian(
            self.make_rng("sample"), p_loc, p_logscale)
        stats = dict(z=z, p_loc=p_loc, p_logscale=p_logscale)
    else:
      z = p_loc  # deterministic block: the prior mean stands in for the latent

    f32 = jnp.float32
    z_proj = conv(spec.in_width, 1, gain, name="z_proj", dtype=self.dtype)
    h = h + p_feat + z_proj(z, pa).astype(f32)  # z_proj([z, pa])
    h = Block(spec.out_width, b, spec.kernel, residual=True, version=self.version,
              last_gain=gain, dtype=self.dtype, name="conv")(h)  # [B, r, r, out_width]
    z_feat_proj = conv(spec.out_width, 1, name="z_feat_proj", dtype=self.dtype)
    if not self.is_last:
      # The next prior sees z and the prior features but never pa through z_proj.
      s = z_feat_proj(z, p_feat).astype(f32)  # z_feat_proj([z, p_feat])
    else:
      s = None
      if self.is_initializing():
        # The reference creates (and counts) this unused projection: keep it for parity.
        z_feat_proj(z, p_feat)
    return h, s, stats
