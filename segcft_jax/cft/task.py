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
the focused structures' variables, the rest on all of them (`focus_mask`).

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
from segcft_jax.models.hvae_arch import architecture_fields
from segcft_jax.scm.counterfactual import DSCM, counterfactual
from segcft_jax.train.task import Task


class CounterfactualStep:
  """Draws interventions and generates measured counterfactuals for a batch.

  Args:
    dscm: the deep SCM (PGM and HVAE modules).
    predictor: the frozen predictor.
    cfg: the CFT stage config.
    intervenable: variables interventions are drawn from.
  """

  def __init__(self, dscm: DSCM, predictor: Predictor, cfg: ml_collections.ConfigDict,
               intervenable: tuple[str, ...]):
    self.dscm, self.predictor, self.cfg = dscm, predictor, cfg
    self.intervenable = intervenable
    draw = parse_weights(cfg.get("draw_weights", ""), intervenable, "draw_weights")
    self.draw_weights = tuple(draw[v] for v in intervenable)
    self.focus_steps = int(cfg.get("focus_steps", 0))
    self.in_focus = focus_mask(cfg, intervenable)
    if cfg.distance == "nll":
      if predictor.nll is None:
        raise ValueError(f"distance 'nll' needs a predictor with a likelihood (the regressor, "
                         f"cft_reg); the {predictor.kind} predictor has none.")
      # The predictor's own -log q(target | x*) per measurement.
      self.distances = lambda params, x, batch, targets: predictor.nll(params, x, targets)
    else:
      distance = measurements.distance_fn(cfg.distance, cfg.distance_floor, cfg.huber_delta)

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
    graph = self.dscm.graph
    r_do, r_cf = jax.random.split(rng)
    values_n = self.factual(batch)
    do_data = interventions.sample_interventions(
        r_do, {v: batch[v] for v in self.intervenable}, self.intervenable,
        self.cfg.intervention, tuple(self.cfg.relative_range), self.draw_weights,
        None if self.in_focus is None or step is None
        else (self.in_focus, step < self.focus_steps))
    do = {v: (graph.normalize({v: t})[v], m) for v, (t, m) in do_data.items()}
    x_cf, values_cf_n = counterfactual(self.dscm, {"pgm": frozen["pgm"], "hvae": hvae_params},
                                       batch["image"], values_n, do, r_cf,
                                       t_abduct=self.cfg.t_abduct, latents=latents,
                                       factual=factual)
    targets = self.predictor.targets(graph.denormalize(values_cf_n))
    distances = self.distances(frozen["predictor"], x_cf, batch, targets)
    hit = {}
    for m in self.predictor.measurements:
      flags = [do_data[v][1] for v in m.targets if v in do_data]
      hit[m.name] = (sum(f.astype(jnp.float32) for f in flags) > 0 if flags
                     else jnp.zeros(x_cf.shape[:1], bool))
    return dict(x_cf=x_cf, distances=distances, intervened=hit)


def focus_mask(cfg: ml_collections.ConfigDict, intervenable: tuple[str, ...]
               ) -> tuple[bool, ...] | None:
  """Which intervenable variables the curriculum's first `focus_steps` steps draw from.

  With `focus_steps` = N > 0, training steps 0..N-1 intervene only on the variables of the
  structures named by `focus` (e.g. "calcified"), the remaining steps on all of them.

  Returns:
    One bool per variable, or None without a curriculum (`focus_steps` = 0).

  Raises:
    ValueError: a negative `focus_steps`, N >= `num_steps`, or N > 0 without a valid focus.
  """
  steps, spec = int(cfg.get("focus_steps", 0)), cfg.get("focus", "")
  if steps < 0 or (steps > 0 and steps >= int(cfg.num_steps)):
    raise ValueError(f"focus_steps={steps} must lie in [0, num_steps={cfg.num_steps}).")
  if steps == 0:
    return None
  mask = tuple(parse_weights(spec, intervenable, "focus", default=0.0, bare=1.0)[v] > 0
               for v in intervenable)
  if not any(mask):
    raise ValueError(f"focus_steps={steps} needs a focus naming intervenable structures, "
                     f"e.g. focus='calcified'; got focus={spec!r}.")
  return mask


def parse_weights(spec: str, names: tuple[str, ...], field: str = "distance_weights",
                  default: float = 1.0, bare: float | None = None) -> dict[str, float]:
  """Per-name weights from `"<structure>=<w>,..."` (config field `field`).

  A weight applies to every name `<structure>_area[_<region>]` (regressor, global or
  regional soft area alike, so every method weighs the same structures) and to a
  name of exactly that structure (e.g. `thickness`); the rest weigh `default`. A bare
  `<structure>` weighs `bare` (None: refused). `distance_weights` weighs measurements,
  `aux = sum_m w_m mean_b d_m`; `draw_weights` weighs intervenable variables, drawn per
  example with probability w_v / sum_u w_u; `focus` ("calcified": bare 1, default 0) names
  the variables of the curriculum.

  Raises:
    ValueError: a malformed entry, a non-positive weight, or a structure none of `names` has.
  """
  weights = {m: default for m in names}
  for item in filter(None, (p.strip() for p in spec.split(","))):
    structure, sep, value = item.partition("=")
    structure = structure.strip()
    try:
      w = float(value) if sep else (float("nan") if bare is None else bare)
    except ValueError:
      w = float("nan")
    if not (w > 0 and math.isfinite(w)):
      raise ValueError(f"{field} entry {item!r}: expected <structure>=<positive "
                       f"number>, e.g. 'calcified=3'.")
    hit = [m for m in names if structure in (m, balance.structure_of(m))]
    if not hit:
      raise ValueError(f"{field} names {structure!r}, which none of {', '.join(names)} "
                       f"has.")
    weights.update({m: w for m in hit})
  return weights


def balance_mode(cfg: ml_collections.ConfigDict) -> str:
  """The stage's `balance` field, checked against `cft.balance.MODES`."""
  mode = cfg.get("balance", "")
  if mode not in balance.MODES:
    raise ValueError(f"balance={mode!r} is not one of {balance.MODES}: '' follows the plain "
                     f"gradient, 'structure' gives every structure the same gradient norm.")
  return mode


def cft_task(name: str, config: ml_collections.ConfigDict, dscm: DSCM, predictor: Predictor,
             epsilon: float, pretrained_hvae: Any = None) -> Task:
  """The fine-tuning task of stage `name` (`cft_reg`, `cft_seg` or `cft_pos_seg`).

  Args:
    name: stage name; `config[name]` is its config.
    config: the full config (graph, HVAE architecture and beta).
    dscm: the deep SCM modules.
    predictor: the frozen predictor.
    epsilon: the -ELBO bound (nats/dim): pretrained validation -ELBO + margin.
    pretrained_hvae: HVAE parameters to start from (None: shapes only, e.g. for restore).

  Returns:
    A `Task` whose eval metrics are per-example -ELBO, bits/dim, the distance of every
    measurement, and the mean distance of the intervened / preserved measurements.
  """
  cfg = config[name]
  beta = config.hvae.beta
  cf_step = CounterfactualStep(dscm, predictor, cfg, tuple(config.scm.intervenable))
  weights = parse_weights(cfg.get("distance_weights", ""), predictor.names)
  hvae = dscm.hvae

  # The ELBO pass's posterior sample is an abduction at temperature 1: reusing it saves the
  # second encoder + posterior pass of the reference (which draws an independent sample).
  reuse = bool(cfg.reuse_elbo_latents) and cfg.t_abduct == 1.0

  def elbo(hvae_params, batch, rng, training):
    r_sample, r_drop = jax.random.split(rng)
    pa = dscm.parent_vector(cf_step.factual(batch))
    return hvae.apply({"params": hvae_params}, batch["image"], pa, beta, training=training,
                      return_latents=reuse, rngs={"sample": r_sample, "cond_dropout": r_drop})

  def init(rng, batch):
    pa = dscm.parent_vector(cf_step.factual(batch))[:1]
    params = hvae.init({"params": rng, "sample": rng, "cond_dropout": rng},
                       batch["image"][:1], pa)["params"]
    return {"hvae": params, "lmbda": jnp.asarray(cfg.lmbda_init, jnp.float32)}

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
    loss = lagrangian.lagrangian(cfg.aux_weight * aux, nelbo, params["lmbda"], epsilon,
                                 cfg.damping)
    return loss, metrics

  groups = balance.structures(predictor.names)
  # Under balance a structure's weight W_k scales its normalised share; the weights of its
  # measurements relative to each other stay inside its loss.
  structure_weights = [sum(weights[m] for m in ms) / len(ms) for ms in groups.values()]

  def parts_fn(params, batch, rng, frozen, step=None):
    """[each structure's w aux_k / W_k, the ELBO Lagrangian]: the loss, split for `balance`."""
    nelbo, weighted, _, metrics = forward(params, batch, rng, frozen, step)
    per_structure = [cfg.aux_weight * sum(weighted[m] for m in ms) / wk
                     for ms, wk in zip(groups.values(), structure_weights)]
    rest = lagrangian.lagrangian(0.0, nelbo, params["lmbda"], epsilon, cfg.damping)
    return jnp.stack(per_structure + [rest]), metrics

  def balanced_grad_fn(params, batch, rng, frozen, step=None):
    mask = jax.tree_util.tree_map(lambda label: label == "hvae",
                                  lagrangian.param_labels(params, bool(cfg.train_encoder)))
    (loss, metrics), grads, scales = balance.balanced_value_and_grad(
        lambda p: parts_fn(p, batch, rng, frozen, step), params, mask, structure_weights)
    return (loss, dict(metrics, **{f"balance_{k}": s for k, s in zip(groups, scales)})), grads

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
                 "train_encoder": bool(cfg.train_encoder)}
  # With a curriculum (focus_steps > 0) the training step passes its counter as `step`.
  return Task(name=name, init=init, loss_fn=loss_fn, eval_fn=eval_fn, fingerprint=fingerprint,
              step_aware=cf_step.in_focus is not None,
              grad_fn=balanced_grad_fn if balance_mode(cfg) == "structure" else None,
              make_optimizer=lagrangian.make_optimizer, project=lagrangian.project,
              pretrained=None if pretrained_hvae is None else {
                  "hvae": pretrained_hvae, "lmbda": jnp.asarray(cfg.lmbda_init, jnp.float32)})
