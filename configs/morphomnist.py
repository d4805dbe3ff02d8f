"""morphomnist: Morpho-MNIST t10k digits (SPEC §2), split 8k/1k/1k, 32x32, every stage.

Run (2 CPU cores; reads ../shared/data/morphomnist, or config.data.source_dir, or
$SEGCFT_MORPHOMNIST_DIR; no downloads):
  python -m segcft_jax.main --config=configs/morphomnist.py
  python -m segcft_jax.main --config=configs/morphomnist.py:quick

Graph: thickness -> intensity, digit a root (causal-gen), plus stroke_area <- (thickness,
digit). Reg-CFT fine-tunes against the regressor of all three intervenable variables;
Seg-CFT against the segmentor's soft stroke area with the regressor for thickness and
intensity (`cft_seg.regressor_for`). The evaluation judges thickness and intensity with the
non-learned morphometric oracle (`segcft_jax/evaluation/morphometry.py`), the stroke area
with the oracle segmentor.

Expected result (real images, the first command, 23.7 min on a 2-core AMD EPYC): oracle MAPE
on 64 test examples, thickness / intensity / stroke area, No-CFT 12.16 / 2.50 / 10.37,
Reg-CFT 13.47 / 5.94 / 12.34, Seg-CFT 12.20 / 4.01 / 6.07 %.

Variants (the argument after the colon): `default` (the 8k/1k/1k split, the reference HVAE)
and `quick` (a 512/64/64 subset of the same permutation, tiny networks and schedules; smoke
runs). Override any field with `--config.a.b=value`; `--config.seed=N` moves every stage's
seed (`SEED_OFFSETS` in segcft_jax/train/defaults.py).
"""

import ml_collections

from segcft_jax.data import morphomnist
from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")
CFT_STAGES = ("cft_reg", "cft_seg")
STAGES = ("data", "segmentor", "oracle", "regressor", "pgm", "hvae", *CFT_STAGES, "evaluate")
INTERVENABLE = ("thickness", "intensity", "stroke_area")
# log stroke area (pixels of the 0.5-max mask at 32x32): mean / std on the default train split.
_LOG_STROKE_AREA = (4.5016, 0.3962)

# `quick`: a 512/64/64 subset of the same permutation, tiny models and schedules (tests).
QUICK = {
    **defaults.under("data", {"num_train": 512, "num_validation": 64, "num_test": 64}),
    **defaults.segmentor_quick(40), **defaults.regressor_quick(),
    **defaults.under(("segmentor", "oracle", "regressor"), {"batch_size": 16,
                                                             "eval_batch_size": 32}),
    **defaults.under("pgm", {**defaults.schedule(100), "log_every": 50}),
    **defaults.under("hvae", {**defaults.schedule(30), "batch_size": 16, "eval_batch_size": 32,
                              "log_every": 10, "optim.warmup_steps": 5}),
    # The reference layout with one block per resolution and narrow widths.
    "hvae.model": ml_collections.ConfigDict(dict(
        preset="morphomnist", widths=(4, 8, 8, 16, 16), enc_arch="32b1d2,16b1d2,8b1d2,4b1d4,1b1",
        dec_arch="1b1,4b1,8b1,16b1,32b1", z_dim=4, compute_dtype="float32")),
    **defaults.under(CFT_STAGES, {**defaults.schedule(4), "batch_size": 16,
                                  "eval_batch_size": 32, "log_every": 2,
                                  "optim.warmup_steps": 1}),
    **EVALUATE_QUICK, "evaluate.num_examples": 16, "evaluate.composition_examples": 16,
}


# The 25-minute CPU budget of the main job (2 cores): a reference-HVAE step of 32 takes
# ~0.6 s and a CFT step ~1.1 s after a ~90 s compile; 1,200 HVAE and 150 CFT steps took
# 27.3 min in all (docs/experiments.md).
HVAE_STEPS = 1000
CFT_STEPS = 100


def scm() -> ml_collections.ConfigDict:
  """causal-gen's Morpho-MNIST graph (§3.2: thickness -> intensity; digit a root) plus the
  stroke area, Seg-CFT's structure variable, a child of thickness and digit.

  The stroke area is the pixel count of the mask: a thicker pen covers more pixels (r = 0.74
  on the train split) and the digit sets the stroke length (a "1" averages 52 px, a "0" 120);
  the intensity does not move it (the mask threshold is relative to the image's maximum).
  Continuous parents scaled to [-1, 1] with the fixed train ranges of §2.2, the area by its
  log mean / std.
  """
  t_low, t_high = morphomnist.THICKNESS_RANGE
  i_low, i_high = morphomnist.INTENSITY_RANGE
  variables = {
      "thickness": dict(type="continuous", parents=(), norm="range", low=t_low, high=t_high),
      "intensity": dict(type="continuous", parents=("thickness",), norm="range", low=i_low,
                        high=i_high),
      "digit": dict(type="categorical", parents=(), num_classes=10),
      "stroke_area": dict(type="continuous", parents=("thickness", "digit"),
                          norm="log_standard", mean=_LOG_STROKE_AREA[0],
                          std=_LOG_STROKE_AREA[1]),
  }
  return ml_collections.ConfigDict(dict(variables=variables, intervenable=INTERVENABLE))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config("morphomnist", arg, VARIANTS, stages=STAGES)
  # source_dir "": $SEGCFT_MORPHOMNIST_DIR, else <repo>/../shared/data/morphomnist.
  c.data = ml_collections.ConfigDict(dict(
      name="morphomnist", data_dir="", source_dir="", seed=None,
      image_size=32,  # fixed: the 28x28 digits padded by 2 px
      num_train=8000, num_validation=1000, num_test=1000))
  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=600, widths=(8, 16, 32), oracle_widths=(12, 24, 48), batch_size=32,
      log_every=50, eval_batch_size=100)
  c.scm = scm()
  # Reg-CFT's predictor of every intervenable variable (causal-gen's setting).
  c.regressor = defaults.regressor_section(INTERVENABLE)
  c.pgm = defaults.pgm_section()
  # The reference Morpho-MNIST HVAE (conditional prior, digit channels [2, 12) dropped out),
  # its context one column wider for the stroke area.
  c.hvae = defaults.hvae_section(parents=("thickness", "intensity", "digit", "stroke_area"),
                                 num_steps=HVAE_STEPS)
  c.hvae.model = ml_collections.ConfigDict(dict(preset="morphomnist", compute_dtype="float32"))
  # Reg-CFT: the regressor for all three. Seg-CFT: the segmentor's soft stroke area, and the
  # regressor for thickness and intensity, which no soft area measures (a hybrid).
  c.cft_reg = defaults.cft_section(num_steps=CFT_STEPS)
  c.cft_seg = defaults.cft_section(num_steps=CFT_STEPS, regressor_for=("thickness", "intensity"))
  # Thickness and intensity are judged by the non-learned oracle (evaluation.morphometry).
  c.evaluate = evaluate_config(area_error="mape", morphometric=("thickness", "intensity"))
  # No dilation of the localisation target: a stroke is 2-3 px wide, and dilated by 2 px (the
  # phantoms') or 1 px it covered nearly every pixel a counterfactual changes (outside share
  # <= 0.2 % for every method; docs/experiments.md).
  c.evaluate.dilation = 0
  return defaults.finish(c, QUICK if c.variant == "quick" else None)

