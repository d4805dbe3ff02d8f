"""Hierarchical VAE image mechanism x = g(z, pa) (reference spec §1; causal-gen src/vae.py).

Bottom-up encoder (spec §1.2): a 7x7 stem, residual blocks, ``acts[r]`` = the last activation
at resolution r. Top-down decoder (spec §1.4): ``h = s = bias_1``; per block at resolution r,
upsample ``h`` and ``s`` (nearest) and add ``bias_r`` when coarser, then ``DecoderBlock``.
Parents ``pa [B, C_pa]`` enter every ``z_proj``, every posterior and, iff ``cond_prior``,
every prior as if broadcast to ``[B, r, r, C_pa]`` and concatenated (computed as a
``[B, C_pa]`` matmul added over space, ``hvae_blocks.PointwiseConv``).

Objective (spec §1.6), per example and in nats per image dimension ``D = C H W``::

    nll   = -mean_{H,W,C} log p(x | h)                         (discretised Gaussian, §1.7)
    kl    = sum_layers sum_{r,r,z} KL(q(z_i | z_<i, x, pa) || p(z_i | z_<i [, pa])) / D
    nelbo = nll + beta kl

With ``kl_free_bits = f > 0`` the KL is the reference's batch-level free-bits value
``sum_layers sum_c max(f, mean_B sum_{r,r} KL_c) / D``, one number for the batch, returned
broadcast to ``[B]`` (so the batch means of nelbo and kl match the reference).

Counterfactuals (spec §1.10): ``z = abduct(x, pa)``; ``(mu, sigma) = decode(z, pa)``;
``(mu*, sigma*) = decode(z, pa*)``; ``x* = clip(mu* + sigma* (x - mu) / max(sigma, 1e-12))``,
see :func:`counterfactual_image`. Given its own samples the abduction pass computes the
decoder states of ``decode(z, pa)`` exactly, so ``abduct(x, pa, with_factual=True)`` returns
the factual ``(mu, sigma)`` with ``z`` and only pa* needs a decode; latents from elsewhere can
be decoded under pa and pa* in one pass on a concatenated batch (nothing depends on the batch
size).

Mixed precision (``HVAEConfig.compute_dtype = "bfloat16"``): the stem, every residual block's
conv path and the decoder's ``z_proj`` / ``z_feat_proj`` compute in bfloat16 with float32
parameters (a block's ``width_proj`` skip stays float32); their outputs
return to float32 before they join the residual streams, so the streams, the latent
Gaussians, the KL and the likelihood are float32 (float32 is the default and the reference).

RNG streams: ``"sample"`` for every reparameterised draw (posterior and prior samples),
``"cond_dropout"`` for the per-batch prior-conditioning dropout choice (training with
``cond_prior`` and ``prior_dropout_channels`` only).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segcft_jax.models.hvae_arch import HVAEConfig, encoder_stem, parse_decoder, parse_encoder
from segcft_jax.models.hvae_blocks import Block, DecoderBlock, conv
from segcft_jax.models.likelihoods import DGaussNet, discretised_gaussian_nll

__all__ = ["HVAE", "Encoder", "Decoder", "counterfactual_image"]


class Encoder(nn.Module):
  """Bottom-up encoder: images ``[B, R, R, C]`` -> ``{r: [B, r, r, w_r]}``."""

  config: HVAEConfig

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> dict[int, jnp.ndarray]:
    cfg = self.config
    specs = parse_encoder(cfg)
    width, stride = encoder_stem(cfg)
    dt = cfg.dtype
    h = conv(width, 7, stride=stride, name="stem", dtype=dt)(x)  # no activation after it
    h = h.astype(jnp.float32)
    gain = math.sqrt(1.0 / len(specs))
    acts = {}
    for i, spec in enumerate(specs):
      h = Block(spec.out_width, int(spec.in_width / cfg.bottleneck), 3, residual=True,
                down_rate=spec.down_rate, version=cfg.block_version, last_gain=gain,
                dtype=dt, name=f"block_{i}")(h)
      r = h.shape[1]
      if r % 2 and r > 1:  # zero-pad odd sizes right/bottom (reference; unused by presets)
        h = jnp.pad(h, ((0, 0), (0, 1), (0, 1), (0, 0)))
      acts[h.shape[1]] = h
    return acts


def _upsample(x: jnp.ndarray, res: int) -> jnp.ndarray:
  """Nearest-neighbour upsampling ``[B, r, r, C]`` -> ``[B, res, res, C]``."""
  f = res // x.shape[1]
  return jnp.repeat(jnp.repeat(x, f, axis=1), f, axis=2)


class Decoder(nn.Module):
  """Top-down decoder (spec §1.4): parents (and optionally acts/latents) -> ``h, stats``."""

  config: HVAEConfig

  @nn.compact
  def __call__(self, pa: jnp.ndarray, pa_prior: jnp.ndarray,
               acts: dict[int, jnp.ndarray] | None = None,
               latents: Sequence[jnp.ndarray | None] | None = None,
               t: float | jnp.ndarray | None = None,
               ) -> tuple[jnp.ndarray, list[dict]]:
    """Runs the decoder.

    Args:
      pa: Parents ``[B, C_pa]``.
      pa_prior: Parents as seen by a conditional prior ``[B, C_pa]``.
      acts: Encoder activations (posterior mode) or None (prior / given latents).
      latents: Per-block latents indexed by global block index; missing or None entries
        are drawn from the prior. Ignored when ``acts`` is given.
      t: Temperature: ``log t`` is added to every prior and posterior log-scale.

    Returns:
      ``h [B, R, R, w_0]`` and one stats dict per stochastic block.
    """
    cfg = self.config
    specs = parse_decoder(cfg)
    latents = list(latents or [])
    log_t = None if t is None else jnp.log(jnp.asarray(t, jnp.float32))
    bias = {}
    for spec in specs:  # learnt bias maps, one per resolution <= bias_max_res
      if spec.res <= cfg.bias_max_res and spec.res not in bias:
        bias[spec.res] = self.param(f"bias_{spec.res}", nn.initializers.zeros_init(),
                                    (1, spec.res, spec.res, spec.in_width))
    batch = pa.shape[0]
    h = s = jnp.broadcast_to(bias[1], (batch,) + bias[1].shape[1:])  # [B, 1, 1, w]
    stats = []
    for i, spec in enumerate(specs):
      r = spec.res
      if h.shape[1] < r:
        b = bias.get(r, 0.0)
        h, s = b + _upsample(h, r), b + _upsample(s, r)  # s is upsampled at the same block
      pa_r, pa_prior_r = pa[:, None, None, :], pa_prior[:, None, None, :]  # [B, 1, 1, C_pa]
      block = DecoderBlock(spec, cfg.z_dim, cfg.bottleneck, cfg.cond_prior,
                           cfg.block_version, len(specs), i == len(specs) - 1,
                           dtype=cfg.dtype, name=f"block_{i}")
      latent = latents[i] if i < len(latents) else None
      act = None if acts is None or not spec.stochastic else acts[r]
      h, s, stat = block(h, s, pa_r, pa_prior_r, act=act, latent=latent, log_t=log_t)
      if spec.stochastic:
        stats.append(stat)
    return h, stats


def _mean_and_scale(loc: jnp.ndarray, logscale: jnp.ndarray
                    ) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Likelihood head output -> the ``(mu, sigma)`` of a decode: ``clip(loc, -1, 1)``, ``exp``."""
  return jnp.clip(loc, -1.0, 1.0), jnp.exp(logscale)


def counterfactual_image(x: jnp.ndarray, mu: jnp.ndarray, sigma: jnp.ndarray,
                         mu_cf: jnp.ndarray, sigma_cf: jnp.ndarray) -> jnp.ndarray:
  """Abducts the pixel noise and pushes it through the counterfactual (spec §1.10).

  ``u = (x - mu) / max(sigma, 1e-12)``; ``x* = clip(mu_cf + sigma_cf u, -1, 1)``.

  Args:
    x: Observed images ``[B, H, W, C]`` in ``[-1, 1]``.
    mu, sigma: Factual decoder mean and scale (``HVAE.decode(z, pa)``).
    mu_cf, sigma_cf: Counterfactual mean and scale (``HVAE.decode(z, pa*)``).

  Returns:
    Counterfactual images ``[B, H, W, C]``.
  """
  u = (x - mu) / jnp.maximum(sigma, 1e-12)
  return jnp.clip(mu_cf + sigma_cf * u, -1.0, 1.0)


class HVAE(nn.Module):
  """Hierarchical VAE image mechanism (images NHWC in ``[-1, 1]``, parents ``[B, C_pa]``).

  Attributes:
    config: Architecture and objective hyper-parameters.
  """

  config: HVAEConfig

  def setup(self):
    cfg = self.config
    self.encoder = Encoder(cfg)
    self.decoder = Decoder(cfg)
    self.likelihood = DGaussNet(cfg.input_channels, cfg.std_init, cfg.covariance)

  def _check_parents(self, pa: jnp.ndarray) -> jnp.ndarray:
    if pa.ndim != 2 or pa.shape[-1] != self.config.context_dim:
      raise ValueError(f"parents must be [B, {self.config.context_dim}], got {pa.shape}")
    return pa

  def _prior_parents(self, pa: jnp.ndarray, training: bool) -> jnp.ndarray:
    """Conditioning dropout of the prior input (spec §1.4; the reference's net effect).

    With probability 1/3 per batch the channels ``prior_dropout_channels`` are zeroed; the
    reference's "drop deterministic path" option is a no-op and is therefore not drawn.
    """
    cfg = self.config
    if not (training and cfg.cond_prior and cfg.prior_dropout_channels):
      return pa
    a, b = cfg.prior_dropout_channels
    keep = jax.random.randint(self.make_rng("cond_dropout"), (), 0, 3) != 0
    mask = jnp.ones((pa.shape[-1],), pa.dtype).at[a:b].set(keep.astype(pa.dtype))
    return pa * mask

  def __call__(self, x: jnp.ndarray, pa: jnp.ndarray, beta: float | jnp.ndarray = 1.0,
               training: bool = True, return_latents: bool = False) -> dict:
    """Negative ELBO and its terms, per example, in nats per dimension.

    Args:
      x: Images ``[B, R, R, C]`` in ``[-1, 1]``.
      pa: Parents ``[B, C_pa]``.
      beta: KL weight.
      training: Enables the prior-conditioning dropout (``cond_prior`` models only).
      return_latents: Also return the posterior samples under ``"latents"`` (one
        ``[B, r, r, z_dim]`` per stochastic block): an abduction ``z ~ q(z | x, pa)`` at
        temperature 1, reusable for a counterfactual of the same batch; and, unless the
        prior-conditioning dropout is active, ``"factual"``: ``decode(latents, pa)``.

    Returns:
      ``dict(nelbo=[B], nll=[B], kl=[B])`` with ``nelbo = nll + beta kl``. With free bits
      ``kl`` is the batch-level value broadcast to ``[B]`` (see the module docstring).
    """
    pa = self._check_parents(pa)
    acts = self.encoder(x)
    pa_prior = self._prior_parents(pa, training)
    h, stats = self.decoder(pa, pa_prior, acts=acts)
    loc, logscale = self.likelihood(h)
    nll = discretised_gaussian_nll(x, loc, logscale)  # [B]
    dims = math.prod(x.shape[1:])
    fb = self.config.kl_free_bits
    if fb > 0:
      # Per layer: sum over space, mean over batch -> [z_dim]; each channel at least fb.
      kl = sum(jnp.maximum(fb, st["kl"].sum(axis=(1, 2)).mean(axis=0)).sum() for st in stats)
      kl = jnp.broadcast_to(kl / dims, nll.shape)
    else:
      kl = sum(st["kl"].sum(axis=(1, 2, 3)) for st in stats) / dims  # [B]
    out = dict(nelbo=nll + beta * kl, nll=nll, kl=kl)
    if return_latents:
      out["latents"] = [st["z"] for st in stats]
      if pa_prior is pa:  # The decoder saw pa everywhere: its output is decode(latents, pa).
        out["factual"] = _mean_and_scale(loc, logscale)
    return out

  def abduct(self, x: jnp.ndarray, pa: jnp.ndarray, t: float | jnp.ndarray | None = None,
             with_factual: bool = False):
    """Posterior samples ``z_i ~ q(z_i | z_<i, x, pa)``, one ``[B, r, r, z_dim]`` per
    stochastic block (``log t`` added to the posterior log-scales if ``t`` is given).

    For ``cond_prior`` models only the ``z`` are returned (the reference's dicts also hold
    ``q_loc``/``q_logscale``; the total-effect mixture rule is not ported here).

    With ``with_factual`` returns ``(z, (mu, sigma))``, where ``(mu, sigma)`` is the
    likelihood of the posterior pass itself. Given its samples, the posterior pass computes
    the same decoder states as ``decode(z, pa)`` (each block adds the prior features and
    ``z_proj([z, pa])`` whichever way ``z`` was obtained), so this *is* the factual decode of
    spec §1.10 without a second decoder pass.
    """
    pa = self._check_parents(pa)
    h, stats = self.decoder(pa, pa, acts=self.encoder(x), t=t)
    z = [st["z"] for st in stats]
    if not with_factual:
      return z
    return z, _mean_and_scale(*self.likelihood(h))

  def decode(self, latents: Sequence[jnp.ndarray | None], pa: jnp.ndarray,
             t: float | jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The reference ``forward_latents``: decode given latents under parents ``pa``.

    Args:
      latents: Per-block latents (global block index); None or missing entries are drawn
        from the prior with temperature ``t``.
      pa: Parents ``[B, C_pa]``.
      t: Prior temperature for the missing latents (the pixel scale is not tempered).

    Returns:
      ``(mu, sigma)``, each ``[B, R, R, C]``: ``clip(loc, -1, 1)`` and ``exp(logscale)``.
    """
    pa = self._check_parents(pa)
    h, _ = self.decoder(pa, pa, latents=latents, t=t)
    return _mean_and_scale(*self.likelihood(h))

  def sample(self, pa: jnp.ndarray, t: float | jnp.ndarray = 1.0) -> jnp.ndarray:
    """Ancestral prior sample at temperature ``t``; returns the clipped mean ``[B, R, R, C]``."""
    return self.decode([], pa, t=t)[0]


def init_params(model: HVAE, rng: jax.Array, x: jnp.ndarray, pa: jnp.ndarray):
  """Parameters of `model` from one example of images `x` and parents `pa` (shapes only)."""
  return model.init({"params": rng, "sample": rng, "cond_dropout": rng}, x[:1], pa[:1])["params"]


def streams(rng: jax.Array) -> dict[str, jax.Array]:
  """The posterior-sample and prior-conditioning-dropout keys of one ELBO pass."""
  r_sample, r_drop = jax.random.split(rng)
  return {"sample": r_sample, "cond_dropout": r_drop}


def elbo(model: HVAE, params, x: jnp.ndarray, pa: jnp.ndarray, beta: float,
         rngs: dict[str, jax.Array], training: bool, return_latents: bool = False) -> dict:
  """`HVAE.__call__` (per-example -ELBO and its terms) under the keys of `streams(rng)`."""
  return model.apply({"params": params}, x, pa, beta, training=training,
                     return_latents=return_latents, rngs=rngs)
