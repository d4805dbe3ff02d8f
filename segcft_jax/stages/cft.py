"""`cft_reg`, `cft_seg`, `cft_pos_seg` stages: counterfactual fine-tuning of the HVAE.

Each loads the pretrained DSCM (PGM and HVAE EMA weights), freezes its predictor (the
regressor; the segmentor with global soft areas; the segmentor with regional soft areas —
never the oracle), sets the ELBO bound epsilon = validation -ELBO of the pretrained HVAE +
`config.<stage>.elbo_margin` (nats/dim; saved in `<stage>/constraint.json` so a resumed run
uses the same bound) and fine-tunes with `cft.task.cft_task`. The summary reports the test
-ELBO in bits/dim next to the pretrained one, the mean distance of the intervened and the
preserved measurements, and the final multiplier lambda.
"""

from __future__ import annotations

import json
import math
import os

import ml_collections

from segcft_jax.cft import predictors as predictors_lib
from segcft_jax.cft.task import balance_mode, cft_task, focus_mask, parse_weights
from segcft_jax.scm.counterfactual import DSCM
from segcft_jax.stages import hvae as hvae_stage
from segcft_jax.stages import pgm as pgm_stage
from segcft_jax.stages import records, regressor, segmentor, setup
from segcft_jax.train import metrics_log
from segcft_jax.train.evaluate import Evaluator

# stage -> predictor kind
PREDICTORS = {"cft_reg": "regressor", "cft_seg": "segmentor", "cft_pos_seg": "positional"}
CONSTRAINT_FILE = "constraint.json"


def cft_variables(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The variables fine-tuning measures: `config.cft_variables`, else the intervenable ones."""
  if "cft_variables" in config:
    return tuple(config.cft_variables)
  return tuple(config.scm.intervenable)


def check_config(config: ml_collections.ConfigDict, name: str) -> None:
  """Fails before any work when `config` cannot run CFT stage `name`."""
  if name == "cft_pos_seg" and config.get("setting") != "positional":
    raise ValueError("cft_pos_seg (Pos-Seg-CFT) measures regional areas; run it with a "
                     "positional config variant, e.g. configs/synth_vessel.py:positional.")
  if name not in config:
    raise ValueError(f"Stage {name!r} needs a config.{name} section, which "
                     f"configs/{config.name}.py does not define for variant {config.variant!r}.")
  cfg = config[name]
  if cfg.distance == "nll":
    if name != "cft_reg":
      raise ValueError(f"config.{name}.distance='nll' is the regressor's Gaussian -log q(target"
                       f" | x*), for cft_reg only; choose another distance for {name}.")
    if config.regressor.loss != "gaussian_nll":
      raise ValueError(f"config.cft_reg.distance='nll' needs a regressor trained with "
                       f"loss='gaussian_nll' (a likelihood); the regressor loss is "
                       f"{config.regressor.loss!r}.")
    binary = [v for v in cft_variables(config) if config.scm.variables[v].type == "binary"]
    if binary:
      raise ValueError(f"config.cft_reg.distance='nll' supports continuous variables only; "
                       f"{binary} are binary.")
  # The variables' names stand for every method's measurements (<structure>_area[...]).
  parse_weights(cfg.get("distance_weights", ""), cft_variables(config))
  parse_weights(cfg.get("draw_weights", ""), tuple(config.scm.intervenable), "draw_weights")
  focus_mask(cfg, tuple(config.scm.intervenable))
  balance_mode(cfg)


def make_dscm(config: ml_collections.ConfigDict) -> DSCM:
  """The deep SCM's modules: the PGM of `config.pgm` and the HVAE of `config.hvae`."""
  model, _ = hvae_stage.make_hvae(config)
  return DSCM(pgm=pgm_stage.make_pgm(config), hvae=model, parents=tuple(config.hvae.parents))


def make_predictor(config: ml_collections.ConfigDict, workdir: str, kind: str,
                   data: setup.StageData, load: bool = True):
  """`(Predictor, params or None)` of predictor kind `kind` (params loaded if `load`)."""
  variables = cft_variables(config)
  if kind == "regressor":
    reg, params = regressor.load_frozen(config, workdir, data, load)
    predictor = predictors_lib.regressor_predictor(reg.predict, variables, reg.nll)
  else:
    measured = predictors_lib.segmentor_measurements(config, variables, kind == "positional")
    # Never the oracle: it is reserved for evaluation.
    unet, params = segmentor.load_frozen(config, workdir, "segmentor", data, load)
    predictor = predictors_lib.segmentor_predictor(unet, measured, kind)
  return predictor, params


def data_keys(config: ml_collections.ConfigDict, kind: str) -> tuple[str, ...]:
  """Fields a CFT batch needs: the image, every graph variable, the region map if regional."""
  keys = ("image", *pgm_stage.make_pgm(config).graph.order)
  return keys + (("regions",) if kind == "positional" else ())


def _constraint(config, workdir, name, data, hvae_params) -> dict:
  path = os.path.join(records.stage_dir(workdir, name), CONSTRAINT_FILE)
  if os.path.exists(path):  # A resumed run keeps the bound it started with.
    with open(path) as f:
      return json.load(f)
  task = hvae_stage.hvae_task(config)
  nelbo = float(Evaluator(task.eval_fn, data.mesh)(hvae_params, data.eval_batches("validation"))
                ["nelbo"])
  margin = float(config[name].elbo_margin)
  constraint = {"pretrained_validation_nelbo": nelbo, "margin": margin,
                "epsilon": nelbo + margin, "units": "nats/dim"}
  metrics_log.write_json(path, constraint)
  return constraint


def load_frozen(config: ml_collections.ConfigDict, workdir: str, name: str):
  """`(data, predictor, frozen)` of CFT stage `name`: its batches and mesh, its predictor and
  the frozen arguments of its step, `{"pgm": PGM EMA params, "predictor": params}`."""
  kind = PREDICTORS[name]
  data = setup.prepare(config, workdir, name, data_keys(config, kind))
  predictor, predictor_params = make_predictor(config, workdir, kind, data)
  pgm_params = setup.load_ema_params(config, workdir, "pgm", pgm_stage.pgm_task(config), data)
  return data, predictor, {"pgm": pgm_params, "predictor": predictor_params}


def task_for_restore(config: ml_collections.ConfigDict, name: str, data: setup.StageData):
  """The stage's task without loading anything (shapes only): restores its checkpoints."""
  kind = PREDICTORS[name]
  predictor, _ = make_predictor(config, "", kind, data, load=False)
  return cft_task(name, config, make_dscm(config), predictor, epsilon=0.0)


def run(config: ml_collections.ConfigDict, workdir: str, name: str) -> dict:
  """Fine-tunes the pretrained HVAE with predictor `PREDICTORS[name]`."""
  check_config(config, name)
  data, predictor, frozen = load_frozen(config, workdir, name)
  hvae_params = setup.load_ema_params(config, workdir, "hvae", hvae_stage.hvae_task(config), data)
  constraint = _constraint(config, workdir, name, data, hvae_params)
  task = cft_task(name, config, make_dscm(config), predictor, constraint["epsilon"],
                  hvae_params)

  def summarise(m):
    out = setup.as_floats(m)
    out["distance"] = {k.split("/", 1)[1]: out.pop(k) for k in list(out) if "/" in k}
    return out

  result, test = setup.train_and_evaluate(config, workdir, name, task, data, summarise, frozen)
  pretrained_bpd = constraint["pretrained_validation_nelbo"] / math.log(2.0)
  return dict(test=test, predictor=PREDICTORS[name], measurements=list(predictor.names),
              train_encoder=bool(config[name].train_encoder), constraint=constraint,
              pretrained_validation_bits_per_dim=pretrained_bpd,
              lmbda=float(result.state.params["lmbda"]), **setup.run_summary(result))


def run_reg(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Reg-CFT: the frozen regressor is the predictor."""
  return run(config, workdir, "cft_reg")


def run_seg(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Seg-CFT: the frozen segmentor's soft areas of whole structures are the predictor."""
  return run(config, workdir, "cft_seg")


def run_pos_seg(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pos-Seg-CFT: the frozen segmentor's regional soft areas are the predictor."""
  return run(config, workdir, "cft_pos_seg")
