"""TFDS builder of PadChest radiographs with CheXmask lung / heart masks (SPEC §2 padchest).

Obtaining the data (manual download; the builder never downloads)
-----------------------------------------------------------------
1. PadChest (Bustos et al., 2020) from BIMCV, https://bimcv.cipf.es/bimcv-projects/padchest/
   (registration and data-use agreement): the metadata table
   `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv` (or `.csv.gz`) and the 16-bit PNG
   images, distributed in numbered zip parts (the `ImageDir` column names the part of each
   image). A subset of the parts is fine: rows whose image is absent are left out (counted).
2. CheXmask (Gaggion et al., 2023) from PhysioNet,
   https://physionet.org/content/chexmask-cxr-segmentation-data/ : the PadChest table of the
   **OriginalResolution** folder, `Padchest.csv` (or `.csv.gz`). The *Preprocessed* tables are
   for 1024x1024 padded images and do not align with the PNGs.
3. Lay them out in one directory and pass it as `--config.data.manual_dir=DIR`:

     DIR/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv[.gz]  (config.data.metadata_csv)
     DIR/Padchest.csv[.gz]                                         (config.data.chexmask_csv)
     DIR/images/<ImageDir>/<ImageID>.png   or   DIR/images/<ImageID>.png   (images_dir)

What is built
-------------
Rows of the CheXmask table with `config.data.dice_column` (default `Dice RCA (Mean)`) >=
`min_dice_rca` (0.7) whose image is in the metadata (and, if `projections` is non-empty, of
those projections; default PA only) and on disk. Patients, not images, are split: the sorted
patient ids are permuted with `seed` and cut by `split_fractions`, so no patient is in two
splits (`max_images` > 0 keeps only the first patients of that order). Each example:

  image       uint8 [S, S, 1]: the PNG padded to a centred square with zeros, area-resized to
              S = image_size, intensities clipped to the image's `intensity_percentiles` and
              scaled to 0..255 (robust to 12/16-bit ranges and outliers).
  mask        uint8 [S, S]: 0 background, 1 left lung, 2 right lung, 3 heart (heart painted
              over the lungs; CheXmask's patient-side naming), decoded at the original size,
              padded like the image and nearest-resized.
  <organ>_area       float32: pixels of that label in `mask` (model resolution).
  <organ>_area_mm2   float32: pixels at the original resolution x spacing^2, from
              `SpatialResolution_DICOM` (mm / pixel); **-1 when the spacing is missing** (a third
              of the rows of one published PadChest subset) or the column is absent.
  pixel_spacing_mm   float32: mm per model pixel (spacing x padded side / S), or -1.
  age         float32 years: study date (`StudyDate_DICOM`, YYYYMMDD) minus the birth year
              (`PatientBirth`, year only, taken as 1 July: error <= 0.5 y).
  sex         int64: 0 = male ("M"), 1 = female ("F") (as causal-gen's MIMIC encoding).
  dice_rca    float32; image_id, patient_id (text); index (CheXmask data-row number).

Bad rows — an RLE that does not decode to Height x Width, an unreadable or size-mismatched
image, an empty organ mask, a missing or unparsable age / sex / size — are skipped, counted
by reason and logged (first few with file and row). A missing file, a missing column, or more
than `max_skip_fraction` bad rows stops the build with a message naming the file. After a
build, `build_report(builder)` (the builder's `info.metadata`) holds the counts: `filtered`
(rows left out by design), `skipped` (bad rows), `num_skipped`, `skipped_examples`, and the
images / patients per split. The CheXmask table is streamed once per split and its RLE strings
are never all held in memory; PNGs are used as stored (no photometric inversion).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import pathlib
import re

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segcft_jax.data import chexmask, images, splits
from segcft_jax.data.images import RowError

log = logging.getLogger(__name__)

SPLITS = splits.SPLITS
CLASS_NAMES = ("background", "left_lung", "right_lung", "heart")
ORGANS = CLASS_NAMES[1:]
AREAS = tuple(f"{o}_area" for o in ORGANS)
MODEL_KEYS = ("image", "mask", "sex", "age", *AREAS)
IMAGE_SIZES = (32, 64, 128, 192, 256)  # 32: smoke runs (the `quick` variant)

PADCHEST_WHERE = ("Obtain PadChest from BIMCV (https://bimcv.cipf.es/bimcv-projects/padchest/); "
                  "see the docstring of segcft_jax/data/padchest.py for the layout.")
CHEXMASK_WHERE = ("Obtain the OriginalResolution PadChest table of CheXmask from PhysioNet "
                  "(https://physionet.org/content/chexmask-cxr-segmentation-data/).")
META_REQUIRED = ("ImageID", "PatientID", "PatientBirth", "StudyDate_DICOM", "PatientSex_DICOM")
SPACING_COLUMN, DIR_COLUMN, PROJECTION_COLUMN = "SpatialResolution_DICOM", "ImageDir", "Projection"
SEX_CODES = {"M": 0, "F": 1}


@dataclasses.dataclass(kw_only=True)
class PadChestConfig(tfds.core.BuilderConfig):
  """What to build (encoded in the name) and where the manual download is (not in it)."""
  image_size: int = 64
  min_dice_rca: float = 0.7
  dice_column: str = "Dice RCA (Mean)"
  projections: tuple[str, ...] = ("PA",)
  split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
  intensity_percentiles: tuple[float, float] = (0.5, 99.5)
  max_images: int = 0
  max_skip_fraction: float = 0.05
  seed: int = 0
  manual_dir: str = ""
  metadata_csv: str = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
  chexmask_csv: str = "Padchest.csv"
  images_dir: str = "images"

  @classmethod
  def make(cls, **kw) -> "PadChestConfig":
    c = cls(name="tmp", **kw)
    fr = "-".join(f"{f:g}" for f in c.split_fractions)
    pc = "-".join(f"{p:g}" for p in c.intensity_percentiles)
    dice = re.sub(r"[^a-z0-9]+", "", c.dice_column.lower())
    name = (f"s{c.image_size}_{dice}{c.min_dice_rca:g}_{'-'.join(c.projections) or 'all'}"
            f"_f{fr}_p{pc}_seed{c.seed}" + (f"_max{c.max_images}" if c.max_images else ""))
    return dataclasses.replace(c, name=re.sub(r"[^A-Za-z0-9_.-]", "", name))


# The fields of PadChestConfig that come from config.data (not TFDS's own BuilderConfig fields).
_CONFIG_FIELDS = tuple(
    f.name for f in dataclasses.fields(PadChestConfig)
    if f.name not in {g.name for g in dataclasses.fields(tfds.core.BuilderConfig)})


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


class PadChest(tfds.core.GeneratorBasedBuilder):
  """PadChest radiographs with CheXmask left lung / right lung / heart masks, age and sex."""

  name = "padchest"
  VERSION = tfds.core.Version("1.0.0")
  # Builds are requested with `PadChestConfig.make(...)`; TFDS needs one registered config.
  BUILDER_CONFIGS = [PadChestConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    floats = ("age", "dice_rca", "pixel_spacing_mm", *AREAS, *(f"{a}_mm2" for a in AREAS))
    features = {
        "image": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8, encoding="zlib"),
        "mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8, encoding="zlib"),
        "sex": tfds.features.Scalar(dtype=np.int64),
        "index": tfds.features.Scalar(dtype=np.int64),
        "image_id": tfds.features.Text(), "patient_id": tfds.features.Text(),
        **{k: tfds.features.Scalar(dtype=np.float32) for k in floats}}
    return tfds.core.DatasetInfo(
        builder=self, description="PadChest + CheXmask (segcft-jax, SPEC §2 padchest).",
        features=tfds.features.FeaturesDict(features), metadata=tfds.core.MetadataDict())

  def download_and_prepare(self, **kwargs):
    """As TFDS's, but checks the manual download first (so a missing input fails before TFDS
    announces a build)."""
    if not self.is_prepared():
      self._inputs()
    return super().download_and_prepare(**kwargs)

  def _inputs(self) -> tuple[pathlib.Path, pathlib.Path]:
    """(CheXmask table, metadata table); sets the image directory. Raises ValueError /
    FileNotFoundError naming what is missing and where to get it."""
    cfg = self.builder_config
    if not cfg.manual_dir:
      raise ValueError("padchest is a manual download: set --config.data.manual_dir=DIR to "
                       "the directory holding the PadChest metadata CSV, the CheXmask table "
                       "and the images. " + PADCHEST_WHERE + " " + CHEXMASK_WHERE)
    if cfg.image_size not in IMAGE_SIZES:
      raise ValueError(f"config.data.image_size={cfg.image_size}; use one of {IMAGE_SIZES}.")
    root = pathlib.Path(cfg.manual_dir)
    self._images = root / cfg.images_dir
    masks_csv = chexmask.resolve_file(root, cfg.chexmask_csv, "CheXmask table", CHEXMASK_WHERE)
    meta_csv = chexmask.resolve_file(root, cfg.metadata_csv, "PadChest metadata table",
                                     PADCHEST_WHERE)
    if not self._images.is_dir():
      raise FileNotFoundError(f"PadChest image directory {self._images} not found. "
                              + PADCHEST_WHERE)
    return masks_csv, meta_csv

  def _split_generators(self, dl_manager):
    del dl_manager  # Manual download only (see the module docstring).
    cfg = self.builder_config
    masks_csv, meta_csv = self._inputs()
    self._skips = images.Skips("padchest", cfg.max_skip_fraction, noun="rows")
    self._report = report = dict(filtered=collections.Counter())
    rows = self._scan_masks(masks_csv)
    rows = self._join_metadata(meta_csv, rows)
    patients = collections.Counter(r["patient_id"] for r in rows.values())
    split_of = splits.split_groups(patients, cfg.split_fractions, cfg.seed, cfg.max_images)
    by_split = {s: {i: r for i, r in rows.items() if split_of.get(r["patient_id"]) == s}
                for s in SPLITS}
    report["filtered"]["max_images"] = sum(1 for r in rows.values()
                                           if r["patient_id"] not in split_of)
    report["patients"] = {s: sum(1 for v in split_of.values() if v == s) for s in SPLITS}
    self._skips.check(self._skips.total, report["scanned"], masks_csv)
    self.info.metadata.update(self._summary())
    return {s: self._generate_examples(masks_csv, by_split[s], s) for s in SPLITS}

  def _summary(self) -> dict:
    r = self._report
    return dict(filtered=dict(r["filtered"]), **self._skips.summary(), scanned=r["scanned"],
                patients=r.get("patients", {}), images=dict(r.get("images", {})))

  def _scan_masks(self, path: pathlib.Path) -> dict[int, dict]:
    """Data-row number -> {image_id, dice, height, width} of the rows passing the quality
    threshold (the RLE strings are not kept: they are re-read when generating)."""
    cfg, report, rows, seen = self.builder_config, self._report, {}, set()
    report["scanned"] = 0
    required = (chexmask.ID_COLUMN, cfg.dice_column, chexmask.HEIGHT_COLUMN,
                chexmask.WIDTH_COLUMN, *chexmask.ORGAN_COLUMNS.values())
    with chexmask.open_table(path, required) as reader:
      for i, row in enumerate(reader):
        report["scanned"] += 1
        try:
          dice = float(row[cfg.dice_column])
          h, w = int(float(row[chexmask.HEIGHT_COLUMN])), int(float(row[chexmask.WIDTH_COLUMN]))
        except (TypeError, ValueError):
          self._skips.skip(f"{path.name} data row {i}", RowError(
              "bad_value", f"unparsable {cfg.dice_column!r}/Height/Width "
                           f"({row[cfg.dice_column]!r}, {row[chexmask.HEIGHT_COLUMN]!r}, "
                           f"{row[chexmask.WIDTH_COLUMN]!r}); Height/Width are empty in the "
                           f"Preprocessed tables — use the OriginalResolution one"))
          continue
        image_id = row[chexmask.ID_COLUMN]
        if not dice >= cfg.min_dice_rca:
          report["filtered"]["low_dice_rca"] += 1
        elif image_id in seen:
          report["filtered"]["duplicate_image_id"] += 1
        else:
          seen.add(image_id)
          rows[i] = dict(image_id=image_id, dice=dice, height=h, width=w)
    if not rows:
      raise ValueError(f"No row of {path} has {cfg.dice_column} >= {cfg.min_dice_rca}.")
    return rows

  def _join_metadata(self, path: pathlib.Path, rows: dict[int, dict]) -> dict[int, dict]:
    """Adds patient, age, sex, spacing and the image path; drops rows that cannot have them."""
    cfg, report = self.builder_config, self._report
    wanted = {r["image_id"]: i for i, r in rows.items()}
    out = {}
    required = META_REQUIRED + ((PROJECTION_COLUMN,) if cfg.projections else ())
    with chexmask.open_table(path, required) as reader:
      for j, meta in enumerate(reader):
        i = wanted.pop(meta["ImageID"], None)
        if i is None:
          continue
        if cfg.projections and meta.get(PROJECTION_COLUMN) not in cfg.projections:
          report["filtered"]["projection"] += 1
          continue
        try:
          sex = SEX_CODES.get(meta["PatientSex_DICOM"])
          if sex is None:
            raise RowError("bad_sex", f"PatientSex_DICOM={meta['PatientSex_DICOM']!r}")
          age = age_years(meta["PatientBirth"], meta["StudyDate_DICOM"])
        except RowError as e:
          self._skips.skip(f"{path.name} data row {j} ({meta['ImageID']})", e)
          continue
        try:
          spacing = float(meta.get(SPACING_COLUMN) or "nan")
        except ValueError:
          spacing = float("nan")
        image = self._images / (meta.get(DIR_COLUMN) or "") / meta["ImageID"]
        if not image.is_file():
          image = self._images / meta["ImageID"]
        if not image.is_file():
          report["filtered"]["image_not_on_disk"] += 1
          continue
        out[i] = dict(rows[i], patient_id=meta["PatientID"], sex=sex, age=age, path=str(image),
                      spacing=spacing if spacing > 0 else -1.0)
    report["filtered"]["not_in_metadata"] += len(wanted)
    if not out:
      raise ValueError(f"None of the {len(rows)} CheXmask rows passing the quality threshold "
                       f"has metadata in {path}, the configured projection and an image under "
                       f"{self._images} (left out: {dict(report['filtered'])}).")
    return out

  def _example(self, row: dict, masks: dict[str, str]) -> dict:
    """One record from a joined row and its three RLE strings (RowError on bad data)."""
    cfg, h, w = self.builder_config, row["height"], row["width"]
    raw = images.read_png(pathlib.Path(row["path"]))
    if raw.shape != (h, w):
      raise RowError("size_mismatch", f"image {row['path']} is {raw.shape[0]}x{raw.shape[1]}, "
                     f"the CheXmask row says {h}x{w}")
    try:
      organs = {o: chexmask.decode_rle(masks[o], h, w) for o in ORGANS}
    except ValueError as e:
      raise RowError("bad_rle", str(e)) from None
    empty = [o for o, m in organs.items() if not m.any()]
    if empty:
      raise RowError("empty_mask", f"empty mask of {empty}")
    labels = chexmask.label_map(organs)
    mask = images.to_model_mask(labels, cfg.image_size)
    spacing = row["spacing"]
    image = images.to_model_image(raw, cfg.image_size, cfg.intensity_percentiles)
    record = dict(image=image[..., None],
                  mask=mask, sex=row["sex"], age=row["age"], dice_rca=row["dice"],
                  image_id=row["image_id"], patient_id=row["patient_id"],
                  pixel_spacing_mm=spacing * max(h, w) / cfg.image_size if spacing > 0 else -1.0)
    for label, area in enumerate(AREAS, start=1):
      record[area] = float(np.sum(mask == label))
      record[f"{area}_mm2"] = float(np.sum(labels == label)) * spacing ** 2 if spacing > 0 else -1.0
    return record

  def _generate_examples(self, path: pathlib.Path, rows: dict[int, dict], split: str):
    """Streams the CheXmask table once, yielding the rows of `split` (RLEs decoded here)."""
    skipped_before, written = self._skips.total, 0
    if rows:
      with chexmask.open_table(path) as reader:
        for i, line in enumerate(reader):
          if i not in rows:
            continue
          masks = {o: line[c] for o, c in chexmask.ORGAN_COLUMNS.items()}
          try:
            record = self._example(rows[i], masks)
          except RowError as e:
            self._skips.skip(f"{path.name} data row {i} ({rows[i]['image_id']})", e)
            continue
          written += 1
          yield i, dict(record, index=i)
    skipped = self._skips.total - skipped_before
    log.info("[padchest] %s: %d images written, %d bad rows skipped", split, written, skipped)
    self._skips.check(skipped, len(rows), f"{path} ({split} split)")
    self._report.setdefault("images", {})[split] = written
    self.info.metadata.update(self._summary())


def build_report(builder: PadChest) -> dict:
  """The build's row accounting (filtered / skipped counts, examples, split sizes)."""
  return dict(builder.info.metadata)


def make_builder(cfg: ml_collections.ConfigDict, data_dir: str) -> PadChest:
  """The builder for the `data` config section (fields as PadChestConfig's)."""
  kw = {k: tuple(cfg[k]) if isinstance(cfg[k], (list, tuple)) else cfg[k]
        for k in _CONFIG_FIELDS if k in cfg}
  return PadChest(config=PadChestConfig.make(**kw), data_dir=data_dir, file_format="array_record")
