"""Run records: `metrics.jsonl` (one JSON object per logged step) and a progress line.

Only process 0 writes files and prints, so a multi-host run produces one record.
"""

from __future__ import annotations

import logging
import json
import math
import os
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np

log = logging.getLogger(__name__)


def to_jsonable(value: Any) -> Any:
  """Converts numpy/jax scalars and arrays to plain JSON types (NaN -> None)."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    value = np.asarray(value)
    return to_jsonable(value.tolist()) if value.ndim else to_jsonable(value.item())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON atomically (temp file + rename), process 0 only."""
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(to_jsonable(obj), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class MetricsWriter:
  """Appends one JSON object per call to `<stage dir>/metrics.jsonl`."""

  def __init__(self, path: str):
    self.path = path
    self._active = jax.process_index() == 0
    if self._active:
      os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

  def write(self, record: Mapping[str, Any]) -> None:
    if not self._active:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")


def format_seconds(seconds: float) -> str:
  """`75.3` -> `1m15s`."""
  seconds = max(0, int(round(seconds)))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """Progress line with rate and ETA.

  Example: `[segmentor] step 200/1000 loss 0.31 | 812 img/s | ETA 12s`.
  """

  def __init__(self, name: str, total: int, start: int, batch_size: int):
    self.name, self.total, self.batch_size = name, total, batch_size
    self._t0, self._s0 = time.perf_counter(), start
    self._last_t, self._last_s = self._t0, start

  def rate(self, step: int) -> float:
    """Images per second since the previous call (the first interval includes compilation)."""
    now = time.perf_counter()
    rate = (step - self._last_s) * self.batch_size / max(now - self._last_t, 1e-9)
    self._last_t, self._last_s = now, step
    return rate

  def eta(self, step: int) -> float:
    done = step - self._s0
    elapsed = time.perf_counter() - self._t0
    return elapsed / max(done, 1) * (self.total - step)

  def line(self, step: int, metrics: Mapping[str, float], rate: float) -> str:
    shown = " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                     if isinstance(v, (int, float)) and k in ("loss", "grad_norm"))
    return (f"[{self.name}] step {step}/{self.total} {shown} | {rate:.1f} img/s | "
            f"ETA {format_seconds(self.eta(step))}")

  def show(self, step: int, metrics: Mapping[str, float], rate: float) -> None:
    if jax.process_index() == 0:
      log.info("%s", self.line(step, metrics, rate))
      sys.stderr.flush()
