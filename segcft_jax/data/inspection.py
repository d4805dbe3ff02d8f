"""What a folder dataset holds, and the config file that declares it (`python -m segcft_jax.inspect`).

`inspect_folder` reads every file of a `folder` layout (data/folder.py) once: counts, image
sizes and depths, mask labels and region labels found, every table column's type and
statistics, and each area at the model resolution. `declare` turns that and the user's graph
into the variable declarations, choosing each continuous variable's normalisation from what
was measured (an area with zeros: log1p_standard; other areas: log_standard; other
continuous columns: standard); `config_file` writes them as a config file over
configs/folder.py, leaving the means and standard deviations to the data stage's train-split
measurement (`scm.measured`), so nobody types one.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import pathlib
from typing import Mapping, Sequence

import numpy as np

from segcft_jax.data import folder_table, images
from segcft_jax.scm import graph as graph_lib
from segcft_jax.scm import measured

MAX_CATEGORIES = 20  # a text column with more distinct values is taken for an identifier


@dataclasses.dataclass
class Inspection:
  """What `inspect_folder` found (module docstring)."""
  root: pathlib.Path
  counts: dict[str, int]
  image_sizes: collections.Counter
  depths: collections.Counter
  mask_labels: collections.Counter  # label value -> masks holding it
  region_labels: collections.Counter
  columns: dict[str, dict]  # table column -> {kind, values | categories, missing}
  areas: dict[str, np.ndarray]  # area variable -> values at the model resolution
  classes: tuple[str, ...]
  labels: tuple[int, ...]
  regions: tuple[str, ...]
  problems: list[str]


def _column(texts: list[str]) -> dict:
  """A table column's kind (numeric / binary / text / identifier) and its values."""
  present = [t.strip() for t in texts if t is not None and t.strip()]
  missing = len(texts) - len(present)
  try:
    values = np.array([float(t) for t in present])
  except ValueError:
    cats = sorted(set(present))
    kind = "identifier" if len(cats) > MAX_CATEGORIES else "text"
    return dict(kind=kind, categories=tuple(cats), missing=missing,
                counts={c: present.count(c) for c in cats} if kind == "text" else {})
  if values.size and set(np.unique(values).tolist()) <= {0.0, 1.0}:
    return dict(kind="binary", values=values, missing=missing)
  return dict(kind="numeric", values=values, missing=missing)


def inspect_folder(root: str | pathlib.Path, *, image_size: int, classes: Sequence[str] = (),
                   labels: Sequence[int] = (), regions: Sequence[str] = (),
                   table: str = "variables.csv", stem_column: str = "stem",
                   progress=None) -> Inspection:
  """Reads the folder at `root` once (module docstring).

  Without `classes`, the classes are named after the mask values found (`class_<v>`; the
  value 0, if present, is the background).
  """
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"{root} is not a directory (layout: {folder_table.LAYOUT}).")
  image_files, problems = folder_table.list_files(root / "images", "image")
  mask_files, more = folder_table.list_files(root / "masks", "mask")
  problems += more
  region_files = {}
  if regions:
    region_files, more = folder_table.list_files(root / "regions", "region map")
    problems += more
  path = root / table
  if not path.is_file():
    raise FileNotFoundError(f"The variables table {path} does not exist (layout: "
                            f"{folder_table.LAYOUT}).")
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    header = list(reader.fieldnames or [])
    if stem_column not in header:
      raise ValueError(f"{path} has no {stem_column!r} column (the file stems); its columns "
                       f"are {header}.")
    records = list(reader)
  stems = [(r.get(stem_column) or "").strip() for r in records]
  usable = [s for s in stems if s in image_files and s in mask_files
            and (not regions or s in region_files)]
  counts = dict(images=len(image_files), masks=len(mask_files), region_maps=len(region_files),
                rows=len(records), examples=len(usable),
                images_without_row=len(set(image_files) - set(stems)),
                rows_without_files=len(stems) - len(usable))
  skip = {stem_column, folder_table.SPLIT_COLUMN, folder_table.GROUP_COLUMN}
  keep = {s for s in usable}
  rows = [r for r, s in zip(records, stems) if s in keep]
  columns = {c: _column([r.get(c) for r in rows]) for c in header if c not in skip}
  sizes, depths, found, found_regions = (collections.Counter() for _ in range(4))
  raw_masks, raw_regions = {}, {}
  for i, s in enumerate(usable):
    try:
      image, depth = images.read_array(image_files[s])
      sizes[f"{image.shape[0]}x{image.shape[1]}"] += 1
      depths[f"{images.suffix(image_files[s])} {depth}"] += 1
      raw_masks[s] = images.read_array(mask_files[s])[0].astype(np.int64)
      found.update(np.unique(raw_masks[s]).tolist())
      if regions:
        raw_regions[s] = images.read_array(region_files[s])[0].astype(np.int64)
        found_regions.update(np.unique(raw_regions[s]).tolist())
    except (images.RowError, images.ChannelError) as e:
      problems.append(str(e))
    if progress and (i + 1) % 1000 == 0:
      progress(f"read {i + 1} of {len(usable)} examples")
  if not labels:
    labels = tuple(sorted(found))
  if not classes:
    classes = tuple("background" if v == 0 else f"class_{v}" for v in labels)
  if len(classes) != len(labels):
    raise ValueError(f"{len(classes)} classes {tuple(classes)} for {len(labels)} mask values "
                     f"{tuple(labels)}: give one name per value (--classes, --labels).")
  unknown = sorted(set(found) - set(labels))
  if unknown:
    problems.append(f"masks hold values {unknown} not among the labels {tuple(labels)}")
  areas = _areas(raw_masks, raw_regions, tuple(classes), tuple(labels), tuple(regions),
                 image_size)
  return Inspection(root=root, counts=counts, image_sizes=sizes, depths=depths,
                    mask_labels=found, region_labels=found_regions, columns=columns,
                    areas=areas, classes=tuple(classes), labels=tuple(labels),
                    regions=tuple(regions), problems=problems)


def _areas(masks, regions, classes, labels, region_names, size) -> dict[str, np.ndarray]:
  """Every area variable at the model resolution (as the builder counts them)."""
  out = collections.defaultdict(list)
  for s, raw in masks.items():
    if s in regions and regions[s].shape != raw.shape:
      continue
    if s not in regions and region_names:
      continue
    mask = images.to_model_mask(raw, size)
    reg = images.to_model_mask(regions[s], size) if region_names else None
    for value, name in zip(labels[1:], classes[1:]):
      inside = mask == value
      out[f"{name}_area"].append(float(inside.sum()))
      for r, rname in enumerate(region_names, start=1):
        out[f"{name}_area_{rname}"].append(float((inside & (reg == r)).sum()))
  return {k: np.array(v) for k, v in out.items()}


def parse_graph(text: str) -> dict[str, tuple[str, ...]]:
  """`"sex,age -> a,b; a -> b"` -> `{a: (sex, age), b: (sex, age, a)}` (children's parents).

  Every name left of an arrow is a parent of every name right of it.
  """
  parents: dict[str, list[str]] = collections.defaultdict(list)
  for statement in filter(None, (s.strip() for s in text.split(";"))):
    left, arrow, right = statement.partition("->")
    srcs = [n.strip() for n in left.split(",") if n.strip()]
    dsts = [n.strip() for n in right.split(",") if n.strip()]
    if not arrow or not srcs or not dsts:
      raise ValueError(f"--graph statement {statement!r}: expected 'parent, ... -> child, ...'"
                       f" (statements separated by ';').")
    for d in dsts:
      parents[d].extend(p for p in srcs if p not in parents[d])
  return {k: tuple(v) for k, v in parents.items()}


def declare(found: Inspection, graph: Mapping[str, tuple[str, ...]] | None = None,
            variables: Sequence[str] = ()) -> tuple[dict[str, dict], dict[str, tuple]]:
  """`(variables, categories)`: the SCM declaration of the graph's variables and the text
  columns' category orders.

  Args:
    found: `inspect_folder`'s result.
    graph: `{child: parents}` (`parse_graph`); None: the table's variables are roots and
      every area (regional ones when the folder has regions) a child of all of them.
    variables: extra variables without parents (roots) to declare.
  """
  table = {c: s for c, s in found.columns.items() if s["kind"] != "identifier"}
  if graph is None:
    roots = tuple(table)
    areas = [a for a in found.areas if (a.count("_area_") > 0) == bool(found.regions)]
    graph = {a: roots for a in areas}
  names = list(dict.fromkeys([*variables, *(p for ps in graph.values() for p in ps), *graph]))
  known = [*table, *found.areas]
  absent = [n for n in names if n not in known]
  if absent:
    raise ValueError(f"The graph names {absent}, which are neither columns of the table nor "
                     f"areas of the classes; available: {known}.")
  out, categories = {}, {}
  for n in names:
    parents = tuple(graph.get(n, ()))
    if n in found.areas:
      v = found.areas[n]
      norm = "log1p_standard" if np.any(v <= 0) else "log_standard"
      out[n] = dict(type="continuous", parents=parents, norm=norm, mean=None, std=None)
      continue
    col = table[n]
    if col["kind"] == "text":
      cats = col["categories"]
      categories[n] = cats
      out[n] = (dict(type="binary", parents=parents) if len(cats) == 2 else
                dict(type="categorical", parents=parents, num_classes=len(cats)))
    elif col["kind"] == "binary":
      out[n] = dict(type="binary", parents=parents)
    else:
      out[n] = dict(type="continuous", parents=parents, norm="standard", mean=None, std=None)
  # The same checks the stages make (names, parents, cycles), with stand-in statistics.
  graph_lib.Graph.from_config(dict(variables={
      n: dict(v, mean=0.0, std=1.0) if v.get("norm") else v for n, v in out.items()}))
  return out, categories


def measured_statistics(found: Inspection, variables: Mapping[str, dict]) -> dict[str, dict]:
  """`{name: {norm, mean, std}}` of every continuous variable, over all examples."""
  columns = {**{c: s["values"] for c, s in found.columns.items() if "values" in s},
             **found.areas}
  return measured.statistics(dict(variables=variables), columns)


def _fmt(v) -> str:
  return repr(tuple(v)) if isinstance(v, (list, tuple)) else repr(v)


def config_file(found: Inspection, variables: Mapping[str, dict],
                categories: Mapping[str, tuple], intervenable: Sequence[str], *,
                image_size: int, name: str, command: str) -> str:
  """The text of a config file declaring the folder over configs/folder.py."""
  stats = measured_statistics(found, variables)
  eight_bit = all(d.endswith(("8-bit", "uint8")) for d in found.depths)
  lines = [f'"""{name}: the folder {found.root}, declared by the inspector.', "",
           f"  {command}", "Run:",
           f"  python -m segcft_jax.main --config=<this file>[:quick]", "",
           f"Found {found.counts['examples']} examples; image sizes "
           f"{dict(found.image_sizes)}; files {dict(found.depths)}.",
           "Measured on every example (the data stage measures the train split again):"]
  for n, s in stats.items():
    lines.append(f"  {n}: {s['norm']}, mean {s['mean']:.4f}, std {s['std']:.4f}")
  lines += ['"""', "", "from segcft_jax import config_files", "",
            'FOLDER = config_files.load_module(config_files.template("folder.py"))', "",
            "DATA = dict(",
            f"    directory={str(found.root.resolve())!r},",
            f"    image_size={image_size},",
            f"    classes={_fmt(found.classes)},",
            f"    labels={_fmt(found.labels)},",
            f"    regions={_fmt(found.regions)},",
            f"    categories={ {k: tuple(v) for k, v in categories.items()}!r},",
            f"    intensity_percentiles={'()' if eight_bit else '(0.5, 99.5)'},",
            ")", "# Means and stds None: measured on the train split by the data stage.",
            "VARIABLES = {"]
  for n, v in variables.items():
    fields = ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    lines.append(f"    {n!r}: dict({fields}),")
  lines += ["}", f"INTERVENABLE = {_fmt(intervenable)}", "", "",
            "def get_config(arg=None):",
            '  """The locked config of variant `arg` (configs/folder.py VARIANTS)."""',
            "  return FOLDER.make_config(arg, data=DATA, variables=VARIABLES,",
            f"                            intervenable=INTERVENABLE, name={name!r})", ""]
  return "\n".join(lines)


def report(found: Inspection, variables: Mapping[str, dict]) -> str:
  """A human-readable summary of `found` (the inspector's printout)."""
  out = [f"folder {found.root}",
         "  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in found.counts.items()),
         f"  image sizes {dict(found.image_sizes)}",
         f"  files {dict(found.depths)}",
         "  mask values (masks holding each): " + ", ".join(
             f"{v}={found.mask_labels[v]}"
             + (f" ({found.classes[found.labels.index(v)]})" if v in found.labels else " (?)")
             for v in sorted(found.mask_labels))]
  if found.regions:
    out.append(f"  region values {dict(sorted(found.region_labels.items()))} "
               f"(regions {found.regions})")
  out.append("  columns:")
  for c, s in found.columns.items():
    if "values" in s and s["values"].size:
      v = s["values"]
      out.append(f"    {c:<24} {s['kind']:<10} n {v.size}, mean {v.mean():.4g}, sd "
                 f"{v.std():.4g}, min {v.min():.4g}, max {v.max():.4g}, missing {s['missing']}")
    else:
      what = s["counts"] if s["kind"] == "text" else f"{len(s['categories'])} distinct values"
      out.append(f"    {c:<24} {s['kind']:<10} {what}, missing {s['missing']}"
                 + ("  (left out)" if s["kind"] == "identifier" else ""))
  out.append("  areas at the model resolution (pixels):")
  for a, v in found.areas.items():
    out.append(f"    {a:<24} mean {v.mean():.1f}, sd {v.std():.1f}, min {v.min():g}, "
               f"max {v.max():g}, zeros {int(np.sum(v == 0))}")
  stats = measured_statistics(found, variables)
  out.append("  normalisation of the continuous variables (measured):")
  for n, s in stats.items():
    out.append(f"    {n:<24} {s['norm']:<15} mean {s['mean']:.4f}, std {s['std']:.4f}")
  for p in found.problems[:10]:
    out.append(f"  problem: {p}")
  if len(found.problems) > 10:
    out.append(f"  ... and {len(found.problems) - 10} more problems")
  return "\n".join(out)


def default_intervenable(found: Inspection, variables: Mapping[str, dict]) -> tuple[str, ...]:
  """The area variables of the declaration (what a segmentor can measure)."""
  return tuple(n for n in variables if n in found.areas)
