"""What every command line shares: one flag library, one-line errors, one JAX set-up.

Each entry point (`main`, `counterfactual`, `export`, the research commands in `tools/`)
declares its flags with absl on a `FlagValues` of its own, made when the command runs (no
flag state at import), and hands `run_command` a body that receives the parsed flags:

* a bad flag or a missing required one ends in one `error:` line and exit status 2;
* a problem with the user's input or workdir (`USER_ERRORS`, an OS error naming its path)
  ends in one `error:` line and exit status 1 (no traceback; `--verbosity=1` logs it with its
  traceback);
* Ctrl-C ends in one line and exit status 130 (training says where it stopped:
  `train.loop.StageInterrupted`);
* any other exception is an internal error: one line, and its traceback written to
  `<workdir>/logs/` (or the temporary directory when the command has no writable workdir);
* `setup_jax` is the one place that configures JAX: the PRNG implementation a config
  records, the persistent compilation cache and, for multi-process runs,
  `jax.distributed.initialize` (`train.distributed`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
import traceback
from typing import Callable, Sequence

import jax
from absl import flags
from absl import logging as absl_logging

from segcft_jax.train import distributed

# Problems with the user's input or workdir, answered in one line.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, RuntimeError)
DEFAULT_CACHE = os.path.join("~", ".cache", "segcft_jax", "xla")
_HELP = ("--help", "-h", "--helpfull", "-?")

log = logging.getLogger("segcft_jax")


class UsageError(Exception):
  """A bad command line (exit status 2)."""


def describe_os_error(e: OSError) -> str:
  """An OS error as one line naming the path: 'Permission denied: runs/x/hvae.'"""
  what = e.strerror or type(e).__name__
  paths = [p for p in (e.filename, e.filename2) if p is not None]
  if not paths:
    return str(e)
  hint = {"Permission denied": " (choose a writable place or fix its permissions)",
          "Read-only file system": " (choose a writable place)",
          "No space left on device": " (free some space or choose another place)",
          "Not a directory": " (a file stands where a directory is needed)",
          "Is a directory": " (a directory stands where a file is needed)"}.get(what, "")
  return f"{what}: {' -> '.join(map(str, paths))}{hint}."


def write_traceback(log_dir: str | None) -> str:
  """Writes the current exception's traceback to `<log_dir>/traceback-<time>.txt` (the
  temporary directory when `log_dir` is None or not writable); returns the file's path."""
  text = traceback.format_exc()
  name = f"traceback-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
  for directory in ([log_dir] if log_dir else []) + [tempfile.gettempdir()]:
    try:
      os.makedirs(directory, exist_ok=True)
      path = os.path.join(directory, name)
      with open(path, "w") as f:
        f.write(text)
      return path
    except OSError:
      continue
  return "(nowhere: no writable directory)"


def new_flags(sys_argv: Sequence[str]) -> flags.FlagValues:
  """A command's own flags, with the ones every command shares (`--verbosity`)."""
  del sys_argv  # Only commands with a config flag need the arguments at definition time.
  fv = flags.FlagValues()
  flags.DEFINE_integer("verbosity", -1, "Library log level (0: info of Orbax, TFDS, absl; "
                       "default: warnings only).", flag_values=fv)
  return fv


def parse(fv: flags.FlagValues, argv: Sequence[str], doc: str,
          explain: Callable[[Sequence[str]], str | None] | None = None) -> None:
  """Parses `argv` (program name first) into `fv`; `--help` prints `doc` and the flags.

  `explain(argv)` may name the problem better than the flag library (e.g. a mistyped config
  field with the valid ones).
  """
  if any(a in _HELP for a in argv[1:]):
    print(f"{doc.strip()}\n\nFlags:\n{fv.get_help()}")
    raise SystemExit(0)
  try:
    rest = fv(list(argv))
  except Exception as e:  # pylint: disable=broad-except  (config files raise anything)
    text = str(e)
    if "must have a value other than None" in text:
      name = text.split("=", 1)[0].removeprefix("flag ")
      raise UsageError(f"{name} is required (see --help).") from e
    # A config file's error arrives wrapped with its traceback text; its last line is the
    # message meant for the user.
    lines = [l for l in text.strip().splitlines() if l.strip()]
    message = (explain(argv) if explain else None) or (lines[-1] if lines else repr(e))
    message = re.sub(r"^[A-Za-z_.]*(Error|Exception): ", "", message)
    raise UsageError(f"{message} Run with --help for the flags.") from e
  if len(rest) > 1:
    raise UsageError(f"Unexpected arguments {rest[1:]} (see --help).")
  # Grain reads absl's global flags (google/grain#1355); ours live on `fv`.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


# Library warnings that say nothing to a user of this package: TFDS announcing the builder
# configs and the locally generated "downloads" it makes, Orbax timing its waits.
_NOISE = ("Using custom data configuration", "has no dataset_info.json",
          "Waiting for previous save to complete", "Load dataset info from",
          "Reusing dataset", "Constructing tf.data.Dataset", "Generating split")


class _QuietLibraries(logging.Filter):
  """Drops the `_NOISE` records of the absl logger (shown again with `--verbosity=0`)."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(n in message for n in _NOISE)


def setup_logging(verbosity: int) -> None:
  """Our progress lines at INFO on stderr; library logs at WARNING unless `verbosity` >= 0,
  without the libraries' routine notices (`_NOISE`)."""
  if not log.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
  for handler in log.handlers:  # a later command in the same process: the stderr of now
    if isinstance(handler, logging.StreamHandler):
      handler.stream = sys.stderr  # (not setStream: it flushes the old one, maybe closed)
  log.setLevel(logging.INFO)
  log.propagate = False
  absl_logging.use_absl_handler()
  absl_logging.set_verbosity(absl_logging.WARNING if verbosity < 0 else verbosity)
  absl_logger = logging.getLogger("absl")
  absl_logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG)
  for f in [f for f in absl_logger.filters if isinstance(f, _QuietLibraries)]:
    absl_logger.removeFilter(f)
  if verbosity < 0:
    absl_logger.addFilter(_QuietLibraries())


def setup_jax(threefry_partitionable: bool, compilation_cache: str = "",
              multi_process: bool = False, coordinator_address: str | None = None,
              num_processes: int | None = None, process_id: int | None = None) -> None:
  """Configures JAX for a run (call before any computation).

  Args:
    threefry_partitionable: the PRNG implementation the config records (both are
      sharding-invariant but draw different numbers).
    compilation_cache: directory of the persistent XLA compilation cache ('' disables it).
    multi_process: a command that may run as one of several processes calls
      `train.distributed.initialize` with the three arguments below (without them a SLURM
      job or TPU slice is detected, else the run is single-process).
    coordinator_address, num_processes, process_id: the multi-process run.
  """
  jax.config.update("jax_threefry_partitionable", bool(threefry_partitionable))
  if compilation_cache:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  if multi_process:
    distributed.initialize(coordinator_address, num_processes, process_id)


def run_command(define: Callable[[Sequence[str]], flags.FlagValues],
                body: Callable[[flags.FlagValues], int | None], doc: str,
                argv: Sequence[str] | None = None,
                fail: Callable[[str], None] | None = None,
                explain: Callable[[Sequence[str]], str | None] | None = None,
                log_dir: Callable[[flags.FlagValues], str | None] | None = None) -> int:
  """Runs a command; returns its exit status (0 ok, 1 bad input or internal error, 2 bad
  flags, 130 interrupted).

  Args:
    define: `(argv) -> FlagValues` with the command's flags (start from `new_flags`).
    body: the command, given the parsed flags; returns an exit status or None (0).
    doc: the text `--help` prints.
    argv: the arguments without the program name (default: `sys.argv[1:]`).
    fail: how a user error ends (default: print it and return 1; `main` exits every process
      of a multi-process run at once instead).
    explain: a better message for a flag error (`parse`).
    log_dir: `(flags) -> directory` where an internal error's traceback is written
      (default: the `--workdir` flag's `logs/` when the command has one).
  """
  argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
  try:
    fv = define(argv)
    parse(fv, argv, doc, explain)
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  setup_logging(fv.verbosity)
  try:
    status = body(fv)
  except KeyboardInterrupt as e:
    print(str(e) or "interrupted; what was complete is kept: re-run the same command to go "
          "on.", file=sys.stderr)
    return 130
  except (*USER_ERRORS, OSError) as e:
    log.debug("command failed", exc_info=True)
    # An OS error raised by the system has an errno (ours carry a sentence instead).
    message = describe_os_error(e) if isinstance(e, OSError) and e.errno else str(e)
    if fail is not None:
      fail(message)
    print(f"error: {message}", file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except  (one line, the rest in a file)
    path = write_traceback(log_dir(fv) if log_dir else _workdir_logs(fv))
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    message = (f"internal error ({type(e).__name__}{': ' + first[:200] if first else ''}); "
               f"the full traceback is in {path}. Please report it.")
    if fail is not None:
      fail(message)
    print(f"error: {message}", file=sys.stderr)
    return 1
  return 0 if status is None else int(status)


def _workdir_logs(fv: flags.FlagValues) -> str | None:
  """`<--workdir>/logs` when the command has a `--workdir` flag naming a directory."""
  workdir = fv["workdir"].value if "workdir" in fv else None
  return os.path.join(workdir, "logs") if workdir and os.path.isdir(workdir) else None
