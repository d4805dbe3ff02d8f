"""A 2-D U-Net segmentor in Flax Linen (NHWC, no mutable state).

Architecture, for ``widths = (w_0, ..., w_{L-1})`` (finest first, depth ``L``)
and ``n = blocks_per_level``::

    h      = Conv3x3(x)                                   C_in -> w_0       ("stem")
    for l in 0 .. L-1:                                                   (encoder)
        h  = ResBlock(h) x n                              -> w_l           ("enc_{l}_{j}")
        if l < L-1:  s_l = h;  h = AvgPool2x2(h)
    for l in L-2 .. 0:                                                   (decoder)
        h  = Conv3x3(NearestUpsample2x(h))               w_{l+1} -> w_l   ("up_{l}")
        h  = concat([h, s_l], channels)                   -> 2 w_l
        h  = ResBlock(h) x n                              -> w_l           ("dec_{l}_{j}")
    logits = Conv1x1(h)                                   w_0 -> K         ("head")

with the residual block (pre-activation sums, post-activation output)::

    ResBlock(x) = SiLU( GN(Conv3x3(SiLU(GN(Conv3x3(x))))) + P(x) ),

where ``GN`` is GroupNorm with ``g(c)`` groups, ``g(c)`` being the largest
divisor of ``c`` that is ``<= norm_groups``, and ``P`` is the identity when
the block keeps its channel count and a 1x1 convolution otherwise.

Parameter count (all convolutions carry a bias, GroupNorm has scale and bias):
``conv(k, a, b) = k*k*a*b + b``, ``gn(c) = 2c``,
``res(a, b) = conv(3,a,b) + gn(b) + conv(3,b,b) + gn(b) + [a != b] conv(1,a,b)``.

GroupNorm normalises each example on its own, so the output for one example
never depends on the other examples in the batch.

Spatial sizes must be divisible by ``2**(L-1)`` (one halving per level
transition); otherwise :class:`UNet` raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["UNet", "ResBlock", "num_groups_for"]


def num_groups_for(channels: int, norm_groups: int) -> int:
  """Returns the GroupNorm group count used for ``channels`` channels.

  Args:
    channels: Number of feature channels.
    norm_groups: Requested (maximum) number of groups.

  Returns:
    The largest ``g <= min(norm_groups, channels)`` that divides ``channels``
    (at least 1).
  """
  if channels < 1:
    raise ValueError(f"channels must be positive, got {channels}")
  g = max(1, min(int(norm_groups), channels))
  while channels % g:
    g -= 1
  return g


class ResBlock(nn.Module):
  """Residual Conv3x3 -> GroupNorm -> SiLU block.

  Attributes:
    features: Output channels.
    norm_groups: Maximum GroupNorm groups (see :func:`num_groups_for`).
    dtype: Computation dtype; parameters stay float32.
  """

  features: int
  norm_groups: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Applies the block.

    Args:
      x: Features ``[B, H, W, C]``.

    Returns:
      Features ``[B, H, W, features]`` in ``dtype``.
    """
    groups = num_groups_for(self.features, self.norm_groups)
    conv = lambda k, name: nn.Conv(
        self.features, (k, k), padding="SAME", dtype=self.dtype,
        param_dtype=jnp.float32, name=name)
    norm = lambda name: nn.GroupNorm(
        num_groups=groups, dtype=self.dtype, param_dtype=jnp.float32,
        name=name)
    h = nn.silu(norm("norm_0")(conv(3, "conv_0")(x)))
    h = norm("norm_1")(conv(3, "conv_1")(h))
    skip = x if x.shape[-1] == self.features else conv(1, "proj")(x)
    return nn.silu(h + skip)


class UNet(nn.Module):
  """2-D U-Net segmentor: images ``[B,H,W,C]`` -> logits ``[B,H,W,K]``.

  Attributes:
    num_classes: Number of output classes ``K``.
    widths: Channels per resolution level, finest first; depth is
      ``len(widths)``.
    blocks_per_level: Residual blocks per level on each side.
    norm_groups: Maximum GroupNorm groups (the largest divisor of the channel
      count not above this is used).
    dtype: Computation dtype (parameters stay float32; logits are float32).
  """

  num_classes: int
  widths: Sequence[int] = (16, 32, 64)
  blocks_per_level: int = 2
  norm_groups: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Segments a batch of images.

    Args:
      x: Images ``[B, H, W, C]``, float, nominally in ``[-1, 1]``.

    Returns:
      Float32 logits ``[B, H, W, num_classes]``.

    Raises:
      ValueError: If ``x`` is not rank 4, or ``H`` or ``W`` is not divisible
        by ``2**(len(widths) - 1)``.
    """
    widths = tuple(int(w) for w in self.widths)
    if not widths:
      raise ValueError("widths must be non-empty")
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
    if x.ndim != 4:
      raise ValueError(f"expected input of shape [B,H,W,C], got {x.shape}")
    depth = len(widths)
    divisor = 2 ** (depth - 1)
    _, height, width, _ = x.shape
    if height % divisor or width % divisor:
      raise ValueError(
          f"input spatial shape (H, W) = ({height}, {width}) of input "
          f"{tuple(x.shape)} is not divisible by {divisor} = 2**(depth-1) "
          f"for depth {depth}")

    block = lambda w, name: ResBlock(
        w, norm_groups=self.norm_groups, dtype=self.dtype, name=name)
    conv = lambda w, k, name: nn.Conv(
        w, (k, k), padding="SAME", dtype=self.dtype, param_dtype=jnp.float32,
        name=name)

    h = conv(widths[0], 3, "stem")(x.astype(self.dtype))
    skips = []
    for level, w in enumerate(widths):
      for j in range(self.blocks_per_level):
        h = block(w, f"enc_{level}_{j}")(h)
      if level < depth - 1:
        skips.append(h)
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))

    for level in range(depth - 2, -1, -1):
      h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
      h = conv(widths[level], 3, f"up_{level}")(h)
      h = jnp.concatenate([h, skips[level]], axis=-1)
      for j in range(self.blocks_per_level):
        h = block(widths[level], f"dec_{level}_{j}")(h)

    logits = conv(self.num_classes, 1, "head")(h)
    return logits.astype(jnp.float32)
