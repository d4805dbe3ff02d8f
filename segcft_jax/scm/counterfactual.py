"""The counterfactual function of the deep SCM: abduct -> intervene -> predict (SPEC §1).

    parents* = PGM.counterfactual(parents, do)                    (scalar SCM, §3.1)
    z        ~ q(z | x, pa)                                       (HVAE abduction)
    (mu, sigma), (mu*, sigma*) = decode(z, pa), decode(z, pa*)
    x*       = clip(mu* + sigma* (x - mu) / sigma, -1, 1)         (reference spec §1.10)

The factual decode is the abduction pass's own likelihood (`HVAE.abduct(with_factual=True)`:
given its samples the posterior pass computes exactly decode(z, pa)), so only pa* is decoded
— one decoder pass fewer than the reference's two `forward_latents`. Latents passed in without
their factual decode are decoded under pa and pa* as one doubled batch.

One typed signature, `counterfactual(models, params, x, parents, do, rng) -> (x*, parents*)`,
serves fine-tuning, evaluation and the user command. Parents are normalised values
(`Graph.normalize`); `do` maps a variable to `(value, mask)` per example (mask None = every
example). `checked_interventions` turns user input in data units into that form, failing
before any compute on an unknown variable or a value outside the variable's support.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from segcft_jax.models.hvae import HVAE, counterfactual_image
from segcft_jax.scm.graph import Graph
from segcft_jax.scm.pgm import PGM

Values = Mapping[str, jax.Array]
Do = Mapping[str, tuple[jax.Array, jax.Array | None]]


@dataclasses.dataclass(frozen=True)
class DSCM:
  """The deep SCM's modules (parameters are passed separately).

  Attributes:
    pgm: scalar mechanisms over `pgm.graph`.
    hvae: image mechanism.
    parents: the HVAE's parent variables, in the order of its parent vector.
  """
  pgm: PGM
  hvae: HVAE
  parents: tuple[str, ...]

  @property
  def graph(self) -> Graph:
    return self.pgm.graph

  def parent_vector(self, values_n: Values) -> jax.Array:
    return self.graph.to_vector(values_n, self.parents)  # [B, C_pa]


def counterfactual(models: DSCM, params: Mapping[str, Any], x: jax.Array, parents: Values,
                   do: Do, rng: jax.Array, t_abduct: float | None = None,
                   latents: Sequence[jax.Array] | None = None,
                   factual: tuple[jax.Array, jax.Array] | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Counterfactual images and parents for a batch.

  Args:
    models: the DSCM.
    params: `{"pgm": ..., "hvae": ...}`.
    x: factual images `[B, H, W, 1]` in [-1, 1].
    parents: factual normalised values of every graph variable, `[B]` each.
    do: interventions, name -> (normalised value `[B]`, mask `[B]` bool or None).
    rng: key of the posterior sample.
    t_abduct: posterior temperature (None: 1, as in causal-gen's dscm.py).
    latents: an abduction of this batch already drawn (e.g. the posterior samples of the
      ELBO pass, `HVAE(..., return_latents=True)`); skips the encoder and posterior pass.
    factual: `decode(latents, pa)` = `(mu, sigma)` if already computed (the ELBO pass's
      `"factual"`); with `latents` only.

  Raises:
    ValueError: `factual` without `latents`.

  Returns:
    `(x_cf [B, H, W, 1], parents_cf)`; with no intervention x_cf == x up to rounding.
  """
  out = counterfactual_decodes(models, params, x, parents, do, rng, t_abduct, latents, factual)
  return out["x_cf"], out["parents_cf"]


def counterfactual_decodes(models: DSCM, params: Mapping[str, Any], x: jax.Array,
                           parents: Values, do: Do, rng: jax.Array,
                           t_abduct: float | None = None,
                           latents: Sequence[jax.Array] | None = None,
                           factual: tuple[jax.Array, jax.Array] | None = None
                           ) -> dict[str, Any]:
  """`counterfactual` with its decodes: a dict of `x_cf`, `parents_cf` and the factual and
  counterfactual decoder means and scales `mu`, `sigma`, `mu_cf`, `sigma_cf` `[B, H, W, 1]`
  (what `tools/shift_decomposition.py` splits x* - x into). Same arguments."""
  if factual is not None and latents is None:
    raise ValueError("`factual` is the decode of given `latents`; pass both or neither.")
  parents_cf = models.pgm.counterfactual(params["pgm"], parents, do)
  pa, pa_cf = models.parent_vector(parents), models.parent_vector(parents_cf)
  variables = {"params": params["hvae"]}
  if latents is None:
    z, factual = models.hvae.apply(variables, x, pa, t=t_abduct, with_factual=True,
                                   method=HVAE.abduct, rngs={"sample": rng})
  else:
    z = list(latents)
  if factual is not None:
    mu, sigma = factual
    mu_cf, sigma_cf = models.hvae.apply(variables, z, pa_cf, method=HVAE.decode,
                                        rngs={"sample": rng})
  else:  # Factual and counterfactual decodes of the same latents as one doubled batch.
    z2 = [jnp.concatenate([zi, zi]) for zi in z]
    mu2, sigma2 = models.hvae.apply(variables, z2, jnp.concatenate([pa, pa_cf]),
                                    method=HVAE.decode, rngs={"sample": rng})
    b = x.shape[0]
    mu, sigma, mu_cf, sigma_cf = mu2[:b], sigma2[:b], mu2[b:], sigma2[b:]
  return dict(x_cf=counterfactual_image(x, mu, sigma, mu_cf, sigma_cf),
              parents_cf=dict(parents_cf), mu=mu, sigma=sigma, mu_cf=mu_cf, sigma_cf=sigma_cf)


def checked_interventions(graph: Graph, interventions: Mapping[str, Any], batch: int,
                          allowed: Sequence[str] | None = None) -> dict:
  """Data-unit interventions -> normalised `do`, validated before any compute.

  Args:
    graph: the causal graph.
    interventions: name -> value(s) in data units (scalar or `[B]`).
    batch: batch size B.
    allowed: intervenable variables (None: any graph variable).

  Raises:
    ValueError: unknown / non-intervenable variable, wrong shape, value outside support.
  """
  valid = tuple(allowed) if allowed is not None else graph.order
  unknown = [k for k in interventions if k not in valid]
  if unknown:
    raise ValueError(f"Cannot intervene on {unknown}; intervenable variables: "
                     f"{', '.join(valid)}.")
  raw = {k: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (batch,))
         for k, v in interventions.items()}
  graph.check_values(raw, list(raw))
  return {k: (v, None) for k, v in graph.normalize(raw).items()}
