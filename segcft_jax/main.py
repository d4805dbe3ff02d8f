"""Command line: flags -> locked config -> stages.

  python -m segcft_jax.main --config=configs/synth_chest.py[:variant] [--config.a.b=v]
      [--workdir=DIR] [--stages=data,segmentor]

The workdir defaults to `runs/<config name>[_<variant>]`. Multi-process runs call
`jax.distributed.initialize` only when `--coordinator_address`/`--num_processes` are given or
a SLURM job / TPU slice is detected (`train.distributed`).
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from segcft_jax import config_files

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a variant: configs/synth_chest.py:quick.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Output directory (default: runs/<config name>[_<variant>]).")
_STAGES = flags.DEFINE_list("stages", None, "Stages to run, in order (default: config.stages).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", os.path.join("~", ".cache", "segcft_jax", "xla"),
    "Persistent XLA compilation cache directory ('' disables it).")

# Errors that describe a problem with the user's input or workdir: printed as one message.
_USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError)


def _explain_override(argv: list[str]) -> str | None:
  """Names the first `--config.a.b=v` whose field does not exist, with the valid choices."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    return None
  try:
    config = config_files.load(spec)
  except Exception:  # pylint: disable=broad-except
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


def _parse_flags(argv: list[str]) -> list[str]:
  """absl parsing with one-line errors for a bad config, variant or override."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    # config_flags wraps errors of the config file (e.g. an unknown variant) with their
    # traceback text; the last line is the message meant for the user.
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    message = _explain_override(argv) or (lines[-1] if lines else repr(e))
    hint = "\nRun with --helpfull for all flags." if isinstance(e, flags.Error) else ""
    sys.exit(f"error: {message}{hint}")


def _enable_compilation_cache() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _configure_logging() -> None:
  """Our progress lines at INFO on stderr; library chatter (Orbax, absl) only at WARNING
  unless --verbosity is given."""
  logger = logging.getLogger("segcft_jax")
  if not logger.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  logger.propagate = False
  if not flags.FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config=configs/synth_chest.py")
  _configure_logging()
  from segcft_jax import stages  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  names = list(_STAGES.value or config.stages)
  try:
    stages.check_stage_names(names)
  except ValueError as e:
    sys.exit(f"error: {e}")
  _enable_compilation_cache()
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_threefry_partitionable", bool(config.threefry_partitionable))
  from segcft_jax.train import distributed  # pylint: disable=g-import-not-at-top
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    distributed.check_same_config(config)
  except ValueError as e:
    distributed.fail(str(e))
  workdir = _WORKDIR.value or config_files.default_workdir(config)
  logging.getLogger("segcft_jax").info("workdir %s, stages %s", workdir, ", ".join(names))
  try:
    stages.run_stages(config, workdir, names)
  except _USER_ERRORS as e:
    logging.getLogger("segcft_jax").debug("stage failed", exc_info=True)
    distributed.fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
