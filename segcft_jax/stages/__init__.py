"""Stage registry: name -> `run(config, workdir) -> summary dict` (SPEC §3).

`run_stages` executes the named stages in order, writing `<stage>/config.json` before and
`<stage>/summary.json` after each; a stage whose summary exists is skipped. The fine-tuning
stages come from the method registry (`cft.methods`), one per CFT method.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import ml_collections

from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.scm import measured
from segcft_jax.stages import cft, data, evaluate, hvae, pgm, regressor, segmentor

log = logging.getLogger(__name__)

StageFn = Callable[[ml_collections.ConfigDict, str], dict]

# Stage name -> its run function, in pipeline order.
REGISTRY: dict[str, StageFn] = {
    "data": data.run,
    "segmentor": segmentor.run_segmentor,
    "oracle": segmentor.run_oracle,
    "regressor": regressor.run,
    "pgm": pgm.run,
    "hvae": hvae.run,
    **{stage: cft.stage_fn(stage) for stage in methods.CFT_STAGES},
    "evaluate": evaluate.run,
}


def stage_fn(name: str) -> StageFn:
  """The `run(config, workdir)` function of stage `name`."""
  return REGISTRY[name]


def check_stage_names(names: Sequence[str]) -> None:
  """Fails at once on an unknown stage name, listing the valid ones."""
  unknown = [n for n in names if n not in REGISTRY]
  if unknown:
    raise ValueError(f"Unknown stage(s) {unknown}; valid stages, in pipeline order: "
                     f"{', '.join(REGISTRY)}.")


def check_config(config: ml_collections.ConfigDict, names: Sequence[str]) -> None:
  """Fails before anything is written when a named stage cannot run with `config`."""
  check_stage_names(names)
  for name in names:
    if name in methods.CFT_STAGES:
      CFTSettings.from_config(config, name)


def with_measured(config: ml_collections.ConfigDict, workdir: str,
                  data_summary: dict | None = None) -> ml_collections.ConfigDict:
  """`config` with the normalisation statistics it leaves None taken from the data stage's
  summary (`scm.measured`): `data_summary` when given (every process computes it, only one
  writes it), else `<workdir>/data/summary.json`; `config` itself when it leaves none."""
  names = measured.unmeasured(config.scm) if "scm" in config else ()
  if not names:
    return config
  if data_summary is None:
    if not workdir_lib.is_done(workdir, "data"):
      raise ValueError(f"config.scm leaves the mean / std of {', '.join(names)} to be "
                       f"measured on the train split, and {workdir} has no data stage yet: "
                       f"run --stages=data first (or set them in the config).")
    data_summary = workdir_lib.read_summary(workdir, "data")
  return measured.fill(config, data_summary.get("normalisation", {}),
                       workdir_lib.summary_path(workdir, "data"))


def run_stages(config: ml_collections.ConfigDict, workdir: str, names: Sequence[str]) -> dict:
  """Runs `names` in order; returns {stage: summary}. The stages after `data` run with the
  statistics it measured (`with_measured`)."""
  check_config(config, names)
  summaries = {}
  for name in names:
    if name != "data":
      config = with_measured(config, workdir, summaries.get("data"))
    if workdir_lib.is_done(workdir, name):
      log.info("[%s] complete (summary.json exists), skipping", name)
      summaries[name] = workdir_lib.read_summary(workdir, name)
      continue
    t0 = time.perf_counter()
    # config.json of an earlier (possibly differently configured) run is only replaced once
    # this run has succeeded: a failing run must not rewrite what is on disk.
    if not workdir_lib.has_config(workdir, name):
      workdir_lib.write_config(workdir, name, config)
    summary = stage_fn(name)(config, workdir)
    summary["stage_seconds"] = time.perf_counter() - t0
    workdir_lib.write_config(workdir, name, config)
    workdir_lib.write_summary(workdir, name, summary)
    log.info("[%s] done in %.1f s", name, summary["stage_seconds"])
    summaries[name] = summary
  return summaries
