"""Appending benchmark results as JSON lines to `benchmarks/results/<device>.jsonl`.

Each record carries the device kind and count, library versions and the git commit, so
figures from different machines and revisions are never mixed up.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess

import jax

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_name() -> str:
  """`cpu-2core`, `nvidia-h100-80gb-hbm3`, ...: a file-name-safe device description."""
  d = jax.devices()[0]
  if d.platform == "cpu":
    return f"cpu-{os.cpu_count()}core"
  return re.sub(r"[^a-z0-9]+", "-", d.device_kind.lower()).strip("-")


def environment() -> dict:
  """Device, versions and commit of this run (`$SEGCFT_COMMIT` where the tree has no .git)."""
  commit = os.environ.get("SEGCFT_COMMIT", "")
  if not commit:
    try:
      commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(RESULTS_DIR)).stdout.strip()
    except OSError:
      commit = ""
  versions = {p: importlib.metadata.version(p) for p in ("jax", "jaxlib", "flax", "grain")}
  return dict(device=device_name(), device_kind=jax.devices()[0].device_kind,
              device_count=jax.device_count(), cpu=platform.processor() or platform.machine(),
              versions=versions, commit=commit,
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def append(record: dict, path: str | None = None) -> str:
  """Appends `record` (plus the environment) to the device's results file; returns the path."""
  path = path or os.path.join(RESULTS_DIR, f"{device_name()}.jsonl")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(dict(environment(), **record), sort_keys=True) + "\n")
  return path
