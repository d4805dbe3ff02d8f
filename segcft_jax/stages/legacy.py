"""Exported weights for a workdir trained before stages exported them (`segcft_jax.export`).

Such a workdir holds each stage's EMA parameters only inside its training checkpoints, whose
train state (with the optimiser's) is rebuilt here from the stage's task, as the training
loop does on resume; its EMA parameters are then written as the stage's weights
(`train.weights`), after which every loader reads them like those of a new run.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import ml_collections

from segcft_jax import builders
from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.cft.task import cft_task
from segcft_jax.stages import cft, hvae, pgm, regressor, segmentor, setup
from segcft_jax.train import checkpoint as ckpt_lib
from segcft_jax.train import weights
from segcft_jax.train.loop import abstract_state
from segcft_jax.train.task import Task

log = logging.getLogger(__name__)

# What a stage's checkpoint restores with: (task, fields of an example batch, architecture,
# the part of the EMA parameters that is the network).
Recipe = tuple[Task, tuple[str, ...], dict, Callable[[Any], Any]]


def _recipe(config: ml_collections.ConfigDict, workdir: str, name: str) -> Recipe:
  whole = lambda params: params
  if name in ("segmentor", "oracle"):
    cfg = config[name]
    task = segmentor.segmentation_task(name, cfg.model, builders.class_names(config),
                                       cfg.dice_weight, cfg.exposure_aug)
    return task, segmentor.KEYS, builders.unet_architecture(config, name), whole
  if name == "regressor":
    stats = regressor.load_stats(workdir)
    types = builders.regressor_types(config)
    return (regressor.regression_task(config.regressor, types, stats), ("image", *types),
            dict(builders.regressor_architecture(config), stats=stats), whole)
  if name == "pgm":
    order = builders.make_pgm(config).graph.order
    return pgm.pgm_task(config), tuple(order), builders.pgm_architecture(config), whole
  if name == "hvae":
    return (hvae.hvae_task(config), ("image", *config.hvae.parents),
            builders.hvae_architecture(config), whole)
  if name in methods.CFT_STAGES:
    settings = CFTSettings.from_config(config, name)
    predictor = cft.unloaded_predictor(config, settings.predictor, settings.regressor_for)
    task = cft_task(settings, config, builders.make_dscm(config), predictor, epsilon=0.0)
    return (task, cft.data_keys(config, settings.predictor), builders.hvae_architecture(config),
            lambda params: params["hvae"])
  raise ValueError(f"Stage {name!r} trains no network.")


TRAINED = ("segmentor", "oracle", "regressor", "pgm", "hvae", *methods.CFT_STAGES)


def restore_ema(config: ml_collections.ConfigDict, workdir: str, name: str) -> tuple[Any, dict]:
  """`(network's EMA params, architecture)` from stage `name`'s latest training checkpoint."""
  task, keys, architecture, network = _recipe(config, workdir, name)
  data = setup.prepare(config, workdir, name, keys)
  abstract, _ = abstract_state(task, config[name], data.train[0], data.mesh,
                               config.mesh.fsdp_min_size)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir_lib.stage_dir(workdir, name),
                                                    "checkpoints"), task.fingerprint)
  try:
    return network(checkpointer.restore(abstract).ema_params), architecture
  finally:
    checkpointer.close()


def export_workdir(workdir: str, overwrite: bool = False) -> list[str]:
  """Writes the weights of every completed trained stage of `workdir` that lacks them, each
  with the config that stage ran with; returns the stages exported."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"Workdir {workdir} does not exist.")
  done = []
  for name in TRAINED:
    stage_dir = workdir_lib.stage_dir(workdir, name)
    if not workdir_lib.is_done(workdir, name) or (weights.exists(stage_dir) and not overwrite):
      continue
    config = workdir_lib.read_config(workdir, name)
    params, architecture = restore_ema(config, workdir, name)
    weights.save(stage_dir, params, architecture)
    log.info("[export] %s -> %s", name, weights.directory(stage_dir))
    done.append(name)
  return done
