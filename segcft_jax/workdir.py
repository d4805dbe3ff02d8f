"""The workdir's layout: one directory per stage, its run records and done-ness (SPEC §3).

    <workdir>/<stage>/config.json    the config the stage ran with
    <workdir>/<stage>/summary.json   written last: the stage is complete when it exists
    <workdir>/<stage>/weights/       the exported EMA weights of a trained stage
    <workdir>/.lock                  held by the run using the workdir (its PID and host)
    <workdir>/logs/                  tracebacks of internal errors

The evaluate stage writes `eval/` (SPEC §3); every other stage writes a directory of its name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from typing import Iterator, Sequence

import jax
import ml_collections

from segcft_jax.train import metrics_log

log = logging.getLogger("segcft_jax")

LOCK_FILE = ".lock"
# Fields whose change does not change what a stage computes: a resumed run may differ in them.
RESUMABLE_FIELDS = ("log_every", "eval_every", "ckpt_every", "stages", "mesh", "tensorboard")


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


def _read_json(path: str) -> dict:
  """A run record, failing with a line naming the file when it is not valid JSON."""
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON ({e}); restore it, or move its stage "
                       f"directory {os.path.dirname(path)} aside and re-run that stage.") from e


def read_config(workdir: str, name: str) -> ml_collections.ConfigDict:
  """The config stage `name` ran with (its `config.json`)."""
  return ml_collections.ConfigDict(_read_json(config_path(workdir, name)))


def write_summary(workdir: str, name: str, summary: dict) -> None:
  metrics_log.write_json(summary_path(workdir, name), summary)


def read_summary(workdir: str, name: str) -> dict:
  return _read_json(summary_path(workdir, name))


def config_changes(workdir: str, name: str, config: ml_collections.ConfigDict,
                   other_stages: Sequence[str]) -> tuple[list[str], list[str]]:
  """(changes that matter, harmless changes) of `config` against stage `name`'s
  `config.json`, each `"field: recorded -> now"`; the sections of `other_stages` are left
  out (they do not affect this stage)."""
  recorded = read_config(workdir, name).to_dict()
  now = metrics_log.canonical(config.to_dict())
  for key in other_stages:
    recorded.pop(key, None)
    now.pop(key, None)
  matter, harmless = [], []
  for change in metrics_log.differences(recorded, now):
    field = change.split(":", 1)[0]
    parts = field.split(".")
    (harmless if parts[0] in RESUMABLE_FIELDS or parts[-1] in RESUMABLE_FIELDS
     else matter).append(change)
  return matter, harmless


class WorkdirLocked(RuntimeError):
  """Another running process uses the workdir."""


def _holder(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def _age(path: str) -> float:
  try:
    return time.time() - os.path.getmtime(path)
  except OSError:
    return float("inf")


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds `<workdir>/.lock` while the block runs (process 0 of a run; the others share it).

  A lock whose process no longer runs on this host (a killed run) is taken over; one held by
  a running process, or by another host, refuses the run.

  Raises:
    WorkdirLocked: the workdir is in use.
  """
  if jax.process_index() != 0:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%H:%M:%S"))
  while True:
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      break
    except FileExistsError:
      holder = _holder(path)
      pid, host = holder.get("pid"), holder.get("host")
      if pid is None and _age(path) < 10:  # being written by a run starting right now
        pid, host = "?", me["host"]
      if pid == "?" or isinstance(pid, int) and (host != me["host"] or _running(pid)):
        where = "" if host == me["host"] else f" on host {host}"
        raise WorkdirLocked(
            f"{workdir} is in use by process {pid}{where} (since {holder.get('started')}); "
            f"wait for it to finish, or use another --workdir. If that process has ended, "
            f"remove {path}.") from None
      log.info("taking over the lock of %s from process %s, which no longer runs",
               workdir, pid)
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
  with os.fdopen(fd, "w") as f:
    json.dump(me, f)
  try:
    yield
  finally:
    if _holder(path).get("pid") == me["pid"]:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def require_done(workdir: str, name: str, needed_by: str) -> None:
  """Fails with the command that helps when stage `name` has not completed in `workdir`."""
  if not is_done(workdir, name):
    raise FileNotFoundError(f"{needed_by} needs the {name!r} stage, which has not completed in "
                            f"{workdir}; run it first (--stages={name}).")
