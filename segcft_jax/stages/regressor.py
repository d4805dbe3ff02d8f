"""`regressor` stage: the anticausal CNN that Reg-CFT uses as its frozen predictor.

For each variable v in `config.regressor.variables` the network predicts, from the image
alone, a Gaussian over the standardised value y = (v - m_v) / s_v (continuous; loss
0.5 ((y - mu) / sigma)^2 + log sigma, sigma = softplus(.) + 1e-3, or plain squared error with
`loss="mse"`) or a Bernoulli logit (binary; cross-entropy). m_v, s_v are the train-split mean
and std, saved in `regressor/target_stats.json` (a resumed run standardises as before) and
with the exported weights, so predictions come back in data units.
It is trained on the same images as the segmentor and is free to use the brightness shortcut
of the synthetic datasets (SPEC §2) — that is the point of the Reg-CFT baseline.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from segcft_jax import builders
from segcft_jax import workdir as workdir_lib
from segcft_jax.models.regressor import predict
from segcft_jax.stages import setup
from segcft_jax.train import metrics_log
from segcft_jax.train.task import Task

STATS_FILE = "target_stats.json"


def target_stats(source, names: Sequence[str]) -> dict[str, tuple[float, float]]:
  """Train-split mean and std of each variable."""
  values = {n: np.array([float(source[i][n]) for i in range(len(source))]) for n in names}
  return {n: (float(v.mean()), float(v.std() + 1e-8)) for n, v in values.items()}


def regression_task(cfg: ml_collections.ConfigDict, types: Mapping[str, str],
                    stats: Mapping[str, tuple[float, float]]) -> Task:
  """Per-example eval metrics: absolute error and absolute percentage error per variable."""
  model = builders.regressor(cfg.model, types, stats).model

  def per_variable_loss(params, batch):
    out = model.apply({"params": params}, batch["image"])
    losses = {}
    for i, (n, t) in enumerate(types.items()):
      a, b = out[:, 2 * i], out[:, 2 * i + 1]
      if t == "binary":
        y = batch[n]
        losses[n] = jnp.logaddexp(0.0, a) - y * a  # Bernoulli NLL with logit a
      else:
        m, s = stats[n]
        y = (batch[n] - m) / s
        if cfg.loss == "mse":
          losses[n] = 0.5 * (a - y) ** 2
        else:
          sigma = jax.nn.softplus(b) + 1e-3
          losses[n] = 0.5 * ((y - a) / sigma) ** 2 + jnp.log(sigma)
    return losses

  def loss_fn(params, batch, rng, frozen):
    del rng, frozen
    losses = per_variable_loss(params, batch)
    total = sum(v.mean() for v in losses.values())
    return total, {f"loss_{n}": v.mean() for n, v in losses.items()}

  def eval_fn(params, batch, frozen, rng):
    del frozen, rng  # Deterministic.
    pred = predict(model, params, batch["image"], types, stats)
    metrics = {}
    for n, t in types.items():
      err = jnp.abs(pred[n] - batch[n])
      if t == "binary":
        metrics[f"{n}/accuracy"] = (jnp.round(pred[n]) == batch[n]).astype(jnp.float32)
      else:
        metrics[f"{n}/mae"] = err
        metrics[f"{n}/mape"] = 100.0 * err / jnp.maximum(jnp.abs(batch[n]), 1e-8)
    return metrics

  def init(rng, batch):
    return model.init(rng, jnp.asarray(batch["image"][:1]))["params"]

  fingerprint = {"task": "regressor", "model": cfg.model.to_dict(), "variables": dict(types),
                 "loss": cfg.loss}
  return Task(name="regressor", init=init, loss_fn=loss_fn, eval_fn=eval_fn,
              fingerprint=fingerprint)


def load_stats(workdir: str) -> dict[str, tuple[float, float]]:
  with open(os.path.join(workdir_lib.stage_dir(workdir, "regressor"), STATS_FILE)) as f:
    return {k: tuple(v) for k, v in json.load(f).items()}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the regressor and reports test MAE / MAPE per variable."""
  cfg = config.regressor
  types = builders.regressor_types(config)
  data = setup.prepare(config, workdir, "regressor", ("image", *types))
  stats_path = os.path.join(workdir_lib.stage_dir(workdir, "regressor"), STATS_FILE)
  if os.path.exists(stats_path):  # A resumed run must standardise exactly as before.
    stats = load_stats(workdir)
  else:
    stats = target_stats(data.sources["train"], list(types))
    metrics_log.write_json(stats_path, stats)
  task = regression_task(cfg, types, stats)
  architecture = dict(builders.regressor_architecture(config), stats=stats)
  result, test = setup.train_and_evaluate(config, workdir, "regressor", task, data, architecture)
  return dict(test=test, **setup.run_summary(result))
