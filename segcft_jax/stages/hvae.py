"""`hvae` stage: the image mechanism p(x | pa), trained by the negative ELBO.

loss = mean_B [ NLL(x | z, pa) + beta KL(q(z | x, pa) || p(z)) ] in nats/dim (reference spec
§1.6, §2); the summary reports test -ELBO in bits/dim (nats / ln 2) of the EMA weights, with
the posterior sampled from evaluation keys fixed by batch index.
"""

from __future__ import annotations

import math

import jax
import ml_collections

from segcft_jax.models.hvae import HVAE
from segcft_jax.models.hvae_arch import HVAEConfig, architecture_fields
from segcft_jax.scm.graph import Graph
from segcft_jax.stages import setup
from segcft_jax.train.task import Task


def make_hvae(config: ml_collections.ConfigDict) -> tuple[HVAE, Graph]:
  """The HVAE of `config.hvae.model` with a parent vector of `config.hvae.parents`."""
  graph = Graph.from_config(config.scm)
  model_cfg = dict(config.hvae.model.to_dict(), input_res=config.data.image_size,
                   input_channels=1, context_dim=graph.vector_dim(config.hvae.parents))
  return HVAE(HVAEConfig.from_config(model_cfg)), graph


def hvae_task(config: ml_collections.ConfigDict) -> Task:
  """Per-example eval metrics: -ELBO, NLL and KL in nats/dim and -ELBO in bits/dim."""
  model, graph = make_hvae(config)
  names = tuple(config.hvae.parents)
  beta = config.hvae.beta

  def parents(batch):
    return graph.to_vector(graph.normalize({n: batch[n] for n in names}), names)

  def terms(params, batch, rng, training):
    r_sample, r_drop = jax.random.split(rng)
    return model.apply({"params": params}, batch["image"], parents(batch), beta,
                       training=training, rngs={"sample": r_sample, "cond_dropout": r_drop})

  def init(rng, batch):
    pa = parents(batch)[:1]
    return model.init({"params": rng, "sample": rng, "cond_dropout": rng},
                      batch["image"][:1], pa)["params"]

  def loss_fn(params, batch, rng, frozen):
    del frozen
    out = terms(params, batch, rng, training=True)
    return out["nelbo"].mean(), {"nll": out["nll"].mean(), "kl": out["kl"].mean()}

  def eval_fn(params, batch, frozen, rng):
    del frozen
    out = terms(params, batch, rng, training=False)
    return dict(out, bits_per_dim=out["nelbo"] / math.log(2.0))

  fingerprint = {"task": "hvae", "model": architecture_fields(config.hvae.model),
                 "parents": list(names),
                 "image_size": config.data.image_size}
  return Task(name="hvae", init=init, loss_fn=loss_fn, eval_fn=eval_fn, fingerprint=fingerprint)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the HVAE; reports test -ELBO in bits/dim."""
  task = hvae_task(config)
  data = setup.prepare(config, workdir, "hvae", ("image", *config.hvae.parents))
  result, test = setup.train_and_evaluate(config, workdir, "hvae", task, data)
  return dict(test=test, **setup.run_summary(result))
