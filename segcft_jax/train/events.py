"""TensorBoard event files beside a stage's `metrics.jsonl` (`tensorboard --logdir=<workdir>`).

tensorboardX writes the event protocol with protobuf alone, so no TensorFlow is installed
for it. Only process 0 writes; `metrics.jsonl` stays the record the code reads back.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import jax
import numpy as np
from tensorboardX import SummaryWriter


def scalars(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """The finite numbers of a (nested) record as `{"a/b": value}`; `step` and flags left out."""
  out = {}
  for key, value in record.items():
    if key in ("step", "split", "event"):
      continue
    tag = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(scalars(value, f"{tag}/"))
    elif (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(float(value))):
      out[tag] = float(value)
  return out


class EventWriter:
  """Writes scalars and images of one stage to `directory` (process 0; a no-op elsewhere)."""

  def __init__(self, directory: str):
    self._writer = SummaryWriter(directory, flush_secs=10) if jax.process_index() == 0 else None

  def record(self, record: Mapping[str, Any]) -> None:
    """A `metrics.jsonl` record as scalars under its split (`train/loss`,
    `validation/dice/heart`); records without a step (events) are skipped."""
    if self._writer is None or "step" not in record or "event" in record:
      return
    split = record.get("split", "train")
    for tag, value in scalars(record).items():
      self._writer.add_scalar(f"{split}/{tag}", value, int(record["step"]))

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """An HxW or HxWxC image (uint8, or floats in [0, 1])."""
    if self._writer is None:
      return
    image = np.asarray(image)
    if image.ndim == 2:
      image = image[..., None]
    self._writer.add_image(tag, image, int(step), dataformats="HWC")

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
