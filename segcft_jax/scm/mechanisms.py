"""Mechanisms of the scalar SCM: one per variable, in normalised units.

With ``pa`` the normalised parent vector (:meth:`Graph.to_vector`), ``u ~ N(0, 1)`` the
exogenous noise, ``S`` an unconditional rational-quadratic spline, ``(mu, log_sigma) =
MLP(pa)`` (GELU hidden layers, zero-initialised output layer) and ``Q(z) = 2 sigmoid(z) - 1``
the squash applied only to range-normalised variables:

    continuous root:   v = [Q o] S(u)
    continuous child:  v = [Q o] (mu(pa) + exp(log_sigma(pa)) [S](u))     (spline optional)
    binary:            v ~ Bernoulli(sigmoid(l)),      l = constant (root) or MLP(pa)
    categorical:       v ~ Categorical(softmax(l)),    l = constant [K] (root) or MLP(pa) [K]

For a child the spline acts on the noise, so the mechanism is a location-scale model with a
learned noise shape: ``mu`` and ``sigma`` are the conditional location and scale of the
pre-squash value. Log-densities are of the normalised value (the Jacobian of the data
normalisation is a constant and is left out):

    log p(v | pa) = log N(u; 0, 1) + log |du/dv|,   u = T^{-1}(v; pa).

Discrete variables have no exogenous noise here: abduction keeps their observed value (the
counterfactual of a discrete variable is its observed value unless it is intervened on; see
``pgm.py``). All parameters start at the identity/uniform: zero spline parameters are the
identity map and the zero output layer gives ``mu = 0``, ``sigma = 1``, uniform logits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segcft_jax.models import flows

__all__ = ["MLP", "ContinuousMechanism", "DiscreteMechanism", "standard_normal_log_prob"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def standard_normal_log_prob(u: jax.Array) -> jax.Array:
  """Element-wise ``log N(u; 0, 1)``."""
  return -0.5 * u ** 2 - _HALF_LOG_2PI


class MLP(nn.Module):
  """Dense -> GELU (exact) stack with a zero-initialised linear output layer.

  Attributes:
    hidden: Hidden layer widths.
    outputs: Output width.
  """

  hidden: Sequence[int]
  outputs: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps ``[B, C]`` to ``[B, outputs]``."""
    for i, width in enumerate(self.hidden):
      x = nn.gelu(nn.Dense(int(width), name=f"dense_{i}")(x), approximate=False)
    # Zero output: the mechanism starts at the identity / uniform distribution, so early
    # training cannot blow up the scale.
    return nn.Dense(self.outputs, kernel_init=nn.initializers.zeros, name="out")(x)


@dataclasses.dataclass(frozen=True)
class ContinuousMechanism:
  """Normalising-flow mechanism ``v = T(u; pa)`` of a continuous variable.

  Attributes:
    parent_dim: Width of the parent vector (0 for a root).
    squash: Apply ``2 sigmoid(.) - 1`` last (range-normalised variables).
    spline: Use the unconditional spline (always on for roots).
    num_bins: Spline bins ``K``.
    bound: Spline interval half-width ``B`` (identity outside ``[-B, B]``).
    hidden: Hidden widths of the conditioning MLP (children only).
  """

  parent_dim: int
  squash: bool
  spline: bool = True
  num_bins: int = 8
  bound: float = 3.0
  hidden: tuple[int, ...] = (32, 32)

  def __post_init__(self):
    if self.parent_dim == 0 and not self.spline:
      raise ValueError("A continuous root needs its spline (it has no other parameters).")

  @property
  def conditional(self) -> bool:
    return self.parent_dim > 0

  def _mlp(self) -> MLP:
    return MLP(hidden=tuple(self.hidden), outputs=2)

  def init(self, rng: jax.Array) -> dict:
    """Parameters: ``{"spline": {widths, heights, derivatives}}`` and/or ``{"mlp": ...}``."""
    params = {}
    if self.spline:
      kw, kh, kd = flows.rqs_num_params(self.num_bins)
      params["spline"] = {"widths": jnp.zeros((kw,)), "heights": jnp.zeros((kh,)),
                          "derivatives": jnp.zeros((kd,))}
    if self.conditional:
      x = jnp.zeros((1, self.parent_dim), jnp.float32)
      params["mlp"] = self._mlp().init(rng, x)["params"]
    return params

  def _spline_args(self, params):
    s = params["spline"]
    return s["widths"], s["heights"], s["derivatives"], self.bound

  def loc_scale(self, params: dict, pa: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Conditional ``(mu, log_sigma)``, each ``[B]``, from the parent vector ``[B, C]``."""
    out = self._mlp().apply({"params": params["mlp"]}, pa)
    return out[:, 0], out[:, 1]

  def forward(self, params: dict, u: jax.Array,
              pa: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Noise ``u`` ``[B]`` -> normalised value ``v`` ``[B]`` and ``log|dv/du|``."""
    z, logdet = u, jnp.zeros_like(u)
    if self.spline:
      z, ld = flows.rqs_forward(z, *self._spline_args(params))
      logdet = logdet + ld
    if self.conditional:
      z, ld = flows.affine_forward(z, *self.loc_scale(params, pa))
      logdet = logdet + ld
    if self.squash:
      z, ld = flows.squash_forward(z)
      logdet = logdet + ld
    return z, logdet

  def inverse(self, params: dict, v: jax.Array,
              pa: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Normalised value ``v`` ``[B]`` -> noise ``u`` ``[B]`` and ``log|du/dv|``."""
    z, logdet = v, jnp.zeros_like(v)
    if self.squash:
      z, ld = flows.squash_inverse(z)
      logdet = logdet + ld
    if self.conditional:
      z, ld = flows.affine_inverse(z, *self.loc_scale(params, pa))
      logdet = logdet + ld
    if self.spline:
      z, ld = flows.rqs_inverse(z, *self._spline_args(params))
      logdet = logdet + ld
    return z, logdet

  def log_prob(self, params: dict, v: jax.Array, pa: jax.Array | None = None) -> jax.Array:
    """``log p(v | pa)`` per example ``[B]`` (density of the normalised value)."""
    u, logdet = self.inverse(params, v, pa)
    return standard_normal_log_prob(u) + logdet

  def sample(self, params: dict, rng: jax.Array, batch: int,
             pa: jax.Array | None = None) -> jax.Array:
    """Draws ``[B]`` normalised values."""
    return self.forward(params, jax.random.normal(rng, (batch,)), pa)[0]


@dataclasses.dataclass(frozen=True)
class DiscreteMechanism:
  """Bernoulli (``num_classes=2``, one logit) or categorical head of a discrete variable.

  Attributes:
    parent_dim: Width of the parent vector (0 for a root: learned constant logits).
    num_classes: 2 for binary (values 0/1, float32), ``K`` for categorical (int32).
    categorical: Whether the variable is categorical (one-hot parent encoding).
    hidden: Hidden widths of the logit MLP (children only).
  """

  parent_dim: int
  num_classes: int = 2
  categorical: bool = False
  hidden: tuple[int, ...] = (32, 32)

  @property
  def num_logits(self) -> int:
    return self.num_classes if self.categorical else 1

  def _mlp(self) -> MLP:
    return MLP(hidden=tuple(self.hidden), outputs=self.num_logits)

  def init(self, rng: jax.Array) -> dict:
    """Parameters: ``{"logits": [L]}`` (root) or ``{"mlp": ...}`` (child)."""
    if self.parent_dim == 0:
      return {"logits": jnp.zeros((self.num_logits,))}
    x = jnp.zeros((1, self.parent_dim), jnp.float32)
    return {"mlp": self._mlp().init(rng, x)["params"]}

  def logits(self, params: dict, batch: int, pa: jax.Array | None = None) -> jax.Array:
    """Logits ``[B, L]`` (``L = 1`` for binary)."""
    if self.parent_dim == 0:
      return jnp.broadcast_to(params["logits"], (batch, self.num_logits))
    return self._mlp().apply({"params": params["mlp"]}, pa)

  def log_prob(self, params: dict, v: jax.Array, pa: jax.Array | None = None) -> jax.Array:
    """``log p(v | pa)`` per example ``[B]``."""
    logits = self.logits(params, v.shape[0], pa)
    if self.categorical:
      logp = jax.nn.log_softmax(logits, axis=-1)
      return jnp.take_along_axis(logp, v.astype(jnp.int32)[:, None], -1)[:, 0]
    l, y = logits[:, 0], v.astype(jnp.float32)
    return y * l - jax.nn.softplus(l)  # log sigmoid(l) if y = 1, log sigmoid(-l) if y = 0

  def sample(self, params: dict, rng: jax.Array, batch: int,
             pa: jax.Array | None = None) -> jax.Array:
    """Draws ``[B]`` values (float32 0/1, or int32 classes)."""
    logits = self.logits(params, batch, pa)
    if self.categorical:
      return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
    return jax.random.bernoulli(rng, jax.nn.sigmoid(logits[:, 0])).astype(jnp.float32)
