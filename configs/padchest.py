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
`--config.a.b=value`.

Measured results: none on the real data yet (not available on the development machine).
Smoke check only (2-core CPU, 2026-11-23): `quick` on a generated 200-row fixture in the real
file formats (180 rows kept) runs data + segmentor in 42 s (data 0.7 s).
"""

import ml_collections

from segcft_jax.evaluation.config import evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config("padchest", arg, VARIANTS, stages=("data", "segmentor", "oracle"))
  variant = c.variant
  quick = variant == "quick"

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
      max_images=2000 if quick else 0,  # 0: all
      max_skip_fraction=0.05,  # more bad rows than this stops the build
      seed=0))

  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=100 if quick else 1000,
      widths=(8, 16) if quick else (8, 16, 32, 64),
      oracle_widths=(12, 24) if quick else (12, 24, 48, 96),
      batch_size=16,
      log_every=20 if quick else 50,
      eval_batch_size=32,
      optim=defaults.optim_config(lr=3e-3 if quick else 2e-3, warmup_steps=10 if quick else 50))
  c.evaluate = evaluate_config(quick)  # SPEC §4 suite (the evaluate stage)
  c.lock()
  return c
