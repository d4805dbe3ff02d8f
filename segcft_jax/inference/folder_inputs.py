"""A folder of one's own images as the source of a counterfactual dataset (`generate
--input_dir`): every image file, read and mapped as the dataset's images are, with its factual
parents from a table (`file` column + variables) or, for areas, the oracle.

Unreadable images are skipped, named and counted, up to `max_skip_fraction` of the folder.
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from segcft_jax.data import images as images_lib
from segcft_jax.inference import requests

def image_files(directory: str) -> list[str]:
  """The image files of `directory` (PNG, .npy, DICOM, NIfTI), sorted by name."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"--input_dir {directory} is not a directory.")
  names = sorted(n for n in os.listdir(directory)
                 if any(n.lower().endswith(s) for s in images_lib.SUFFIXES))
  if not names:
    raise ValueError(f"--input_dir {directory} holds no image file "
                     f"({', '.join(images_lib.SUFFIXES)}).")
  return names


def read_table(path: str | None, names: Sequence[str]) -> dict[str, dict[str, str]]:
  """{file name: {variable: value}} of a CSV with a `file` column; every row must name an
  image of the folder."""
  if path is None:
    return {}
  if not os.path.exists(path):
    raise FileNotFoundError(f"Parents table {path} does not exist.")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if rows and "file" not in rows[0]:
    raise ValueError(f"{path} needs a 'file' column naming each image of --input_dir.")
  table = {r["file"].strip(): {k: v for k, v in r.items() if k != "file"} for r in rows}
  unknown = sorted(set(table) - set(names))
  if unknown:
    raise ValueError(f"{path} names {len(unknown)} file(s) not in --input_dir, e.g. "
                     f"{unknown[:3]}.")
  return table


def load(directory: str, size: int, graph, measurable: Sequence[str], table_path: str | None,
         percentiles: tuple[float, ...] = (), max_skip_fraction: float = 0.1
         ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], list[str]]:
  """(file names, uint8 images [N, S, S], given parents {variable: [N]}, skipped files with
  their reason) of the readable images; variables neither given nor `measurable` fail with a
  message naming them."""
  names = image_files(directory)
  table = read_table(table_path, names)
  needed = [v for v in graph.order if v not in measurable]
  kept, arrays, given, skipped = [], [], {}, []
  for name in names:
    try:
      image, _ = requests.read_input(os.path.join(directory, name), size, [], percentiles)
    except ValueError as e:
      skipped.append(f"{name}: {e}")
      continue
    row = table.get(name, {})
    missing = [v for v in needed if not str(row.get(v, "")).strip()]
    if missing:
      raise ValueError(f"{name}: {', '.join(missing)} cannot be measured on an image; give "
                       f"{'it' if len(missing) == 1 else 'them'} in --parents (a CSV with a "
                       f"'file' column).")
    for v, value in row.items():
      if v in graph.order and str(value).strip():
        given.setdefault(v, {})[len(kept)] = requests.parent_value(graph, v, value,
                                                                   f"{table_path}:{name}")
    kept.append(name)
    arrays.append(image)
  if skipped and len(skipped) / len(names) > max_skip_fraction:
    raise ValueError(f"{len(skipped)} of {len(names)} images of {directory} cannot be read "
                     f"(first: {skipped[0]}), more than --max_skip_fraction="
                     f"{max_skip_fraction}.")
  n = len(kept)
  partial = [v for v, d in given.items() if len(d) != n and v not in needed]
  if partial:
    raise ValueError(f"{table_path} gives {', '.join(partial)} for some images only: give it "
                     f"for every image or for none (the oracle then measures it).")
  return kept, np.stack(arrays), {v: np.array([d[i] for i in range(n)]) for v, d in
                                  given.items()}, skipped
