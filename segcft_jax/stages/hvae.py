"""`hvae` stage: the image mechanism p(x | pa), trained by the negative ELBO.

loss = mean_B [ NLL(x | z, pa) + beta KL(q(z | x, pa) || p(z)) ] in nats/dim (reference spec
§1.6, §2); the summary reports test -ELBO in bits/dim (nats / ln 2) of the EMA weights, with
the posterior sampled from evaluation keys fixed by batch index.
"""

from __future__ import annotations

import math

import ml_collections

from segcft_jax import builders
from segcft_jax.models import hvae as hvae_lib
from segcft_jax.models.hvae_arch import architecture_fields
from segcft_jax.scm.graph import Graph
from segcft_jax.stages import setup
from segcft_jax.train.task import Task


def hvae_task(config: ml_collections.ConfigDict) -> Task:
  """Per-example eval metrics: -ELBO, NLL and KL in nats/dim and -ELBO in bits/dim."""
  model, graph = builders.make_hvae(config), Graph.from_config(config.scm)
  names = tuple(config.hvae.parents)
  beta = config.hvae.beta

  def parents(batch):
    return graph.to_vector(graph.normalize({n: batch[n] for n in names}), names)

  def terms(params, batch, rng, training):
    rngs = hvae_lib.streams(rng)
    return hvae_lib.elbo(model, params, batch["image"], parents(batch), beta, rngs, training)

  def init(rng, batch):
    return hvae_lib.init_params(model, rng, batch["image"], parents(batch))

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
  result, test = setup.train_and_evaluate(config, workdir, "hvae", task, data,
                                          builders.hvae_architecture(config))
  return dict(test=test, **setup.run_summary(result))
