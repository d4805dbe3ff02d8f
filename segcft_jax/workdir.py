"""The workdir's layout: one directory per stage, its run records and done-ness (SPEC §3).

    <workdir>/<stage>/config.json    the config the stage ran with
    <workdir>/<stage>/summary.json   written last: the stage is complete when it exists
    <workdir>/<stage>/weights/       the exported EMA weights of a trained stage

The evaluate stage writes `eval/` (SPEC §3); every other stage writes a directory of its name.
"""

from __future__ import annotations

import json
import os

import ml_collections

from segcft_jax.train import metrics_log


# Stages whose directory is not their name (SPEC §3: the evaluate stage writes eval/).
_DIRS = {"evaluate": "eval"}


def stage_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, _DIRS.get(name, name))


def summary_path(workdir: str, name: str) -> str:
  return os.path.join(stage_dir(workdir, name), "summary.json")


def config_path(workdir: str, name: str) -> str:
  return os.path.join(stage_dir(workdir, name), "config.json")


def is_done(workdir: str, name: str) -> bool:
  return os.path.exists(summary_path(workdir, name))


def has_config(workdir: str, name: str) -> bool:
  return os.path.exists(config_path(workdir, name))


def write_config(workdir: str, name: str, config: ml_collections.ConfigDict) -> None:
  metrics_log.write_json(config_path(workdir, name), config.to_dict())


def read_config(workdir: str, name: str) -> ml_collections.ConfigDict:
  """The config stage `name` ran with (its `config.json`)."""
  with open(config_path(workdir, name)) as f:
    return ml_collections.ConfigDict(json.load(f))


def write_summary(workdir: str, name: str, summary: dict) -> None:
  metrics_log.write_json(summary_path(workdir, name), summary)


def read_summary(workdir: str, name: str) -> dict:
  with open(summary_path(workdir, name)) as f:
    return json.load(f)


def require_done(workdir: str, name: str, needed_by: str) -> None:
  """Fails with the command that helps when stage `name` has not completed in `workdir`."""
  if not is_done(workdir, name):
    raise FileNotFoundError(f"{needed_by} needs the {name!r} stage, which has not completed in "
                            f"{workdir}; run it first (--stages={name}).")
