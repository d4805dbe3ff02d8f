"""synth_chest: the procedural chest-radiograph phantom (SPEC §2), the default main job.

Run (2 CPU cores, no downloads; synthetic data):
  python -m segcft_jax.main --config=configs/synth_chest.py
  python -m segcft_jax.main --config=configs/synth_chest.py:quick --stages=data,segmentor,oracle

Variants (the argument after the colon): `default` (CPU-sized main job, 64x64) and `quick`
(32x32, tiny; used by tests and smoke runs). Override any field with `--config.a.b=value`;
`--config.seed=N` moves every stage's seed (`SEED_OFFSETS` in segcft_jax/train/defaults.py).

Expected result (synthetic data, the first command): oracle MAPE of the intervened area, mean
of left lung / right lung / heart on 64 test examples, No-CFT 20.5, Reg-CFT 6.6, Seg-CFT 4.0 %.
"""

import math

import ml_collections

from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")
CFT_STAGES = ("cft_reg", "cft_seg")
STAGES = ("data", "segmentor", "oracle", "regressor", "pgm", "hvae", *CFT_STAGES, "evaluate")

# log-area mean/std of each organ on the default 64x64 train split (measured on the built
# dataset); areas scale with S^2, so the log-mean shifts by 2 log(S / 64) at other sizes.
_LOG_AREA_64 = {"left_lung_area": (5.5917, 0.2506), "right_lung_area": (5.9357, 0.2512),
                "heart_area": (5.3939, 0.2529)}
AREAS = tuple(_LOG_AREA_64)


def scm(image_size: int, measured: bool = False,
        age_range: tuple[float, float] = (18.0, 90.0)) -> ml_collections.ConfigDict:
  """The causal graph: sex, age roots; each organ area a child of (sex, age).

  Args:
    image_size: the image side in pixels (the area statistics scale with it).
    measured: leave the areas' log mean / std to the data stage, which measures them on the
      train split (`segcft_jax/scm/measured.py`; a real dataset's are unknown beforehand).
    age_range: the support of age in years (scaled to [-1, 1]).
  """
  shift = 2.0 * math.log(image_size / 64)
  low, high = age_range
  variables = {
      "sex": dict(type="binary", parents=()),
      "age": dict(type="continuous", parents=(), norm="range", low=low, high=high),
  }
  for name, (mean, std) in _LOG_AREA_64.items():
    stats = dict(mean=None, std=None) if measured else dict(mean=mean + shift, std=std)
    variables[name] = dict(type="continuous", parents=("sex", "age"), norm="log_standard",
                           **stats)
  return ml_collections.ConfigDict(dict(variables=variables, intervenable=AREAS))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config("synth_chest", arg, VARIANTS, stages=STAGES)
  c.data = defaults.phantom_data("synth_chest")
  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.phantom_segmentors(num_steps=400)
  c.scm = scm(c.data.image_size)
  # Reg-CFT's predictor: reads the areas from the whole image (brightness shortcut allowed).
  c.regressor = defaults.regressor_section(AREAS)
  # The scalar SCM and the image mechanism, SPEC §1. HVAE 1,000 steps, not the recipe's 700:
  # at 700, Seg-CFT amplified the HVAE's exposure-area coupling (docs/experiments.md).
  c.pgm = defaults.pgm_section()
  c.hvae = defaults.hvae_section(parents=("sex", "age", *AREAS), num_steps=1000)
  # Counterfactual fine-tuning: Reg-CFT (regressor) and Seg-CFT (segmentor soft areas) of the
  # pretrained HVAE, over all three organ areas (SPEC §1).
  for stage in CFT_STAGES:
    c[stage] = defaults.cft_section()
  c.evaluate = evaluate_config()  # SPEC §4 suite (the evaluate stage)
  return defaults.finish(c, quick_overrides() if c.variant == "quick" else None)


def quick_overrides() -> dict:
  """The `quick` block: the phantom recipe's, the SCM of its smaller images, evaluate's."""
  block = defaults.phantom_quick(CFT_STAGES)
  return {**block, "scm": scm(block["data.image_size"]), **EVALUATE_QUICK}
