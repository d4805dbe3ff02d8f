"""padchest: PadChest radiographs with CheXmask lung / heart masks (SPEC §2), manual download.

Needs the PadChest metadata table and PNGs (BIMCV) and CheXmask's OriginalResolution PadChest
table (PhysioNet) in one directory — layout and sources in the docstring of
`segcft_jax/data/padchest.py`. Run (2 CPU cores):
  python -m segcft_jax.main --config=configs/padchest.py --config.data.manual_dir=DIR
  python -m segcft_jax.main --config=configs/padchest.py:quick --config.data.manual_dir=DIR \
      --stages=data,segmentor
Without `manual_dir` the data stage stops and says where to get the files.

Variants (the argument after the colon): `default` (every image passing the filters, 64x64;
`--config.data.image_size=128|192|256` for more) and `quick` (the first 2000 images of the
patient permutation, a short schedule; smoke runs). Override any field with
`--config.a.b=value`; `--config.seed=N` moves every stage's seed (`SEED_OFFSETS` in
segcft_jax/train/defaults.py).
"""

import ml_collections

from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")

# `quick`: the first 2000 images of the patient permutation, short schedules.
QUICK = {"data.max_images": 2000, **defaults.segmentor_quick(100), **EVALUATE_QUICK}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config("padchest", arg, VARIANTS, stages=("data", "segmentor", "oracle"))
  c.data = ml_collections.ConfigDict(dict(
      name="padchest", data_dir="",
      manual_dir="",  # Required: the directory of the manual download.
      metadata_csv="PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",  # or .csv.gz
      chexmask_csv="Padchest.csv",  # CheXmask OriginalResolution table (or .csv.gz)
      images_dir="images",  # under manual_dir; <ImageDir>/<ImageID> or flat <ImageID>
      image_size=64,  # 64, 128, 192 or 256
      min_dice_rca=0.7, dice_column="Dice RCA (Mean)",
      projections=("PA",),  # () keeps every projection
      split_fractions=(0.8, 0.1, 0.1),  # by patient
      intensity_percentiles=(0.5, 99.5),
      max_images=0,  # 0: all
      max_skip_fraction=0.05,  # more bad rows than this stops the build
      seed=None))
  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=1000, widths=(8, 16, 32, 64), oracle_widths=(12, 24, 48, 96), batch_size=16,
      log_every=50, eval_batch_size=32)
  c.evaluate = evaluate_config()  # SPEC §4 suite (the evaluate stage)
  return defaults.finish(c, QUICK if c.variant == "quick" else None)
