"""Per-stage run records: `<stage>/config.json`, `<stage>/summary.json`, done-ness.

A stage is complete when its `summary.json` exists; re-running the pipeline skips it.
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


def is_done(workdir: str, name: str) -> bool:
  return os.path.exists(summary_path(workdir, name))


def has_config(workdir: str, name: str) -> bool:
  return os.path.exists(os.path.join(stage_dir(workdir, name), "config.json"))


def write_config(workdir: str, name: str, config: ml_collections.ConfigDict) -> None:
  metrics_log.write_json(os.path.join(stage_dir(workdir, name), "config.json"), config.to_dict())


def write_summary(workdir: str, name: str, summary: dict) -> None:
  metrics_log.write_json(summary_path(workdir, name), summary)


def read_summary(workdir: str, name: str) -> dict:
  with open(summary_path(workdir, name)) as f:
    return json.load(f)
