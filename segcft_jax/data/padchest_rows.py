"""Per-row decoding for the PadChest builder: age, image and mask of one radiograph.

Every function raises `RowError(reason, message)` on bad data; the builder skips such a row,
counts it under `reason` and reports the counts (see `segcft_jax.data.padchest`).
"""

from __future__ import annotations

import datetime
import pathlib

import numpy as np
from PIL import Image


class RowError(ValueError):
  """A bad row: skipped and counted under `reason`."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def age_years(birth_year: str, study_date: str) -> float:
  """Age at the study from PadChest's birth year and YYYYMMDD study date (1 July birthday)."""
  try:
    birth = int(float(birth_year))
    d = str(int(float(study_date)))
    study = datetime.date(int(d[:4]), int(d[4:6]), int(d[6:8]))
    age = (study - datetime.date(birth, 7, 1)).days / 365.25
  except (TypeError, ValueError) as e:
    raise RowError("bad_age", f"cannot compute age from PatientBirth={birth_year!r}, "
                              f"StudyDate_DICOM={study_date!r} ({e})") from None
  if not -0.5 <= age <= 120:
    raise RowError("bad_age", f"age {age:.1f} y outside [0, 120]")
  return max(age, 0.0)


def read_png(path: pathlib.Path) -> np.ndarray:
  """A grayscale PNG (8- or 16-bit) as float32 [H, W]; RowError("bad_image") if unreadable."""
  try:
    with Image.open(path) as img:
      img.load()
      if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
        img = img.convert("L")
      return np.asarray(img, dtype=np.float32)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise RowError("bad_image", f"cannot decode {path} ({type(e).__name__}: {e})") from None


def pad_to_square(a: np.ndarray) -> np.ndarray:
  """Zero-pads [H, W] to a centred [max, max] square."""
  h, w = a.shape
  side = max(h, w)
  top, left = (side - h) // 2, (side - w) // 2
  return np.pad(a, ((top, side - h - top), (left, side - w - left)))


def to_model_image(raw: np.ndarray, size: int, percentiles: tuple[float, float]) -> np.ndarray:
  """uint8 [size, size]: pad to square, area-resize, clip to the image's percentiles."""
  step = max(1, max(raw.shape) // 512)  # Percentiles of a <= 512^2 subsample: same, faster.
  lo, hi = np.percentile(raw[::step, ::step], percentiles)
  if not hi > lo:
    raise RowError("bad_image", f"flat image (percentiles {lo} .. {hi})")
  small = Image.fromarray(pad_to_square(raw).astype(np.float32)).resize(
      (size, size), Image.BOX)
  scaled = (np.asarray(small) - lo) / (hi - lo) * 255.0
  return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def to_model_mask(labels: np.ndarray, size: int) -> np.ndarray:
  """uint8 [size, size] nearest-resized label map of the padded square."""
  return np.asarray(Image.fromarray(pad_to_square(labels)).resize((size, size), Image.NEAREST))
