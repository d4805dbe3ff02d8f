"""`regressor` stage: the anticausal CNN that Reg-CFT uses as its frozen predictor.

For each variable v in `config.regressor.variables` the network predicts, from the image
alone, a Gaussian over the standardised value y = (v - m_v) / s_v (continuous; loss
0.5 ((y - mu) / sigma)^2 + log sigma, sigma = softplus(.) + 1e-3, or plain squared error with
`loss="mse"`) or a Bernoulli logit (binary; cross-entropy). m_v, s_v are the train-split mean
and std, saved in `regressor/target_stats.json` so predictions come back in data units.
It is trained on the same images as the segmentor and is free to use the brightness shortcut
of the synthetic datasets (SPEC §2) — that is the point of the Reg-CFT baseline.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from segcft_jax.models.regressor import Regressor
from segcft_jax.stages import records, setup
from segcft_jax.train import metrics_log
from segcft_jax.train.task import Task

STATS_FILE = "target_stats.json"


def variable_types(config: ml_collections.ConfigDict, names: Sequence[str]) -> dict[str, str]:
  """Type of each regressed variable from `config.scm.variables` (continuous or binary)."""
  types = {}
  for n in names:
    if n not in config.scm.variables:
      raise ValueError(f"config.regressor.variables names {n!r}, which is not a variable of "
                       f"config.scm.variables ({', '.join(config.scm.variables)}).")
    t = config.scm.variables[n].type
    if t not in ("continuous", "binary"):
      raise ValueError(f"The regressor predicts continuous or binary variables; {n!r} is {t}.")
    types[n] = t
  return types


def target_stats(source, names: Sequence[str]) -> dict[str, tuple[float, float]]:
  """Train-split mean and std of each variable."""
  values = {n: np.array([float(source[i][n]) for i in range(len(source))]) for n in names}
  return {n: (float(v.mean()), float(v.std() + 1e-8)) for n, v in values.items()}


def predict(model: Regressor, params, x: jax.Array, types: Mapping[str, str],
            stats: Mapping[str, tuple[float, float]]) -> dict[str, jax.Array]:
  """`measure(x)` of Reg-CFT: per-variable predictions in data units (binary: probability)."""
  out = model.apply({"params": params}, x)  # [B, 2 * n]
  result = {}
  for i, (n, t) in enumerate(types.items()):
    if t == "binary":
      result[n] = jax.nn.sigmoid(out[:, 2 * i])
    else:
      m, s = stats[n]
      result[n] = out[:, 2 * i] * s + m
  return result


def gaussian_nll(model: Regressor, params, x: jax.Array, types: Mapping[str, str],
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


def make_regressor(cfg: ml_collections.ConfigDict, types: Mapping[str, str]) -> Regressor:
  """The CNN of `config.regressor.model`: two head units (mean, scale or logit) per variable."""
  return Regressor(outputs=2 * len(types), width=cfg.model.width,
                   norm_groups=cfg.model.norm_groups, norm=cfg.model.norm)


def regression_task(cfg: ml_collections.ConfigDict, types: Mapping[str, str],
                    stats: Mapping[str, tuple[float, float]]) -> Task:
  """Per-example eval metrics: absolute error and absolute percentage error per variable."""
  model = make_regressor(cfg, types)

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
  with open(os.path.join(records.stage_dir(workdir, "regressor"), STATS_FILE)) as f:
    return {k: tuple(v) for k, v in json.load(f).items()}


@dataclasses.dataclass(frozen=True)
class RegressorModel:
  """Reg-CFT's frozen predictor: module, variable types and target standardisation."""
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


def load_frozen(config: ml_collections.ConfigDict, workdir: str, data: setup.StageData,
                load: bool = True) -> tuple[RegressorModel, Any]:
  """`(RegressorModel, EMA params)` of the trained regressor stage.

  With `load=False` nothing is read: unit stats and params None (shapes for a restore).
  """
  cfg = config.regressor
  types = variable_types(config, cfg.variables)
  stats = load_stats(workdir) if load else {v: (0.0, 1.0) for v in types}
  params = (setup.load_ema_params(config, workdir, "regressor",
                                  regression_task(cfg, types, stats), data) if load else None)
  return RegressorModel(make_regressor(cfg, types), types, stats), params


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the regressor and reports test MAE / MAPE per variable."""
  cfg = config.regressor
  types = variable_types(config, cfg.variables)
  data = setup.prepare(config, workdir, "regressor", ("image", *types))
  stats_path = os.path.join(records.stage_dir(workdir, "regressor"), STATS_FILE)
  if os.path.exists(stats_path):  # A resumed run must standardise exactly as before.
    stats = load_stats(workdir)
  else:
    stats = target_stats(data.sources["train"], list(types))
    metrics_log.write_json(stats_path, stats)
  task = regression_task(cfg, types, stats)
  result, test = setup.train_and_evaluate(config, workdir, "regressor", task, data)
  return dict(test=test, **setup.run_summary(result))
