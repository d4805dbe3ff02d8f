"""`pgm` stage: maximum-likelihood training of the scalar SCM (flows and discrete heads).

loss = -mean_B sum_k log p(v_k | pa_k) in normalised units (reference spec §3.5, "sup_pgm").
The summary reports the test log-likelihood per example, in total and per variable.
"""

from __future__ import annotations

import ml_collections

from segcft_jax import builders
from segcft_jax.stages import setup
from segcft_jax.train.task import Task


def pgm_task(config: ml_collections.ConfigDict) -> Task:
  """Per-example eval metrics: log-likelihood in total and per variable."""
  pgm = builders.make_pgm(config)
  graph = pgm.graph

  def log_probs(params, batch):
    return pgm.log_prob(params, graph.normalize({n: batch[n] for n in graph.order}))

  def loss_fn(params, batch, rng, frozen):
    del rng, frozen
    total, per = log_probs(params, batch)
    return -total.mean(), {f"nll_{n}": -v.mean() for n, v in per.items()}

  def eval_fn(params, batch, frozen, rng):
    del frozen, rng  # Deterministic.
    total, per = log_probs(params, batch)
    return dict({"log_likelihood": total}, **{f"log_likelihood/{n}": v for n, v in per.items()})

  fingerprint = {"task": "pgm", "model": config.pgm.model.to_dict(),
                 "scm": config.scm.variables.to_dict()}
  return Task(name="pgm", init=lambda rng, batch: pgm.init(rng), loss_fn=loss_fn,
              eval_fn=eval_fn, fingerprint=fingerprint)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Fits the SCM on the train split; reports test log-likelihood (nats per example)."""
  task = pgm_task(config)
  order = builders.make_pgm(config).graph.order
  data = setup.prepare(config, workdir, "pgm", order, in_memory=True)
  result, test = setup.train_and_evaluate(config, workdir, "pgm", task, data,
                                          builders.pgm_architecture(config))
  return dict(test=test, **setup.run_summary(result))
