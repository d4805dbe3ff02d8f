"""Anticausal CNN predictor of the scalar variables (Reg-CFT's frozen predictor).

Follows the causal-gen `CNN` (reference spec §3.2): conv7x7 -> [conv3x3 s2 (w->2w), conv3x3
(2w), conv3x3 s2 (2w->4w), conv3x3 (4w), conv3x3 s2 (4w->8w)] -> global mean pool ->
Dense(8w) -> Dense(outputs). Deviation: GroupNorm instead of BatchNorm, so the predictor is a
pure function of its parameters (no running statistics to freeze) and examples are independent.
It sees the whole image, so nothing stops it from reading global brightness — the shortcut
the synthetic datasets plant on purpose.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def _groups(channels: int, norm_groups: int) -> int:
  g = min(norm_groups, channels)
  while channels % g:
    g -= 1
  return g


class Regressor(nn.Module):
  """Image -> `[B, outputs]` raw head values (means/log-scales/logits, by the caller's layout).

  Attributes:
    outputs: number of output units.
    width: base width w (the reference uses 8 for Morpho-MNIST, 16 for UK Biobank).
    norm_groups: maximum GroupNorm groups.
  """

  outputs: int
  width: int = 8
  norm_groups: int = 8

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:  # x [B, H, W, C] in [-1, 1]
    w = self.width
    act = lambda h: nn.leaky_relu(h, 0.01)
    norm = lambda c: nn.GroupNorm(num_groups=_groups(c, self.norm_groups))
    stride = 2 if x.shape[1] > 64 else 1  # as the reference: stride-2 stem above 64 px
    h = act(norm(w)(nn.Conv(w, (7, 7), strides=stride, use_bias=False)(x)))
    if x.shape[1] > 32:
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    for c, s in ((2 * w, 2), (2 * w, 1), (4 * w, 2), (4 * w, 1), (8 * w, 2)):
      h = act(norm(c)(nn.Conv(c, (3, 3), strides=s, use_bias=False)(h)))
    h = h.mean(axis=(1, 2))  # [B, 8w]
    h = act(nn.LayerNorm()(nn.Dense(8 * w, use_bias=False)(h)))
    return nn.Dense(self.outputs)(h)
