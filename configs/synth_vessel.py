"""synth_vessel: the procedural straightened coronary vessel (SPEC §2).

Run (2 CPU cores, no downloads; synthetic data). Every variant runs data, segmentor, oracle,
regressor, pgm, hvae, cft_reg, cft_seg (+ cft_pos_seg in the positional setting), evaluate:
  python -m segcft_jax.main --config=configs/synth_vessel.py
  python -m segcft_jax.main --config=configs/synth_vessel.py:quick --stages=data,segmentor,oracle
  python -m segcft_jax.main --config=configs/synth_vessel.py:positional   # Pos-Seg-CFT setting

Variants (the argument after the colon): `default` (CPU-sized, 64x64; Seg-CFT setting: the
three global areas), `quick` (32x32, tiny; tests and smoke runs), `positional` and
`positional_quick` (the same data and segmentors; Pos-Seg-CFT setting: the nine regional
areas `{lumen,calcified,noncalcified}_area_{proximal,mid,distal}`). The setting is recorded
in `config.setting` ("global" | "positional") and selects `config.cft_variables`, the SCM
variables and the regressor's targets. Override any field with `--config.a.b=value`;
`--config.seed=N` moves every stage's seed (`SEED_OFFSETS` in segcft_jax/train/defaults.py).

Expected result (synthetic data, positional, the third command): oracle MAE of the intervened
regional area, mean of nine, 64 test examples: No-CFT 19.94 px, Reg-CFT 19.37, Seg-CFT 17.00,
Pos-Seg-CFT 13.03 (true counterfactuals: 4.09).
"""

import math

import ml_collections

from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick", "positional", "positional_quick")
REGIONS = ("proximal", "mid", "distal")
STRUCTURES = ("lumen", "calcified", "noncalcified")
GLOBAL_AREAS = tuple(f"{s}_area" for s in STRUCTURES)
REGIONAL_AREAS = tuple(f"{s}_area_{r}" for s in STRUCTURES for r in REGIONS)

# mean/std of log(1 + area) of each variable on the default 64x64 train split (measured on
# the built dataset). Plaque areas are zero where a region has no plaque, hence log1p; areas
# scale with S^2, so the log-mean shifts by about 2 log(S / 64) at other sizes.
_LOG1P_AREA_64 = {
    "lumen_area": (6.1845, 0.1352),
    "calcified_area": (2.1259, 1.5555),
    "noncalcified_area": (3.5688, 1.8130),
    "lumen_area_proximal": (5.1903, 0.1653),
    "lumen_area_mid": (5.1180, 0.1600),
    "lumen_area_distal": (4.9307, 0.1725),
    "calcified_area_proximal": (1.1047, 1.4108),
    "calcified_area_mid": (1.0504, 1.3684),
    "calcified_area_distal": (0.9948, 1.2970),
    "noncalcified_area_proximal": (2.0611, 2.0190),
    "noncalcified_area_mid": (2.0038, 1.9622),
    "noncalcified_area_distal": (1.9160, 1.8954),
}


def scm(variables: tuple[str, ...], image_size: int) -> ml_collections.ConfigDict:
  """The causal graph of `variables`: sex, age roots; every area a child of (sex, age).

  A lumen area is also a child of the plaque areas of its region (plaques narrow the lumen in
  the renderer).

  Args:
    variables: the area variables (GLOBAL_AREAS or REGIONAL_AREAS).
    image_size: the image side in pixels (the area statistics scale with it).
  """
  shift = 2.0 * math.log(image_size / 64)
  graph = {
      "sex": dict(type="binary", parents=()),
      "age": dict(type="continuous", parents=(), norm="range", low=30.0, high=85.0),
  }
  for name in variables:
    mean, std = _LOG1P_AREA_64[name]
    parents = ("sex", "age")
    if name.startswith("lumen"):
      parents += tuple(name.replace("lumen", p) for p in ("calcified", "noncalcified"))
    graph[name] = dict(type="continuous", parents=parents, norm="log1p_standard",
                       mean=mean + shift, std=std)
  return ml_collections.ConfigDict(dict(variables=graph, intervenable=variables))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  variant = defaults.check_variant("synth_vessel", arg, VARIANTS)
  # Seg-CFT ("global": whole-vessel areas) or Pos-Seg-CFT ("positional": per-region areas).
  positional = variant.startswith("positional")
  cft_stages = ("cft_reg", "cft_seg") + (("cft_pos_seg",) if positional else ())
  c = defaults.new_config("synth_vessel", variant, VARIANTS,
                          stages=("data", "segmentor", "oracle", "regressor", "pgm", "hvae",
                                  *cft_stages, "evaluate"))
  c.setting = "positional" if positional else "global"
  c.cft_variables = REGIONAL_AREAS if positional else GLOBAL_AREAS
  c.data = defaults.phantom_data("synth_vessel")
  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.phantom_segmentors(num_steps=300)
  c.scm = scm(c.cft_variables, c.data.image_size)
  # Reg-CFT's predictor: reads the areas from the whole image (contrast shortcut allowed).
  c.regressor = defaults.regressor_section(c.cft_variables)
  # The scalar SCM and the image mechanism (same recipe as synth_chest), SPEC §1. HVAE 2,800
  # steps, 4x the recipe's 700: at 700 the decoder leaves the small calcified plaques in the
  # carried-over pixel noise (docs/experiments.md).
  c.pgm = defaults.pgm_section()
  c.hvae = defaults.hvae_section(parents=("sex", "age", *c.cft_variables), num_steps=2800)
  # Counterfactual fine-tuning: Reg-CFT, global Seg-CFT (soft areas of whole structures) and,
  # in the positional setting, Pos-Seg-CFT (regional soft areas). A plaque area can be 0, so
  # the relative-L1 floor is 5 px. Positional: every structure's predictor loss gets the same
  # gradient norm (`balance="structure"`, cft/balance.py), for all three methods alike,
  # because its lumen and non-calcified terms are 8-30x stronger than the calcified ones.
  for stage in cft_stages:
    c[stage] = defaults.cft_section(distance_floor=5.0,
                                    balance="structure" if positional else "")
  c.evaluate = evaluate_config(area_error="mae")  # SPEC §4 suite (the evaluate stage)
  quick = variant.endswith("quick")
  return defaults.finish(c, quick_overrides(c.cft_variables, cft_stages) if quick else None)


def quick_overrides(variables: tuple[str, ...], cft_stages: tuple[str, ...]) -> dict:
  """The `quick` block: the phantom recipe's, the SCM of its smaller images, evaluate's."""
  block = defaults.phantom_quick(cft_stages)
  return {**block, "scm": scm(variables, block["data.image_size"]), **EVALUATE_QUICK}
