"""Stage registry: name -> `run(config, workdir) -> summary dict` (SPEC §3).

`run_stages` executes the named stages in order, writing `<stage>/config.json` before and
`<stage>/summary.json` after each; a stage whose summary exists is skipped. Stage modules are
imported when a stage runs, so importing one of them (or any module they use, such as
`segcft_jax.evaluation.trained`) never pulls in the whole pipeline.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Callable, Sequence

import ml_collections

from segcft_jax.stages import records

log = logging.getLogger(__name__)

StageFn = Callable[[ml_collections.ConfigDict, str], dict]

# Stage name -> (module in segcft_jax.stages, function), in pipeline order.
REGISTRY: dict[str, tuple[str, str]] = {
    "data": ("data", "run"),
    "segmentor": ("segmentor", "run_segmentor"),
    "oracle": ("segmentor", "run_oracle"),
    "regressor": ("regressor", "run"),
    "pgm": ("pgm", "run"),
    "hvae": ("hvae", "run"),
    "cft_reg": ("cft", "run_reg"),
    "cft_seg": ("cft", "run_seg"),
    "cft_pos_seg": ("cft", "run_pos_seg"),
    "evaluate": ("evaluate", "run"),
}


def stage_fn(name: str) -> StageFn:
  """The `run(config, workdir)` function of stage `name`."""
  module, fn = REGISTRY[name]
  return getattr(importlib.import_module(f"segcft_jax.stages.{module}"), fn)


def check_stage_names(names: Sequence[str]) -> None:
  """Fails at once on an unknown stage name, listing the valid ones."""
  unknown = [n for n in names if n not in REGISTRY]
  if unknown:
    raise ValueError(f"Unknown stage(s) {unknown}; valid stages, in pipeline order: "
                     f"{', '.join(REGISTRY)}.")


def run_stages(config: ml_collections.ConfigDict, workdir: str, names: Sequence[str]) -> dict:
  """Runs `names` in order; returns {stage: summary}."""
  check_stage_names(names)
  from segcft_jax.stages import cft  # pylint: disable=g-import-not-at-top
  for name in names:  # Settings a stage cannot run with fail before anything is written.
    if name in cft.PREDICTORS:
      cft.check_config(config, name)
  summaries = {}
  for name in names:
    if records.is_done(workdir, name):
      log.info("[%s] complete (summary.json exists), skipping", name)
      summaries[name] = records.read_summary(workdir, name)
      continue
    t0 = time.perf_counter()
    # config.json of an earlier (possibly differently configured) run is only replaced once
    # this run has succeeded: a failing run must not rewrite what is on disk.
    if not records.has_config(workdir, name):
      records.write_config(workdir, name, config)
    summary = stage_fn(name)(config, workdir)
    summary["stage_seconds"] = time.perf_counter() - t0
    records.write_config(workdir, name, config)
    records.write_summary(workdir, name, summary)
    log.info("[%s] done in %.1f s", name, summary["stage_seconds"])
    summaries[name] = summary
  return summaries
