"""morphomnist: Morpho-MNIST t10k digits (SPEC §2), split 8k/1k/1k, 32x32.

Run (2 CPU cores; reads ../shared/data/morphomnist, or config.data.source_dir, or
$SEGCFT_MORPHOMNIST_DIR; no downloads):
  python -m segcft_jax.main --config=configs/morphomnist.py
  python -m segcft_jax.main --config=configs/morphomnist.py:quick --stages=data,segmentor

Variants (the argument after the colon): `default` (the 8k/1k/1k split) and `quick` (a
2000/200/200 subset of the same permutation and a short schedule; smoke runs). Override any
field with `--config.a.b=value`; `--config.seed=N` moves every stage's seed (`SEED_OFFSETS` in
segcft_jax/train/defaults.py).
"""

import ml_collections

from segcft_jax.data import morphomnist
from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")

# `quick`: a 2000/200/200 subset of the same permutation, short schedules.
QUICK = {
    **defaults.under("data", {"num_train": 2000, "num_validation": 200, "num_test": 200}),
    **defaults.segmentor_quick(80), **defaults.regressor_quick(), **EVALUATE_QUICK,
}


def scm() -> ml_collections.ConfigDict:
  """causal-gen's Morpho-MNIST graph (§3.2): thickness -> intensity; digit a root.

  Continuous parents scaled to [-1, 1] with the fixed train ranges of §2.2; the digit is an
  independent root.
  """
  t_low, t_high = morphomnist.THICKNESS_RANGE
  i_low, i_high = morphomnist.INTENSITY_RANGE
  variables = {
      "thickness": dict(type="continuous", parents=(), norm="range", low=t_low, high=t_high),
      "intensity": dict(type="continuous", parents=("thickness",), norm="range", low=i_low,
                        high=i_high),
      "digit": dict(type="categorical", parents=(), num_classes=10),
  }
  return ml_collections.ConfigDict(dict(variables=variables,
                                        intervenable=("thickness", "intensity")))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config("morphomnist", arg, VARIANTS, stages=("data", "segmentor", "oracle"))
  # source_dir "": $SEGCFT_MORPHOMNIST_DIR, else <repo>/../shared/data/morphomnist.
  c.data = ml_collections.ConfigDict(dict(
      name="morphomnist", data_dir="", source_dir="", seed=None, num_train=8000,
      num_validation=1000, num_test=1000))
  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=600, widths=(8, 16, 32), oracle_widths=(12, 24, 48), batch_size=32,
      log_every=50, eval_batch_size=100)
  c.scm = scm()
  # Reg-CFT's predictor of the continuous parents (the digit is categorical).
  c.regressor = defaults.regressor_section(("thickness", "intensity"))
  c.evaluate = evaluate_config(area_error="mae")  # SPEC §4 suite (the evaluate stage)
  return defaults.finish(c, QUICK if c.variant == "quick" else None)

