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
  from global brightness, the shortcut the synthetic datasets plant on purpose. On synth_chest
  it was less accurate and barely more brightness-sensitive (docs/experiments.md), so
  ``"group"`` stays the default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
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


def predict(model: Regressor, params: Any, x: jax.Array, types: Mapping[str, str],
            stats: Mapping[str, tuple[float, float]]) -> dict[str, jax.Array]:
  """Per-variable predictions in data units: `mu(x) s_v + m_v` (binary: the probability).

  Head layout: units `2i, 2i + 1` of variable i are (mean, scale) on the standardised target
  `y = (v - m_v) / s_v`, or (logit, unused) for a binary variable.
  """
  out = model.apply({"params": params}, x)  # [B, 2 * n]
  result = {}
  for i, (n, t) in enumerate(types.items()):
    if t == "binary":
      result[n] = jax.nn.sigmoid(out[:, 2 * i])
    else:
      m, s = stats[n]
      result[n] = out[:, 2 * i] * s + m
  return result


def gaussian_nll(model: Regressor, params: Any, x: jax.Array, types: Mapping[str, str],
                 stats: Mapping[str, tuple[float, float]], targets: Mapping[str, jax.Array]
                 ) -> dict[str, jax.Array]:
  """`-log q(v = t | x)` per example for the continuous variables in `targets` (data units).

  The training loss of the Gaussian heads on the standardised target
  `y = (t - m) / s`: `0.5 ((y - mu(x)) / sigma(x))^2 + log sigma(x)`, `sigma = softplus + 1e-3`
  (nats; the constant `log s + log sqrt(2 pi)` is left out). This is the reference's CFT
  auxiliary loss (causal-gen `dscm.py`: `-log q_k(pa*_k | x*)`, reference spec §4.1).
  """
  out = model.apply({"params": params}, x)  # [B, 2 * n]
  index = {n: i for i, n in enumerate(types)}
  result = {}
  for n, target in targets.items():
    if types[n] == "binary":
      raise ValueError(f"The nll distance supports continuous variables only; {n!r} is binary.")
    i = index[n]
    m, s = stats[n]
    sigma = jax.nn.softplus(out[:, 2 * i + 1]) + 1e-3
    result[n] = 0.5 * (((target - m) / s - out[:, 2 * i]) / sigma) ** 2 + jnp.log(sigma)
  return result


@dataclasses.dataclass(frozen=True)
class RegressorModel:
  """A regressor with its head layout: the module, variable types and target standardisation
  `{variable: (train mean, train std)}` (Reg-CFT's frozen predictor)."""
  model: Regressor
  types: dict[str, str]
  stats: dict[str, tuple[float, float]]

  def predict(self, params: Any, x: jax.Array) -> dict[str, jax.Array]:
    """`predict` with this model's types and stats."""
    return predict(self.model, params, x, self.types, self.stats)

  def nll(self, params: Any, x: jax.Array, targets: Mapping[str, jax.Array]
          ) -> dict[str, jax.Array]:
    """`gaussian_nll` with this model's types and stats."""
    return gaussian_nll(self.model, params, x, self.types, self.stats, targets)
