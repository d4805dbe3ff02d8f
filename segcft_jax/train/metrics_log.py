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


def canonical(obj: Any) -> Any:
  """`obj` as its JSON text reads back (tuples as lists, sorted keys): comparable to a file."""
  return json.loads(json.dumps(to_jsonable(obj), sort_keys=True))


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "",
                new_keys_only: bool = False) -> list[str]:
  """`"field: old -> new"` for every (dotted) field the two nested dicts disagree on; with
  `new_keys_only`, fields only `old` has are not differences."""
  out = []
  for key in (list(new) if new_keys_only else sorted(set(old) | set(new))):
    a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += differences(a, b, f"{prefix}{key}.", new_keys_only)
    elif a != b:
      out.append(f"{prefix}{key}: {a} -> {b}")
  return out


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
  """Appends one JSON object per call to `<stage dir>/metrics.jsonl`, and passes it to
  `events` (a `train.events.EventWriter`: the same scalars for TensorBoard) when given."""

  def __init__(self, path: str, events: Any = None):
    self.path, self.events = path, events
    self._active = jax.process_index() == 0
    if self._active:
      os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

  def write(self, record: Mapping[str, Any]) -> None:
    if not self._active:
      return
    record = to_jsonable(record)
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    if self.events is not None:
      self.events.record(record)

  def close(self) -> None:
    if self.events is not None:
      self.events.close()


def format_seconds(seconds: float) -> str:
  """`75.3` -> `1m15s`."""
  seconds = max(0, int(round(seconds)))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """Progress line with rate, input share and ETA.

  Example: `[segmentor] step 200/1000 loss 0.31 | 812 img/s | input 1.2 % | ETA 12s`.

  The input share is the part of the interval's wall time the host spent producing batches
  (`add_input_time`). Steps are dispatched asynchronously, so the accelerator waits for input
  at most that long: a share near 0 means the input pipeline is not the bottleneck.
  """

  def __init__(self, name: str, total: int, start: int, batch_size: int):
    self.name, self.total, self.batch_size = name, total, batch_size
    self._t0, self._s0 = time.perf_counter(), start
    self._last_t, self._last_s = self._t0, start
    self._input_s = 0.0
    self.step = start  # the last step run, kept by the loop (an interruption reports it)

  def add_input_time(self, seconds: float) -> None:
    """Adds host time spent fetching and placing one batch."""
    self._input_s += seconds

  def interval(self, step: int) -> dict[str, float]:
    """Since the previous call (the first interval includes compilation): `img_per_s`,
    `input_ms_per_step` (host time per batch) and `input_share` (of the wall time)."""
    now = time.perf_counter()
    steps, seconds = max(step - self._last_s, 1), max(now - self._last_t, 1e-9)
    out = dict(img_per_s=(step - self._last_s) * self.batch_size / seconds,
               input_ms_per_step=1e3 * self._input_s / steps,
               input_share=self._input_s / seconds)
    self._last_t, self._last_s, self._input_s = now, step, 0.0
    return out

  def eta(self, step: int) -> float:
    done = step - self._s0
    elapsed = time.perf_counter() - self._t0
    return elapsed / max(done, 1) * (self.total - step)

  def line(self, step: int, metrics: Mapping[str, float]) -> str:
    shown = " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                     if isinstance(v, (int, float)) and k in ("loss", "grad_norm"))
    return (f"[{self.name}] step {step}/{self.total} {shown} | {metrics['img_per_s']:.1f} "
            f"img/s | input {100 * metrics['input_share']:.1f} % | "
            f"ETA {format_seconds(self.eta(step))}")

  def show(self, step: int, metrics: Mapping[str, float]) -> None:
    """Logs `line` (process 0 only); `metrics` holds `interval`'s fields."""
    if jax.process_index() == 0:
      log.info("%s", self.line(step, metrics))
      sys.stderr.flush()
