"""Trains and evaluates the models of a config, stage by stage, in one workdir.

  python -m segcft_jax.main --config=configs/synth_chest.py[:variant] [--config.a.b=v]
      [--workdir=DIR] [--stages=data,segmentor]

Example: python -m segcft_jax.main --config=configs/synth_chest.py:quick

Each stage writes <workdir>/<stage>/ (default workdir: runs/<config name>[_<variant>]) and
is skipped once complete; an interrupted run resumes from its last checkpoint when the same
command is run again. Override any config field with --config.<section>.<field>=<value>.
On a cluster, give --coordinator_address/--num_processes/--process_id (SLURM jobs and TPU
slices are detected without them).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags

from segcft_jax import config_files, entry, stages
from segcft_jax.train import distributed

log = logging.getLogger("segcft_jax")


def define_flags(argv: Sequence[str]) -> flags.FlagValues:
  """The command's flags; `--config.a.b=v` overrides are read from `argv`."""
  fv = entry.new_flags(argv)
  config_flags.DEFINE_config_file(
      "config", None, "Config file, optionally with a variant: configs/synth_chest.py:quick.",
      flag_values=fv, lock_config=True, sys_argv=list(argv))
  flags.DEFINE_string("workdir", None, "Output directory (default: runs/<config name>"
                      "[_<variant>]).", flag_values=fv)
  flags.DEFINE_list("stages", None, "Stages to run, in order (default: config.stages).",
                    flag_values=fv)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 for multi-process runs.", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "Number of processes.", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "Index of this process.", flag_values=fv)
  flags.DEFINE_boolean("force_config", False, "Resume an interrupted stage even though the "
                       "config differs from the one it was started with.", flag_values=fv)
  flags.DEFINE_string("compilation_cache", entry.DEFAULT_CACHE,
                      "Persistent XLA compilation cache directory ('' disables it).",
                      flag_values=fv)
  flags.mark_flag_as_required("config", flag_values=fv)
  return fv


def explain_override(argv: Sequence[str]) -> str | None:
  """Names the first `--config.a.b=v` whose field does not exist, with the valid choices."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    return None
  try:
    config = config_files.load(spec)
  except Exception:  # pylint: disable=broad-except  (the parser reports a bad config itself)
    return None
  for a in argv:
    if not a.startswith("--config."):
      continue
    fields = a[len("--config."):].split("=", 1)[0].split(".")
    node, where = config, "config"
    for f in fields:
      if not hasattr(node, "keys") or f not in node:
        valid = sorted(node.keys()) if hasattr(node, "keys") else []
        return (f"--config.{'.'.join(fields)}: {where} has no field {f!r}. "
                f"Valid fields of {where}: {', '.join(valid)}.")
      node, where = node[f], f"{where}.{f}"
  return None


def run(fv: flags.FlagValues) -> None:
  """Checks the stage names and the config, sets up JAX and runs the stages."""
  config = fv.config
  names = list(fv.stages or config.stages)
  stages.check_config(config, names)
  workdir = fv.workdir or config_files.default_workdir(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is a file, not a directory; choose another "
                     f"--workdir.")
  entry.setup_jax(config.threefry_partitionable, fv.compilation_cache, True,
                  fv.coordinator_address, fv.num_processes, fv.process_id)
  distributed.check_same_config(config)
  log.info("workdir %s, stages %s", workdir, ", ".join(names))
  stages.run_stages(config, workdir, names, force_config=fv.force_config)


def help_text() -> str:
  """The module docstring with the stages and the shipped configs' variants."""
  configs = "\n".join(f"  {path}: {', '.join(variants)}"
                      for path, variants in config_files.shipped().items())
  return (f"{__doc__.strip()}\n\nStages, in pipeline order: {', '.join(stages.REGISTRY)}."
          f"\n\nConfigs and their variants (--config=<file>:<variant>):\n{configs}")


def resolve_config_flag(argv: Sequence[str]) -> list[str]:
  """`argv` with the path of `--config=` found from the working directory or the repository
  (`config_files.resolve`)."""
  return [f"--config={config_files.resolve(a.split('=', 1)[1])}"
          if a.startswith("--config=") else a for a in argv]


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
  try:
    argv = resolve_config_flag(sys.argv[1:] if argv is None else argv)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return entry.run_command(define_flags, run, help_text(), argv, fail=distributed.fail,
                           explain=explain_override, log_dir=_log_dir)


def _log_dir(fv: flags.FlagValues) -> str | None:
  """`<workdir>/logs` of the run (where an internal error's traceback goes)."""
  try:
    workdir = fv.workdir or config_files.default_workdir(fv.config)
  except Exception:  # pylint: disable=broad-except  (no config: the temporary directory)
    return None
  return os.path.join(workdir, "logs") if os.path.isdir(workdir) else None


if __name__ == "__main__":
  sys.exit(main())
