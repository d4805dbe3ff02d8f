"""The fine-tuning stages (`cft_reg`, `cft_seg`, `cft_pos_seg`): one per CFT method.

Each loads the pretrained DSCM (PGM and HVAE EMA weights), freezes its method's predictor
(`cft.methods`: the regressor; the segmentor with global soft areas; the segmentor with
regional soft areas — never the oracle), sets the ELBO bound epsilon = validation -ELBO of
the pretrained HVAE + `config.<stage>.elbo_margin` (nats/dim; saved in
`<stage>/constraint.json` so a resumed run uses the same bound) and fine-tunes with
`cft.task.cft_task`. The summary reports the test -ELBO in bits/dim next to the pretrained
one, the mean distance of the intervened and the preserved measurements, and the final
multiplier lambda. The fine-tuned HVAE is exported as the stage's weights.
"""

from __future__ import annotations

import json
import math
import os

import ml_collections

from segcft_jax import builders
from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods, predictors
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.cft.task import cft_task
from segcft_jax.stages import hvae as hvae_stage
from segcft_jax.stages import setup
from segcft_jax.train import metrics_log, sharding
from segcft_jax.train.evaluate import Evaluator

CONSTRAINT_FILE = "constraint.json"


def data_keys(config: ml_collections.ConfigDict, kind: str) -> tuple[str, ...]:
  """Fields a CFT batch needs: the image, every graph variable, the region map if regional."""
  keys = ("image", *builders.make_pgm(config).graph.order)
  return keys + (("regions",) if kind == "positional" else ())


def unloaded_predictor(config: ml_collections.ConfigDict, kind: str,
                       regressor_for: tuple[str, ...] = ()):
  """The predictor of kind `kind` with its networks built but no weights read (shapes only:
  restoring a checkpoint, benchmarks); a regressor's targets are left standardised."""
  regressor = None
  if kind == "regressor" or regressor_for:
    unit = {v: (0.0, 1.0) for v in builders.regressor_types(config)}
    regressor = builders.make_regressor(config, unit)
  if kind == "regressor":
    return predictors.make_predictor(config, kind, regressor)
  return predictors.make_predictor(config, kind, builders.make_unet(config, "segmentor"),
                                   regressor, regressor_for)


def load_predictor(config: ml_collections.ConfigDict, workdir: str, settings: CFTSettings,
                   mesh):
  """`(Predictor, params replicated on mesh)` of the stage's predictor (a hybrid's params:
  `{"segmentor": ..., "regressor": ...}`)."""
  where = sharding.replicated(mesh)
  kind = settings.predictor
  if kind == "regressor":
    network, params = builders.load_regressor(config, workdir, where)
    return predictors.make_predictor(config, kind, network), params
  # Never the oracle: it is reserved for evaluation.
  network, params = builders.load_unet(config, workdir, "segmentor", where)
  if not settings.regressor_for:
    return predictors.make_predictor(config, kind, network), params
  regressor, regressor_params = builders.load_regressor(config, workdir, where)
  predictor = predictors.make_predictor(config, kind, network, regressor,
                                        settings.regressor_for)
  return predictor, {"segmentor": params, "regressor": regressor_params}


def load_frozen(config: ml_collections.ConfigDict, workdir: str, settings: CFTSettings):
  """`(data, predictor, frozen)` of a CFT stage: its batches and mesh, its predictor and the
  frozen arguments of its step, `{"pgm": PGM EMA params, "predictor": params}`."""
  data = setup.prepare(config, workdir, settings.stage, data_keys(config, settings.predictor))
  predictor, predictor_params = load_predictor(config, workdir, settings, data.mesh)
  pgm_params = builders.load_pgm(config, workdir, sharding.replicated(data.mesh))
  return data, predictor, {"pgm": pgm_params, "predictor": predictor_params}


def _constraint(config, workdir, name, data, hvae_params) -> dict:
  path = os.path.join(workdir_lib.stage_dir(workdir, name), CONSTRAINT_FILE)
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


def run(config: ml_collections.ConfigDict, workdir: str, name: str) -> dict:
  """Fine-tunes the pretrained HVAE against the predictor of stage `name`'s method."""
  settings = CFTSettings.from_config(config, name)
  data, predictor, frozen = load_frozen(config, workdir, settings)
  hvae_params = builders.load_hvae(config, workdir, "hvae", sharding.replicated(data.mesh))
  constraint = _constraint(config, workdir, name, data, hvae_params)
  task = cft_task(settings, config, builders.make_dscm(config), predictor,
                  constraint["epsilon"], hvae_params)

  def summarise(m):
    out = setup.as_floats(m)
    out["distance"] = {k.split("/", 1)[1]: out.pop(k) for k in list(out) if "/" in k}
    return out

  result, test = setup.train_and_evaluate(
      config, workdir, name, task, data, builders.hvae_architecture(config), summarise, frozen,
      exported=lambda params: params["hvae"])
  pretrained_bpd = constraint["pretrained_validation_nelbo"] / math.log(2.0)
  return dict(test=test, predictor=settings.predictor, measurements=list(predictor.names),
              train_encoder=settings.train_encoder, constraint=constraint,
              pretrained_validation_bits_per_dim=pretrained_bpd,
              lmbda=float(result.state.params["lmbda"]), **setup.run_summary(result))


def stage_fn(name: str):
  """`run(config, workdir)` of fine-tuning stage `name`."""
  if name not in methods.CFT_STAGES:
    raise ValueError(f"{name!r} is not a fine-tuning stage ({', '.join(methods.CFT_STAGES)}).")
  fn = lambda config, workdir: run(config, workdir, name)
  fn.__doc__ = f"{methods.BY_STAGE[name].name}: fine-tunes the HVAE ({name})."
  return fn
