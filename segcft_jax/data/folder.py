"""TFDS builder of a user's own images, masks and variables table (`config.data.name="folder"`).

Layout, under `config.data.directory`:

  images/<stem>.png | .npy | .dcm | .nii[.gz]   one 2-D grey image per example (PNG 8- or
                                               16-bit; DICOM and NIfTI need the `medical` extra)
  masks/<stem>.png | .npy                      its label map, values `config.data.labels`
  regions/<stem>.png | .npy                    optional: region map, 0 outside, 1..R the
                                               regions `config.data.regions` (positional setting)
  variables.csv                                one row per example: `stem`, the variables
                                               (`config.data.columns`), optional `split`
                                               (train / validation / test) and `group` (patient)

What is built: every example with an image, a mask (and a region map) and a row whose values
parse, each

  image     uint8 [S, S, 1]: zero-padded to a centred square, area-resized to S = image_size,
            intensities mapped by `intensity_percentiles` (`images.to_model_image`; `()` keeps
            8-bit values as stored).
  mask      uint8 [S, S]: class indices (label `labels[k]` -> k), padded, nearest-resized.
  regions   uint8 [S, S] (with regions): region labels, padded, nearest-resized.
  <class>_area            float32: pixels of class k in `mask` for every class but the first
                          (the background), counted after resizing.
  <class>_area_<region>   float32 (with regions): those pixels inside region r.
  <column>  float32 for a numeric column; int64 category index (its position in
            `config.data.categories.<column>`) for a text column.
  stem, group (text), index (the table's line number).

Splits: the `split` column when the table has one, else a seeded permutation of the sorted
groups cut by `split_fractions` (`splits.split_groups`; no group in two splits). Bad examples
(a file or row missing, an unparsable value, a mask label not in the config, a mask of another
size than its image) are skipped, counted and named; more than `max_skip_fraction` of them
stops the build. Images of mixed sizes are resized and their sizes reported; a colour image
stops the build. TFDS writes into a temporary directory and moves it into place when the build
succeeds, so a failed build leaves every earlier build as it was. A build is named by its
config: after editing the files, build into a new `data_dir` (or delete the old build).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import pathlib
from typing import Mapping

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segcft_jax.data import folder_table, images, splits
from segcft_jax.data.images import RowError

log = logging.getLogger(__name__)

SPLITS = splits.SPLITS


@dataclasses.dataclass(kw_only=True)
class FolderConfig(tfds.core.BuilderConfig):
  """What to build from which folder; the name is a digest of every field."""
  directory: str = ""
  image_size: int = 64
  classes: tuple[str, ...] = ()
  labels: tuple[int, ...] = ()
  regions: tuple[str, ...] = ()
  columns: tuple[str, ...] = ()
  categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
  table: str = "variables.csv"
  stem_column: str = "stem"
  split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
  intensity_percentiles: tuple[float, ...] = (0.5, 99.5)
  max_skip_fraction: float = 0.05
  seed: int = 0

  @classmethod
  def make(cls, **kw) -> "FolderConfig":
    c = cls(name="tmp", **kw)
    fields = {f: getattr(c, f) for f in _CONFIG_FIELDS}
    digest = hashlib.sha1(repr(sorted(fields.items())).encode()).hexdigest()[:12]
    return dataclasses.replace(c, name=f"s{c.image_size}_{digest}")

  def label_values(self) -> tuple[int, ...]:
    return tuple(self.labels) or tuple(range(len(self.classes)))


_CONFIG_FIELDS = tuple(
    f.name for f in dataclasses.fields(FolderConfig)
    if f.name not in {g.name for g in dataclasses.fields(tfds.core.BuilderConfig)})


def area_names(classes, regions) -> tuple[str, ...]:
  """`<class>_area` of every class but the background, then `<class>_area_<region>`."""
  areas = tuple(f"{c}_area" for c in classes[1:])
  return areas + tuple(f"{a}_{r}" for a in areas for r in regions)


def _check_config(cfg: FolderConfig) -> None:
  if not cfg.directory:
    raise ValueError("The folder dataset needs its directory: set --config.data.directory=DIR "
                     f"(layout: {folder_table.LAYOUT}).")
  if len(cfg.classes) < 2:
    raise ValueError(f"config.data.classes={cfg.classes}: name the background and at least one "
                     f"structure, e.g. ('background', 'lung').")
  if len(cfg.label_values()) != len(cfg.classes) or len(set(cfg.label_values())) != len(
      cfg.classes):
    raise ValueError(f"config.data.labels={cfg.labels}: one distinct mask value per class of "
                     f"config.data.classes={cfg.classes} (or () for 0, 1, 2, ...).")
  clash = set(area_names(cfg.classes, cfg.regions)) & set(cfg.columns)
  if clash:
    raise ValueError(f"Columns {sorted(clash)} of the table are computed from the masks; "
                     f"drop them from the table's columns (config.data.columns).")
  splits.check_fractions(cfg.split_fractions)


class Folder(tfds.core.GeneratorBasedBuilder):
  """A user's images, label maps and variables table (module docstring)."""

  name = "folder"
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [FolderConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.image_size
    zlib = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding="zlib")
    categorical = dict(cfg.categories)
    features = {"image": zlib((s, s, 1)), "mask": zlib((s, s)),
                "stem": tfds.features.Text(), "group": tfds.features.Text(),
                "index": tfds.features.Scalar(dtype=np.int64)}
    if cfg.regions:
      features["regions"] = zlib((s, s))
    for c in cfg.columns:
      features[c] = tfds.features.Scalar(dtype=np.int64 if c in categorical else np.float32)
    for a in area_names(cfg.classes, cfg.regions):
      features[a] = tfds.features.Scalar(dtype=np.float32)
    return tfds.core.DatasetInfo(
        builder=self, description="A folder of images, masks and variables (segcft-jax).",
        features=tfds.features.FeaturesDict(features), metadata=tfds.core.MetadataDict())

  def download_and_prepare(self, **kwargs):
    """As TFDS's, but checks the config and the folder before TFDS announces a build."""
    if not self.is_prepared():
      _check_config(self.builder_config)
      root = pathlib.Path(self.builder_config.directory)
      if not root.is_dir():
        raise FileNotFoundError(f"config.data.directory={root} does not exist (layout: "
                                f"{folder_table.LAYOUT}).")
    return super().download_and_prepare(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    cfg = self.builder_config
    root = pathlib.Path(cfg.directory)
    self._skips = skips = images.Skips(
        "folder", cfg.max_skip_fraction,
        hint=" Fix the files named, or raise the limit to skip them.")
    self._report = report = dict(image_sizes=collections.Counter(),
                                 depths=collections.Counter())
    rows = folder_table.read_rows(root, cfg.table, cfg.stem_column, cfg.columns,
                                  dict(cfg.categories), bool(cfg.regions), skips.skip)
    report["candidates"] = len(rows) + skips.total
    skips.check(skips.total, report["candidates"], str(root))
    if not rows:
      raise ValueError(f"No usable example in {root} (skipped: {dict(skips.counts)}).")
    if all(r.split is not None for r in rows):
      split_of = {r.stem: r.split for r in rows}
    else:
      groups = collections.Counter(r.group for r in rows)
      group_split = splits.split_groups(groups, cfg.split_fractions, cfg.seed)
      split_of = {r.stem: group_split[r.group] for r in rows}
    by_split = {s: [r for r in rows if split_of[r.stem] == s] for s in SPLITS}
    empty = [s for s, rs in by_split.items() if not rs]
    if empty:
      raise ValueError(
          f"The {' and '.join(empty)} split of {root} would be empty "
          f"({ {s: len(rs) for s, rs in by_split.items()} } examples). "
          + ("Give some rows of the table's `split` column that value."
             if rows[0].split is not None else
             "Add examples or groups, or change config.data.split_fractions."))
    self.info.metadata.update(self._summary())
    return {s: self._generate_examples(by_split[s], s) for s in SPLITS}

  def _summary(self) -> dict:
    r = self._report
    return dict(**self._skips.summary(), candidates=r["candidates"],
                image_sizes=dict(r["image_sizes"]), depths=dict(r["depths"]),
                images=dict(r.get("images", {})))

  def _label_map(self, path: pathlib.Path, values: tuple[int, ...], what: str,
                 shape: tuple[int, int]) -> np.ndarray:
    """The map at `path` as indices into `values` (its allowed label values)."""
    raw, _ = images.read_array(path)
    if raw.shape != shape:
      raise RowError("size_mismatch", f"{what} {path.name} is {raw.shape[0]}x{raw.shape[1]}, "
                                      f"its image {shape[0]}x{shape[1]}")
    if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw)):
      raise RowError("bad_labels", f"{what} {path.name} holds non-integer values; store "
                                   f"integer labels")
    found = np.unique(raw).astype(np.int64)
    unknown = sorted(set(found.tolist()) - set(values))
    if unknown:
      field = "labels" if what == "mask" else "regions"
      raise RowError("bad_labels", f"{what} {path.name} has values {unknown} not in "
                                   f"{tuple(values)} (config.data.{field}); add them to the "
                                   f"config or fix the {what}")
    lookup = np.zeros(max(max(values), int(found.max())) + 1, np.uint8)
    lookup[list(values)] = np.arange(len(values))
    return lookup[raw.astype(np.int64)]

  def _example(self, row: folder_table.Row) -> dict:
    """One record of `row` (RowError on bad data)."""
    cfg, s = self.builder_config, self.builder_config.image_size
    raw, depth = images.read_array(row.image)
    mask = images.to_model_mask(self._label_map(row.mask, cfg.label_values(), "mask",
                                                raw.shape), s)
    record = dict(image=images.to_model_image(raw, s, cfg.intensity_percentiles)[..., None],
                  mask=mask, stem=row.stem, group=row.group, **row.values)
    for k, c in enumerate(cfg.classes[1:], start=1):
      record[f"{c}_area"] = float(np.sum(mask == k))
    if cfg.regions:
      regions = images.to_model_mask(self._label_map(
          row.regions, tuple(range(len(cfg.regions) + 1)), "region map", raw.shape), s)
      record["regions"] = regions
      for k, c in enumerate(cfg.classes[1:], start=1):
        for r, name in enumerate(cfg.regions, start=1):
          record[f"{c}_area_{name}"] = float(np.sum((mask == k) & (regions == r)))
    self._report["image_sizes"][f"{raw.shape[0]}x{raw.shape[1]}"] += 1
    self._report["depths"][f"{images.suffix(row.image)} {depth}"] += 1
    return record

  def _generate_examples(self, rows: list[folder_table.Row], split: str):
    skipped_before, written = self._skips.total, 0
    for row in rows:
      try:
        record = self._example(row)
      except RowError as e:
        self._skips.skip(f"{row.image.name} (table line {row.line})", e)
        continue
      except images.ChannelError as e:
        raise ValueError(f"{e} Every image of a folder dataset must be grey (one channel).") \
            from None
      written += 1
      yield row.stem, dict(record, index=row.line)
    skipped = self._skips.total - skipped_before
    log.info("[folder] %s: %d examples written, %d bad ones skipped", split, written, skipped)
    self._skips.check(skipped, len(rows), f"the {split} split")
    if not written:
      raise ValueError(f"Every example of the {split} split was bad "
                       f"({self._skips.examples[:3]}).")
    self._report.setdefault("images", {})[split] = written
    self.info.metadata.update(self._summary())


def build_report(builder: Folder) -> dict:
  """The build's accounting: skipped counts and examples, image sizes and depths found."""
  return dict(builder.info.metadata)


def _categories(cfg: ml_collections.ConfigDict) -> tuple[tuple[str, tuple[str, ...]], ...]:
  cats = cfg.get("categories") or {}
  return tuple(sorted((k, tuple(str(x) for x in v)) for k, v in dict(cats).items()))


def make_builder(cfg: ml_collections.ConfigDict, data_dir: str) -> Folder:
  """The builder for the `data` config section (fields as FolderConfig's)."""
  kw = {k: tuple(cfg[k]) if isinstance(cfg[k], (list, tuple)) else cfg[k]
        for k in _CONFIG_FIELDS if k in cfg and k != "categories"}
  if kw.get("directory"):
    kw["directory"] = str(pathlib.Path(kw["directory"]).expanduser().resolve())
  return Folder(config=FolderConfig.make(**kw, categories=_categories(cfg)), data_dir=data_dir,
                file_format="array_record")


def describe(cfg: ml_collections.ConfigDict) -> Mapping[str, tuple[str, ...]]:
  """The dataset's class names, model inputs and region names, from its config section."""
  classes, regions = tuple(cfg.classes), tuple(cfg.get("regions") or ())
  keys = ("image", "mask", *(("regions",) if regions else ()), *cfg.columns,
          *area_names(classes, regions))
  return dict(class_names=classes, model_keys=keys, region_names=regions)
