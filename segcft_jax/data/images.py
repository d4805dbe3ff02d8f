"""Reading one 2-D image or label map from disk and bringing it to the model resolution.

Shared by the builders of real images (PadChest, a user's folder). Every function raises
`RowError(reason, message)` on bad data; a builder skips such an example, counts it under
`reason` and reports the counts. `ChannelError` (a colour image) is not a bad row but a wrong
dataset, and stops the build.

Geometry, one method for images and masks alike: zero-pad to a centred square, then resize to
S x S, images by area averaging (PIL's BOX filter), label maps by nearest neighbour; areas are
counted after resizing. A square image of side S is left exactly as stored.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import logging
import pathlib

import numpy as np
from PIL import Image

# File suffixes read by `read_array` (DICOM and NIfTI need the `medical` extra).
SUFFIXES = (".png", ".npy", ".dcm", ".nii", ".nii.gz")
_GREY_MODES = {"L": "8-bit", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit",
               "I": "32-bit", "F": "float", "1": "1-bit", "P": "8-bit palette"}
_CHANNELS = {"LA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "CMYK": 4}


class RowError(ValueError):
  """A bad example: skipped and counted under `reason`."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


class Skips:
  """The bad examples of one build: counts by reason, the first few named, and the limit."""

  def __init__(self, dataset: str, limit: float, noun: str = "examples", hint: str = "",
               logged: int = 10):
    self.counts, self.examples = collections.Counter(), []
    self._dataset, self._limit, self._noun, self._hint, self._logged = (
        dataset, limit, noun, hint, logged)

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def skip(self, where: str, error: RowError) -> None:
    """Counts `error` under its reason; names the first `logged` of them."""
    self.counts[error.reason] += 1
    if len(self.examples) < self._logged:
      self.examples.append(f"{where}: {error}")
      logging.getLogger(__name__).warning("[%s] skipping %s: %s", self._dataset, where, error)

  def check(self, skipped: int, total: int, what) -> None:
    """Raises ValueError if `skipped` of `total` exceeds config.data.max_skip_fraction."""
    if total and skipped / total > self._limit:
      raise ValueError(
          f"{skipped} of {total} {self._noun} of {what} are bad (reasons {dict(self.counts)}; "
          f"first: {self.examples[:3]}), more than config.data.max_skip_fraction="
          f"{self._limit}.{self._hint}")

  def summary(self) -> dict:
    return dict(skipped=dict(self.counts), num_skipped=self.total,
                skipped_examples=list(self.examples))


class ChannelError(ValueError):
  """An image with more than one channel: the models read grey images only."""


def suffix(path: pathlib.Path) -> str:
  """`.nii.gz` for `a.nii.gz`, else the last suffix, lower-cased."""
  name = path.name.lower()
  return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def stem(path: pathlib.Path) -> str:
  """The file name without its (possibly double) suffix: `a.nii.gz` -> `a`."""
  return path.name[:len(path.name) - len(suffix(path))]


def read_png(path: pathlib.Path) -> np.ndarray:
  """A grey PNG (8- or 16-bit) as float32 [H, W]; RowError("bad_image") if unreadable."""
  return read_array(path)[0].astype(np.float32)


def read_array(path: pathlib.Path) -> tuple[np.ndarray, str]:
  """`(array [H, W] as stored, its depth)` of a PNG, .npy, DICOM or 2-D NIfTI file.

  The depth is "8-bit", "16-bit", ... for PNGs and the dtype (e.g. "uint8", "float32") for the
  others. DICOM pixels get their rescale slope / intercept, and MONOCHROME1 is inverted so
  that brighter is always higher. NIfTI arrays keep their stored axis order.

  Raises:
    RowError: "bad_image" for an unreadable file, a missing reader or a non-2-D array.
    ChannelError: an image with 2 or more channels.
  """
  kind = suffix(path)
  try:
    if kind == ".png":
      with Image.open(path) as img:
        img.load()
        if img.mode in _CHANNELS:
          raise ChannelError(f"{path} has {_CHANNELS[img.mode]} channels ({img.mode}); the "
                             f"models read grey images: convert it to one channel.")
        depth = _GREY_MODES.get(img.mode, img.mode)
        if img.mode in ("P", "1"):
          img = img.convert("L")
        a = np.asarray(img)
    elif kind == ".npy":
      a = np.load(path, allow_pickle=False)
      depth = str(a.dtype)
    elif kind == ".dcm":
      a, depth = _read_dicom(path)
    elif kind in (".nii", ".nii.gz"):
      a, depth = _read_nifti(path)
    else:
      raise RowError("bad_image", f"{path}: unknown file type {kind!r}; use one of {SUFFIXES}")
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    if isinstance(e, (RowError, ChannelError)):
      raise
    raise RowError("bad_image", f"cannot decode {path} ({type(e).__name__}: {e})") from None
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.ndim == 3 and a.shape[-1] in (2, 3, 4):
    raise ChannelError(f"{path} has {a.shape[-1]} channels (shape {a.shape}); the models read "
                       f"grey images: store one channel.")
  if a.ndim != 2:
    raise RowError("bad_image", f"{path} holds an array of shape {a.shape}; expected a 2-D "
                                f"image [H, W]")
  return a, depth


def _optional(module: str, path: pathlib.Path, what: str):
  """The reader module `module` of the `medical` extra, or a RowError saying how to get it."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise RowError("bad_image", f"{path}: reading {what} needs {module}; install the extra: "
                                f"pip install -e '.[medical]'") from None


def _read_dicom(path: pathlib.Path) -> tuple[np.ndarray, str]:
  ds = _optional("pydicom", path, "DICOM").dcmread(path)
  if int(getattr(ds, "SamplesPerPixel", 1)) > 1:
    raise ChannelError(f"{path} has {ds.SamplesPerPixel} samples per pixel; the models read "
                       f"grey images.")
  raw = ds.pixel_array
  depth = f"{int(getattr(ds, 'BitsStored', 8 * raw.itemsize))}-bit"
  a = raw.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
      getattr(ds, "RescaleIntercept", 0) or 0)
  if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
    a = a.max() + a.min() - a
  return a, depth


def _read_nifti(path: pathlib.Path) -> tuple[np.ndarray, str]:
  img = _optional("nibabel", path, "NIfTI").load(path)
  a = np.asarray(img.dataobj)
  a = a.reshape([n for i, n in enumerate(a.shape) if i < 2 or n != 1])  # drop singleton dims
  return a, str(a.dtype)


def pad_to_square(a: np.ndarray) -> np.ndarray:
  """Zero-pads [H, W] to a centred [max, max] square."""
  h, w = a.shape
  side = max(h, w)
  top, left = (side - h) // 2, (side - w) // 2
  return np.pad(a, ((top, side - h - top), (left, side - w - left)))


def _resize(a: np.ndarray, size: int, resample) -> np.ndarray:
  square = pad_to_square(a)
  if square.shape == (size, size):
    return square
  return np.asarray(Image.fromarray(square).resize((size, size), resample))


def intensity_range(raw: np.ndarray, percentiles: tuple[float, ...] = ()) -> tuple[float, float]:
  """The input values `to_model_image` maps to 0 and 255 (see there)."""
  if percentiles:
    step = max(1, max(raw.shape) // 512)  # Percentiles of a <= 512^2 subsample: same, faster.
    lo, hi = np.percentile(raw[::step, ::step].astype(np.float64), tuple(percentiles))
    if not hi > lo:
      raise RowError("bad_image", f"flat image (percentiles {lo} .. {hi})")
    return float(lo), float(hi)
  if raw.dtype == np.uint8:
    return 0.0, 255.0
  if raw.dtype == np.uint16:
    return 0.0, 65535.0
  raise RowError("bad_image", f"a {raw.dtype} image has no fixed range; set "
                              f"config.data.intensity_percentiles, e.g. (0.5, 99.5)")


def to_model_image(raw: np.ndarray, size: int,
                   percentiles: tuple[float, ...] = ()) -> np.ndarray:
  """uint8 [size, size]: pad to square, area-resize, then map intensities to 0..255.

  With `percentiles` = (lo, hi), the image's lo / hi percentiles map to 0 / 255 (clipped):
  robust to 12/16-bit ranges and outliers. With `()`, values are kept as stored: 8-bit images
  exactly, 16-bit ones scaled by 255 / 65535; any other type needs percentiles.
  """
  lo, hi = intensity_range(raw, percentiles)
  small = _resize(raw.astype(np.float32), size, Image.BOX)
  scaled = (small.astype(np.float64) - lo) / (hi - lo) * 255.0
  return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Geometry:
  """How an input image became a model image: its shape and type, and the values `lo` / `hi`
  that map to 0 / 255 (`to_model_image`); `from_model_image` inverts the mapping."""
  shape: tuple[int, int]
  dtype: str
  lo: float
  hi: float


def from_model_image(image: np.ndarray, geometry: Geometry) -> np.ndarray:
  """A uint8 model image mapped back to the input's size and type: resized to the padded
  square (bicubic), the padding cropped, 0..255 mapped to lo..hi (rounded and clipped for
  integer types)."""
  h, w = geometry.shape
  side = max(h, w)
  square = image.astype(np.float32)
  if square.shape != (side, side):
    square = np.asarray(Image.fromarray(square).resize((side, side), Image.BICUBIC))
  top, left = (side - h) // 2, (side - w) // 2
  unit = np.clip(square[top:top + h, left:left + w] / 255.0, 0.0, 1.0)  # no bicubic overshoot
  values = geometry.lo + unit * (geometry.hi - geometry.lo)
  dtype = np.dtype(geometry.dtype)
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    return np.clip(np.round(values), info.min, info.max).astype(dtype)
  return values.astype(dtype)


def to_model_mask(labels: np.ndarray, size: int) -> np.ndarray:
  """uint8 [size, size] nearest-resized label map of the padded square."""
  return _resize(labels.astype(np.uint8), size, Image.NEAREST)
