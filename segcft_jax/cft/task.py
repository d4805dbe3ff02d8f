"""The counterfactual fine-tuning step as a `Task` (SPEC §1; reference spec §4.1).

Per batch (x, v) with v the factual variables in data units:

1. nelbo = mean_B -ELBO(x | pa) of the HVAE being fine-tuned (training mode);
2. one intervention per example (`interventions.sample_interventions`); parents* through
   the frozen PGM: pa* = PGM.counterfactual(pa, do);
3. x* = counterfactual image from an abduction z ~ q(z | x, pa) — by default the posterior
   sample of step 1 (`reuse_elbo_latents`), else a fresh one as in the reference
   (`scm.counterfactual.counterfactual`; gradients flow through abduction and both decodes);
4. aux = sum_m mean_B d(measure_m(x*), target_m(pa*)) over **all** measurements m of the
   frozen predictor (the intervened one must move, the others must stay);
5. loss = w aux - (lambda - damping sg(epsilon - nelbo)) (epsilon - nelbo)  (`lagrangian`),
   w = `aux_weight` (1 in the reference, whose `alpha` scales only the logged aux).

Optional per-structure gradient normalisation (`balance="structure"`, `cft.balance`): the
update gives every structure's predictor loss the same gradient norm.

Optional curriculum (`focus`, `focus_steps` = N): the first N steps draw interventions only on
the focused structures' variables, the rest on all of them (`CFTSettings.focus`).

Trainable parameters are `{"hvae": ..., "lmbda": scalar}`; the PGM and the predictor are the
step's `frozen` argument `{"pgm": ..., "predictor": ...}` and never reach the optimiser.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from segcft_jax.cft import balance, interventions, lagrangian, measurements
from segcft_jax.cft.predictors import Predictor
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.models import hvae as hvae_lib
from segcft_jax.models.hvae_arch import architecture_fields
from segcft_jax.scm.counterfactual import DSCM, counterfactual
from segcft_jax.train.task import Task


class CounterfactualStep:
  """Draws interventions and generates measured counterfactuals for a batch.

  Args:
    dscm: the deep SCM (PGM and HVAE modules).
    predictor: the frozen predictor.
    settings: the CFT stage's settings.
  """

  def __init__(self, dscm: DSCM, predictor: Predictor, settings: CFTSettings):
    self.dscm, self.predictor, self.settings = dscm, predictor, settings
    if settings.distance == "nll":
      # The predictor's own -log q(target | x*) per measurement (the regressor's).
      self.distances = lambda params, x, batch, targets: predictor.nll(params, x, targets)
    else:
      distance = measurements.distance_fn(settings.distance, settings.distance_floor,
                                          settings.huber_delta)

      def measured_distances(params, x, batch, targets):
        measured = predictor.measure(params, x, batch)
        return {m: distance(measured[m], targets[m]) for m in predictor.names}

      self.distances = measured_distances

  def factual(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Normalised factual values of every graph variable."""
    graph = self.dscm.graph
    return graph.normalize({n: batch[n] for n in graph.order})

  def __call__(self, hvae_params: Any, frozen: Mapping[str, Any],
               batch: Mapping[str, jax.Array], rng: jax.Array,
               latents: Any = None, factual: Any = None, step: Any = None) -> dict[str, Any]:
    """`x_cf`, per-measurement distances `[B]`, and which measurements were intervened.

    `latents`: posterior samples of this batch to abduct with (None: a fresh abduction);
    `factual`: their decode under the factual parents, if already computed; `step`: the
    training step (None: after training), which decides whether the focus is active.
    """
    s, graph = self.settings, self.dscm.graph
    r_do, r_cf = jax.random.split(rng)
    values_n = self.factual(batch)
    do_data = interventions.sample_interventions(
        r_do, {v: batch[v] for v in s.intervenable}, s.intervenable, s.intervention,
        s.relative_range, s.draw_weights,
        None if s.focus is None or step is None else (s.focus, step < s.focus_steps))
    do = {v: (graph.normalize({v: t})[v], m) for v, (t, m) in do_data.items()}
    x_cf, values_cf_n = counterfactual(self.dscm, {"pgm": frozen["pgm"], "hvae": hvae_params},
                                       batch["image"], values_n, do, r_cf,
                                       t_abduct=s.t_abduct, latents=latents, factual=factual)
    targets = self.predictor.targets(graph.denormalize(values_cf_n))
    distances = self.distances(frozen["predictor"], x_cf, batch, targets)
    hit = {}
    for m in self.predictor.measurements:
      flags = [do_data[v][1] for v in m.targets if v in do_data]
      hit[m.name] = (sum(f.astype(jnp.float32) for f in flags) > 0 if flags
                     else jnp.zeros(x_cf.shape[:1], bool))
    return dict(x_cf=x_cf, distances=distances, intervened=hit)


def cft_task(settings: CFTSettings, config: ml_collections.ConfigDict, dscm: DSCM,
             predictor: Predictor, epsilon: float, pretrained_hvae: Any = None) -> Task:
  """The fine-tuning task of a CFT stage (`cft_reg`, `cft_seg` or `cft_pos_seg`).

  Args:
    settings: the stage's settings (`CFTSettings.from_config`).
    config: the full config (HVAE architecture and beta, image size).
    dscm: the deep SCM modules.
    predictor: the frozen predictor.
    epsilon: the -ELBO bound (nats/dim): pretrained validation -ELBO + margin.
    pretrained_hvae: HVAE parameters to start from (None: shapes only, e.g. for restore).

  Returns:
    A `Task` whose eval metrics are per-example -ELBO, bits/dim, the distance of every
    measurement, and the mean distance of the intervened / preserved measurements.
  """
  s = settings
  name, beta = s.stage, config.hvae.beta
  if tuple(predictor.names) != s.measurements:
    raise ValueError(f"{name}: the predictor measures {predictor.names}, the settings expect "
                     f"{s.measurements}.")
  cf_step = CounterfactualStep(dscm, predictor, s)
  weights = s.distance_weights
  # The ELBO pass's posterior sample is an abduction at temperature 1: reusing it saves the
  # second encoder + posterior pass of the reference (which draws an independent sample).
  reuse = s.reuse_latents

  def elbo(hvae_params, batch, rng, training):
    rngs = hvae_lib.streams(rng)
    pa = dscm.parent_vector(cf_step.factual(batch))
    return hvae_lib.elbo(dscm.hvae, hvae_params, batch["image"], pa, beta, rngs, training,
                         return_latents=reuse)

  def init(rng, batch):
    params = hvae_lib.init_params(dscm.hvae, rng, batch["image"],
                                  dscm.parent_vector(cf_step.factual(batch)))
    return {"hvae": params, "lmbda": jnp.asarray(s.lmbda_init, jnp.float32)}

  def forward(params, batch, rng, frozen, step):
    """Mean -ELBO, weighted mean distances and the metrics of a training batch."""
    r_elbo, r_cf = jax.random.split(rng)
    terms = elbo(params["hvae"], batch, r_elbo, training=True)
    nelbo = terms["nelbo"].mean()
    out = cf_step(params["hvae"], frozen, batch, r_cf, terms.get("latents"),
                  terms.get("factual"), step)
    weighted = {m: weights[m] * d.mean() for m, d in out["distances"].items()}
    aux = sum(weighted.values())
    metrics = {"aux": aux, "nelbo": nelbo, "lmbda": params["lmbda"],
               **{f"d_{m}": d.mean() for m, d in out["distances"].items()}}
    return nelbo, weighted, aux, metrics

  def loss_fn(params, batch, rng, frozen, step=None):
    nelbo, _, aux, metrics = forward(params, batch, rng, frozen, step)
    loss = lagrangian.lagrangian(s.aux_weight * aux, nelbo, params["lmbda"], epsilon,
                                 s.damping)
    return loss, metrics

  groups = balance.structures(predictor.names)
  # Under balance a structure's weight W_k scales its normalised share; the weights of its
  # measurements relative to each other stay inside its loss.
  structure_weights = [sum(weights[m] for m in ms) / len(ms) for ms in groups.values()]

  def parts_fn(params, batch, rng, frozen, step=None):
    """[each structure's w aux_k / W_k, the ELBO Lagrangian]: the loss, split for `balance`."""
    nelbo, weighted, _, metrics = forward(params, batch, rng, frozen, step)
    per_structure = [s.aux_weight * sum(weighted[m] for m in ms) / wk
                     for ms, wk in zip(groups.values(), structure_weights)]
    rest = lagrangian.lagrangian(0.0, nelbo, params["lmbda"], epsilon, s.damping)
    return jnp.stack(per_structure + [rest]), metrics

  def balanced_grad_fn(params, batch, rng, frozen, step=None):
    mask = jax.tree_util.tree_map(lambda label: label == "hvae",
                                  lagrangian.param_labels(params, s.train_encoder))
    (loss, metrics), grads, scales = balance.balanced_value_and_grad(
        lambda p: parts_fn(p, batch, rng, frozen, step), params, mask, structure_weights)
    return (loss, dict(metrics, **{f"balance_{k}": sc for k, sc in zip(groups, scales)})), grads

  def eval_fn(params, batch, frozen, rng):
    r_elbo, r_cf = jax.random.split(rng)
    terms = elbo(params["hvae"], batch, r_elbo, training=False)
    out = cf_step(params["hvae"], frozen, batch, r_cf, terms.get("latents"), terms.get("factual"))
    hit = {m: v.astype(jnp.float32) for m, v in out["intervened"].items()}
    n_hit = sum(hit.values())
    n_other = len(hit) - n_hit
    d = out["distances"]
    return dict(nelbo=terms["nelbo"], bits_per_dim=terms["nelbo"] / math.log(2.0),
                intervened_distance=sum(hit[m] * d[m] for m in d) / jnp.maximum(n_hit, 1.0),
                preserved_distance=sum((1 - hit[m]) * d[m] for m in d) / jnp.maximum(n_other, 1.0),
                **{f"distance/{m}": v for m, v in d.items()})

  fingerprint = {"task": name, "hvae": architecture_fields(config.hvae.model),
                 "parents": list(dscm.parents), "image_size": config.data.image_size,
                 "predictor": predictor.kind, "measurements": list(predictor.names),
                 "train_encoder": s.train_encoder}
  # With a curriculum (focus_steps > 0) the training step passes its counter as `step`.
  return Task(name=name, init=init, loss_fn=loss_fn, eval_fn=eval_fn, fingerprint=fingerprint,
              step_aware=s.focus is not None,
              grad_fn=balanced_grad_fn if s.balance == "structure" else None,
              make_optimizer=lagrangian.make_optimizer, project=lagrangian.project,
              pretrained=None if pretrained_hvae is None else {
                  "hvae": pretrained_hvae, "lmbda": jnp.asarray(s.lmbda_init, jnp.float32)})
