"""Anticausal CNN predictor of the scalar variables (Reg-CFT's frozen predictor).

Follows the causal-gen `CNN` (reference spec §3.2): conv7x7 -> [conv3x3 s2 (w->2w), conv3x3
(2w), conv3x3 s2 (2w->4w), conv3x3 (4w), conv3x3 s2 (4w->8w)] -> global mean pool ->
Dense(8w) -> Dense(outputs), each conv followed by a normalisation and LeakyReLU(0.01).

Normalisation (`norm`), a deviation from the reference's BatchNorm either way, so the predictor
is a pure function of its parameters (no running statistics to freeze):

* ``"group"``: GroupNorm after every conv, LayerNorm after the first Dense. Each example is
  normalised by its own statistics, which divides out a scaling of the image (f(g x) = f(x)
  exactly: the convs carry no bias) and most of a global exposure change: a 10 % gain moved
  the synth_chest regressor's areas by <= 1.2 %. Local contrast still reaches it (the
  synth_vessel regressor reads plaque from the lumen's contrast: 8-42 %).
* ``"none"``: no normalisation, biased convs. The frozen reference BatchNorm is a fixed affine
  map at evaluation, so like it this predictor sees absolute intensities and can read areas
  from global brightness, the shortcut the synthetic datasets plant on purpose. Measured on
  synth_chest (2026-12-05, 600 steps): it still read the organs mostly from their outlines (a
  10 % gain moved its areas by <= 1.7 %) and less accurately (test MAPE 5.4 / 5.3 / 8.7 %
  against 2.6 / 1.8 / 2.5 % with GroupNorm), so ``"group"`` stays the default.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

NORMS = ("group", "none")


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
    norm_groups: maximum GroupNorm groups (`norm="group"`).
    norm: ``"group"`` or ``"none"`` (module docstring).
  """

  outputs: int
  width: int = 8
  norm_groups: int = 8
  norm: str = "group"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:  # x [B, H, W, C] in [-1, 1]
    if self.norm not in NORMS:
      raise ValueError(f"Unknown regressor norm {self.norm!r} (config.regressor.model.norm); "
                       f"choose one of {NORMS}.")
    w, grouped = self.width, self.norm == "group"
    act = lambda h: nn.leaky_relu(h, 0.01)
    norm = lambda c: (nn.GroupNorm(num_groups=_groups(c, self.norm_groups)) if grouped
                      else lambda h: h)
    stride = 2 if x.shape[1] > 64 else 1  # as the reference: stride-2 stem above 64 px
    h = act(norm(w)(nn.Conv(w, (7, 7), strides=stride, use_bias=not grouped)(x)))
    if x.shape[1] > 32:
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    for c, s in ((2 * w, 2), (2 * w, 1), (4 * w, 2), (4 * w, 1), (8 * w, 2)):
      h = act(norm(c)(nn.Conv(c, (3, 3), strides=s, use_bias=not grouped)(h)))
    h = h.mean(axis=(1, 2))  # [B, 8w]
    h = nn.Dense(8 * w, use_bias=not grouped)(h)
    h = act(nn.LayerNorm()(h) if grouped else h)
    return nn.Dense(self.outputs)(h)
