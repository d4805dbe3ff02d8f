"""The files and the variables table of a `folder` dataset, matched into rows.

Layout (segcft_jax/data/folder.py): `images/`, `masks/`, optional `regions/` and
`variables.csv` under one directory, joined by file stem. This module finds the files, parses
the table and reports every mismatch as a bad row (`images.RowError`) or, for a dataset-wide
problem (a missing folder or column), as one ValueError / FileNotFoundError naming the fix.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
from typing import Mapping, Sequence

from segcft_jax.data import images
from segcft_jax.data.images import RowError

SPLIT_COLUMN, GROUP_COLUMN = "split", "group"
SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation",
               "valid": "validation", "test": "test"}
LAYOUT = ("DIR/images/<stem>.png|.npy|.dcm|.nii[.gz], DIR/masks/<stem>.png|.npy, optional "
          "DIR/regions/<stem>.png|.npy and DIR/variables.csv (a `stem` column, the variables, "
          "optional `split` and `group`)")


@dataclasses.dataclass(frozen=True)
class Row:
  """One example of the table with its files; `values` as stored (floats, category codes)."""
  stem: str
  line: int  # the table's line number (the header is line 1)
  image: pathlib.Path
  mask: pathlib.Path
  regions: pathlib.Path | None
  values: Mapping[str, float | int]
  split: str | None
  group: str


def list_files(folder: pathlib.Path, what: str) -> tuple[dict[str, pathlib.Path], list[str]]:
  """`({stem: path}, [problems])` of the readable files in `folder` (sorted by name).

  Two files of one stem (e.g. `a.png` and `a.npy`) are a problem; other suffixes are ignored.
  """
  if not folder.is_dir():
    raise FileNotFoundError(f"The {what} folder {folder} does not exist. Expected layout: "
                            f"{LAYOUT}.")
  found, problems = {}, []
  for path in sorted(folder.iterdir()):
    if path.is_file() and images.suffix(path) in images.SUFFIXES:
      s = images.stem(path)
      if s in found:
        problems.append(f"{what} {found[s].name} and {path.name} share the stem {s!r}")
      found[s] = path
  return found, problems


def _number(text: str, column: str) -> float:
  try:
    value = float(text)
  except (TypeError, ValueError):
    raise RowError("bad_value", f"column {column!r} holds {text!r}, not a number") from None
  if not math.isfinite(value):
    raise RowError("bad_value", f"column {column!r} holds {text!r}, not a finite number")
  return value


def parse_value(text: str, column: str, categories: Sequence[str] | None) -> float | int:
  """A numeric cell as float, a categorical one as the index of its text in `categories`."""
  text = (text or "").strip()
  if categories is None:
    return _number(text, column)
  if text not in categories:
    raise RowError("bad_value", f"column {column!r} holds {text!r}, not one of the categories "
                                f"{tuple(categories)} (config.data.categories.{column})")
  return categories.index(text)


def read_rows(root: pathlib.Path, table: str, stem_column: str, columns: Sequence[str],
              categories: Mapping[str, Sequence[str]], with_regions: bool,
              skip) -> list[Row]:
  """The rows of `root/table` whose files exist and whose values parse.

  Every other row, and every image without a row, is passed to `skip(where, RowError)`.

  Raises:
    FileNotFoundError: the table or a folder is missing.
    ValueError: a column the config names is not in the table.
  """
  image_files, problems = list_files(root / "images", "image")
  mask_files, more = list_files(root / "masks", "mask")
  problems += more
  region_files = {}
  if with_regions:
    region_files, more = list_files(root / "regions", "region map")
    problems += more
  path = root / table
  if not path.is_file():
    raise FileNotFoundError(f"The variables table {path} does not exist. Expected layout: "
                            f"{LAYOUT}.")
  if problems:
    raise ValueError(f"Ambiguous files in {root}: {'; '.join(problems[:3])}. Keep one file "
                     f"per stem.")
  rows, seen = [], set()
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    missing = [c for c in (stem_column, *columns) if c not in header]
    if missing:
      raise ValueError(
          f"{path} has no column {', '.join(map(repr, missing))} (named by the graph, "
          f"config.scm.variables, or config.data.stem_column); its columns are {header}. "
          f"Add the column, or drop the variable from the graph.")
    for line, record in enumerate(reader, start=2):
      where = f"{path.name} line {line}"
      try:
        stem = (record.get(stem_column) or "").strip()
        if not stem:
          raise RowError("no_stem", f"empty {stem_column!r}")
        where = f"{path.name} line {line} ({stem})"
        if stem in seen:
          raise RowError("duplicate_row", f"a second row for {stem!r}")
        seen.add(stem)
        files = [image_files.get(stem), mask_files.get(stem)]
        if files[0] is None:
          raise RowError("no_image", f"no file images/{stem}.* for this row; add the image "
                                     f"or remove the row")
        if files[1] is None:
          raise RowError("no_mask", f"no file masks/{stem}.* for image {files[0].name}; add "
                                    f"the mask or remove the row")
        regions = region_files.get(stem) if with_regions else None
        if with_regions and regions is None:
          raise RowError("no_regions", f"no file regions/{stem}.*; add the region map or "
                                       f"remove the row")
        values = {c: parse_value(record[c], c, categories.get(c)) for c in columns}
        split = None
        if SPLIT_COLUMN in header:
          split = SPLIT_NAMES.get((record[SPLIT_COLUMN] or "").strip().lower())
          if split is None:
            raise RowError("bad_split", f"split {record[SPLIT_COLUMN]!r}; use train, "
                                        f"validation or test")
        group = (record.get(GROUP_COLUMN) or "").strip() or stem
        rows.append(Row(stem=stem, line=line, image=files[0], mask=files[1], regions=regions,
                        values=values, split=split, group=group))
      except RowError as e:
        skip(where, e)
  for stem in sorted(set(image_files) - seen):
    skip(f"images/{image_files[stem].name}", RowError(
        "no_row", f"no row of {path.name} has stem {stem!r}; add a row or remove the image"))
  return rows
