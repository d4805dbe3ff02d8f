"""CheXmask annotations: run-length codec, label maps and the CSV tables they come in.

CheXmask (Gaggion et al., PhysioNet 2023, doi:10.13026/dx54-8351) publishes one table per
source dataset. Columns: the image id (`ImageID` for PadChest), `Dice RCA (Mean)`,
`Dice RCA (Max)` (reverse-classification-accuracy estimates of segmentation quality),
`Landmarks`, `Left Lung`, `Right Lung`, `Heart` (run-length encoded masks), `Height`,
`Width` (the mask size needed to decode them; filled in the *OriginalResolution* tables,
empty in the *Preprocessed* 1024x1024 ones).

RLE convention (CheXmask `DataPostprocessing/utils.py`): space-separated pairs
`start length`; `start` is a **1-based** index into the mask flattened in **row-major**
(C) order, and the `length` pixels from there are foreground. Runs are sorted and do not
overlap; an empty string is an empty mask.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import pathlib
import sys
from typing import Iterator, Mapping, Sequence

import numpy as np

ID_COLUMN = "ImageID"
HEIGHT_COLUMN, WIDTH_COLUMN = "Height", "Width"
# Classes of the label map, painted in this order: the heart is drawn over the lungs.
ORGAN_COLUMNS = {"left_lung": "Left Lung", "right_lung": "Right Lung", "heart": "Heart"}
ORGAN_LABELS = {"left_lung": 1, "right_lung": 2, "heart": 3}


def decode_rle(rle: str, height: int, width: int) -> np.ndarray:
  """Decodes a CheXmask RLE string to a uint8 {0, 1} mask of shape [height, width].

  Raises:
    ValueError: non-integer tokens, an odd number of them, non-positive lengths, unsorted or
      overlapping runs, or runs that end beyond height * width pixels (the decoded length
      does not match the declared size).
  """
  size = int(height) * int(width)
  tokens = (rle or "").split()
  if not tokens:
    return np.zeros((height, width), np.uint8)
  try:
    nums = np.array([int(t) for t in tokens], np.int64)
  except ValueError as e:
    raise ValueError(f"RLE holds a non-integer token ({e}).") from None
  if len(nums) % 2:
    raise ValueError(f"RLE has an odd number of values ({len(nums)}); expected start/length "
                     f"pairs.")
  starts, lengths = nums[0::2] - 1, nums[1::2]
  ends = starts + lengths
  if starts.min() < 0 or lengths.min() < 1:
    raise ValueError("RLE has a start below 1 or a length below 1.")
  if np.any(starts[1:] < ends[:-1]):
    raise ValueError("RLE runs are unsorted or overlap.")
  if ends[-1] > size:
    raise ValueError(f"RLE decodes to at least {int(ends[-1])} pixels but Height x Width = "
                     f"{height} x {width} = {size}.")
  # Alternating background / foreground segments: gap_0, run_0, gap_1, run_1, ..., tail.
  gaps = starts - np.concatenate([[0], ends[:-1]])
  segments = np.stack([gaps, lengths], axis=1).ravel()
  segments = np.append(segments, size - ends[-1])
  values = np.resize(np.array([0, 1], np.uint8), len(segments))
  return np.repeat(values, segments).reshape(height, width)


def encode_rle(mask: np.ndarray) -> str:
  """Encodes a binary [H, W] mask in CheXmask's RLE convention (inverse of `decode_rle`)."""
  flat = np.concatenate([[0], (np.asarray(mask).ravel() > 0).astype(np.int8), [0]])
  changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # 1-based run starts and ends
  starts, stops = changes[0::2], changes[1::2]
  return " ".join(f"{s} {e - s}" for s, e in zip(starts, stops))


def label_map(masks: Mapping[str, np.ndarray]) -> np.ndarray:
  """uint8 label map from binary organ masks (ORGAN_LABELS; heart painted over the lungs)."""
  first = next(iter(masks.values()))
  labels = np.zeros(first.shape, np.uint8)
  for organ, label in ORGAN_LABELS.items():
    labels[np.asarray(masks[organ]) > 0] = label
  return labels


def resolve_file(directory: str | os.PathLike, name: str, what: str, where: str) -> pathlib.Path:
  """`directory/name` or `directory/name.gz` (either way round).

  Raises:
    FileNotFoundError: naming the file, what it is and where to obtain it.
  """
  directory = pathlib.Path(directory)
  alternatives = [name[:-3]] if name.endswith(".gz") else [name + ".gz"]
  for candidate in [name, *alternatives]:
    if (directory / candidate).is_file():
      return directory / candidate
  raise FileNotFoundError(f"{what} {directory / name} not found (nor its "
                          f"{'un' if name.endswith('.gz') else ''}compressed twin). {where}")


@contextlib.contextmanager
def open_table(path: str | os.PathLike,
               required: Sequence[str] = ()) -> Iterator[csv.DictReader]:
  """A DictReader over a CSV file (gzip-compressed if named *.gz).

  Raises:
    ValueError: a `required` column is missing (the message lists the columns found).
  """
  path = pathlib.Path(path)
  # RLE strings of full-resolution masks exceed csv's default 128 kB field limit.
  old_limit = csv.field_size_limit(sys.maxsize)
  try:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      found = reader.fieldnames or []
      missing = [c for c in required if c not in found]
      if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; its columns are "
                         f"{found[:40]}.")
      yield reader
  finally:
    csv.field_size_limit(old_limit)
