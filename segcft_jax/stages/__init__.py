"""Stage registry: name -> `run(config, workdir) -> summary dict` (SPEC §3).

`run_stages` executes the named stages in order, holding the workdir's lock, writing
`<stage>/config.json` before and `<stage>/summary.json` after each; a stage whose summary
exists is skipped (the data stage only while its dataset reads back). A stage interrupted
with checkpoints resumes only with the config it was started with (`workdir.config_changes`).
The fine-tuning stages come from the method registry (`cft.methods`), one per CFT method.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

import ml_collections

from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.scm import measured
from segcft_jax.stages import cft, data, evaluate, hvae, pgm, regressor, segmentor, validation

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
  """Fails before anything is written when a named stage cannot run with `config`: an
  unknown stage, CFT settings that do not parse, a field out of its range
  (`validation.check_ranges`). Needs no JAX set-up."""
  check_stage_names(names)
  for name in names:
    if name in methods.CFT_STAGES:
      CFTSettings.from_config(config, name)
  validation.check_ranges(config, names)


def _checkpoints(workdir: str, name: str) -> str | None:
  """Stage `name`'s checkpoint directory when it holds any, else None."""
  path = os.path.join(workdir_lib.stage_dir(workdir, name), "checkpoints")
  return path if os.path.isdir(path) and os.listdir(path) else None


def _check_resumable(config: ml_collections.ConfigDict, workdir: str, name: str,
                     force_config: bool) -> None:
  """Fails when stage `name` was interrupted with checkpoints under a config that differs
  from `config` in a field that matters (`--force_config` resumes anyway)."""
  checkpoints = _checkpoints(workdir, name)
  if not (workdir_lib.has_config(workdir, name) and checkpoints):
    return
  matter, harmless = workdir_lib.config_changes(workdir, name, config,
                                                [n for n in REGISTRY if n != name])
  # More steps continue the same run (no schedule depends on the step count); fewer than
  # the checkpoint has would end with more steps than the config says.
  reached = max((int(d) for d in os.listdir(checkpoints) if d.isdigit()), default=0)
  steps = f"{name}.num_steps:"
  for change in [c for c in matter if c.startswith(steps)]:
    if reached <= config[name].num_steps:
      matter.remove(change)
      harmless.append(change)
    else:
      matter[matter.index(change)] = f"{change}, below the checkpoint's step {reached}"
  if harmless:
    log.info("[%s] resuming with changed %s (safe to change)", name, "; ".join(harmless))
  if matter and not force_config:
    raise ValueError(
        f"[{name}] was interrupted with checkpoints in {checkpoints} under another config "
        f"({'; '.join(matter)}). Re-run with the interrupted run's settings to resume, add "
        f"--force_config to resume with the new ones, or move "
        f"{workdir_lib.stage_dir(workdir, name)} aside to start the stage afresh.")
  if matter:
    log.warning("[%s] resuming with a changed config (--force_config): %s", name,
                "; ".join(matter))


def _skip(config: ml_collections.ConfigDict, workdir: str, name: str) -> bool:
  """Whether stage `name` is complete (the data stage: and its dataset reads back)."""
  if not workdir_lib.is_done(workdir, name):
    return False
  if name == "data":
    problem = data.damage(config, workdir)
    if problem:
      log.warning("[data] complete, but its dataset cannot be read: running it again")
      return False
  if workdir_lib.has_config(workdir, name):
    matter, _ = workdir_lib.config_changes(workdir, name, config,
                                           [n for n in REGISTRY if n != name])
    if matter:
      log.warning("[%s] complete under another config (%s); skipping it: move %s aside to "
                  "re-run it with this one", name, "; ".join(matter[:3]) +
                  (f"; {len(matter) - 3} more" if len(matter) > 3 else ""),
                  workdir_lib.stage_dir(workdir, name))
  return True


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


def run_stages(config: ml_collections.ConfigDict, workdir: str, names: Sequence[str],
               force_config: bool = False) -> dict:
  """Runs `names` in order, holding the workdir's lock; returns {stage: summary}. The stages
  after `data` run with the statistics it measured (`with_measured`).

  Args:
    force_config: resume an interrupted stage even when its config has changed.
  """
  check_config(config, names)
  validation.check_batch_sizes(config, names)
  with workdir_lib.lock(workdir):
    return _run_locked(config, workdir, names, force_config)


def _run_locked(config: ml_collections.ConfigDict, workdir: str, names: Sequence[str],
                force_config: bool) -> dict:
  summaries = {}
  for name in names:
    if name != "data":
      config = with_measured(config, workdir, summaries.get("data"))
    if _skip(config, workdir, name):
      log.info("[%s] complete (summary.json exists), skipping", name)
      summaries[name] = workdir_lib.read_summary(workdir, name)
      continue
    _check_resumable(config, workdir, name, force_config)
    t0 = time.perf_counter()
    # config.json of an earlier (possibly differently configured) run is only replaced once
    # this run has succeeded: a failing run must not rewrite what is on disk.
    if not workdir_lib.has_config(workdir, name) or not _checkpoints(workdir, name):
      # Nothing on disk continues an earlier config: the record is this run's from the start.
      workdir_lib.write_config(workdir, name, config)
    summary = stage_fn(name)(config, workdir)
    summary["stage_seconds"] = time.perf_counter() - t0
    workdir_lib.write_config(workdir, name, config)
    workdir_lib.write_summary(workdir, name, summary)
    log.info("[%s] done in %.1f s", name, summary["stage_seconds"])
    summaries[name] = summary
  return summaries
