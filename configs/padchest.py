"""padchest: PadChest radiographs with CheXmask lung / heart masks (SPEC §2), every stage.

Needs the PadChest metadata table and PNGs (BIMCV) and CheXmask's OriginalResolution PadChest
table (PhysioNet) in one directory — layout and sources in the docstring of
`segcft_jax/data/padchest.py`. Run:
  python -m segcft_jax.main --config=configs/padchest.py --config.data.manual_dir=DIR
  python -m segcft_jax.main --config=configs/padchest.py:quick --config.data.manual_dir=DIR
  python -m segcft_jax.main --config=configs/padchest.py:paper --config.data.manual_dir=DIR
Without `manual_dir` the data stage stops and says where to get the files.

Graph: the synth_chest graph (sex, age roots; left lung, right lung and heart areas each a
child of both), age scaled from [0, 120] years (the builder's accepted range). The areas'
log mean / std are measured on the train split by the data stage (`scm/measured.py`), so they
follow the image size and the masks. Reg-CFT fine-tunes against the regressor of the three
areas, Seg-CFT against the segmentor's soft areas; the evaluation judges every method with the
oracle segmentor. Areas are pixels at the model resolution (the dataset also keeps mm² where
PadChest gives the pixel spacing: `<organ>_area_mm2`).

Variants (the argument after the colon):
  default  every image passing the filters, 64x64, the CPU-sized synth_chest recipe
           (`--config.data.image_size=128|192|256` for more).
  quick    the first 2000 images of the patient permutation at 32x32, tiny networks and
           short schedules (smoke runs; the tests run it on fixture files).
  paper    192x192 with causal-gen's chest HVAE (configs/chest192.py; 7.97 M parameters),
           batch 16, accelerator-length schedules. Not meant for CPU: one HVAE step takes
           seconds there (`python benchmarks/steps.py --config=chest192 --only=train`).
Override any field with `--config.a.b=value`; `--config.seed=N` moves every stage's seed
(`SEED_OFFSETS` in segcft_jax/train/defaults.py).

Not run here: the data are not on this machine. No number in this file is a PadChest result.
"""

import os

import ml_collections

from segcft_jax import config_files
from segcft_jax.data import padchest
from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick", "paper")
CFT_STAGES = ("cft_reg", "cft_seg")
STAGES = ("data", "segmentor", "oracle", "regressor", "pgm", "hvae", *CFT_STAGES, "evaluate")
AGE_RANGE = (0.0, 120.0)  # padchest.age_years keeps ages in [0, 120]

# `quick`: the first 2000 images of the patient permutation at 32x32 with the phantom
# recipe's tiny networks and schedules (its `quick` block without the phantom's split sizes).
QUICK = {**{k: v for k, v in defaults.phantom_quick(CFT_STAGES).items()
            if not k.startswith("data.num_")},
         "data.max_images": 2000, **EVALUATE_QUICK}

# `paper`: 192x192, the reference chest HVAE and its hyperparameters (AdamW lr 1e-3, betas
# (0.9, 0.9), weight decay 0.1, EMA 0.999, batch 16). The step counts are this project's
# choice for one accelerator (about 20 passes over ~80k PA images for the HVAE), not the
# paper's, which does not state them.
_PAPER_BATCHES = {"batch_size": 16, "eval_batch_size": 32}
PAPER = {
    "data.image_size": 192,
    **defaults.under(("segmentor", "oracle"), {**defaults.schedule(20_000, 1000),
                                               "batch_size": 32, "log_every": 200}),
    **defaults.under("regressor", {**defaults.schedule(20_000, 1000), "log_every": 200}),
    "hvae.model": ml_collections.ConfigDict(dict(preset="chest192", compute_dtype="float32")),
    **defaults.under("hvae", {**defaults.schedule(100_000, 2000), **_PAPER_BATCHES,
                              "log_every": 500, "ema_rate": 0.999, "optim.lr": 1e-3,
                              "optim.weight_decay": 0.1}),
    **defaults.under(CFT_STAGES, {**defaults.schedule(5_000, 500), **_PAPER_BATCHES,
                                  "log_every": 100}),
}


def _chest():
  """configs/synth_chest.py, whose graph this dataset shares."""
  return config_files.load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "synth_chest.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config("padchest", arg, VARIANTS, stages=STAGES)
  c.data = ml_collections.ConfigDict(dict(
      name="padchest", data_dir="",
      manual_dir="",  # Required: the directory of the manual download.
      metadata_csv="PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",  # or .csv.gz
      chexmask_csv="Padchest.csv",  # CheXmask OriginalResolution table (or .csv.gz)
      images_dir="images",  # under manual_dir; <ImageDir>/<ImageID> or flat <ImageID>
      image_size=64,  # 32 (smoke runs), 64, 128, 192 or 256
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
  c.scm = _chest().scm(c.data.image_size, measured=True, age_range=AGE_RANGE)
  # Reg-CFT's predictor of the three areas, from the whole image.
  c.regressor = defaults.regressor_section(padchest.AREAS)
  c.pgm = defaults.pgm_section()
  # The synth_chest recipe's 64x64 HVAE and schedule (`paper`: the reference chest192).
  c.hvae = defaults.hvae_section(parents=("sex", "age", *padchest.AREAS), num_steps=1000)
  for stage in CFT_STAGES:
    c[stage] = defaults.cft_section()
  c.evaluate = evaluate_config()  # SPEC §4 suite (the evaluate stage)
  return defaults.finish(c, {"quick": QUICK, "paper": PAPER}.get(c.variant))
