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
variables and the regressor's targets. Override any field with `--config.a.b=value`.

Measured results (synthetic data, 2-core CPU, 2026-11-23; the commands above):
  default: segmentor test Dice lumen 0.992 / calcified 0.968 / non-calcified 0.953 (mean
           foreground 0.971), 300 steps in 52 s on idle cores (134 s while the cores were
           shared); oracle 0.991 / 0.950 / 0.958 (0.967); data build 7-10 s.
  quick:   data + segmentor + oracle in 32 s; segmentor mean foreground Dice 0.72 (60 steps at
           32x32 is a smoke test: the plaques are a few pixels there).
  train split: corr(mean lumen intensity, total plaque area) = -0.80 (the contrast shortcut).
  positional (2026-12-06, the 2,800-step HVAE and structure-balanced CFT: `--stages=cft_reg,
           cft_seg,cft_pos_seg,evaluate` of the third command on a copy of the pretrained
           stages of its plain-gradient run; each balanced CFT stage 300-450 s): oracle
           MAE of the intervened regional area, mean of nine, 64 test examples: No-CFT 19.94 px,
           Reg-CFT 19.37, Seg-CFT 17.00, Pos-Seg-CFT 13.03 (true counterfactuals: 4.09),
           Pos-Seg-CFT lowest in every region (proximal / mid / distal means of the three
           structures 15.29 / 13.60 / 10.19 px, next Seg-CFT 19.39 / 17.27 / 14.36) and for
           6 of the 9 regional variables (the calcified ones go to Reg-CFT); mean
           outside share 90.5 / 90.9 / 90.0 / 80.5 %, mean |outside shift| 0.20 / 0.78 / 1.07 /
           0.51 (0-255); test -ELBO 4.72 / 4.76 / 4.76 / 4.76 bits/dim (epsilon 4.78). With
           the plain gradient (`--config.<cft stage>.balance=`): 19.94 / 19.33 / 18.44 /
           16.82 px; with the 700-step HVAE of 2026-12-05: 20.14 / 19.87 / 18.70 / 18.65 px,
           test -ELBO 5.08 (README.md "Measured results"). The regressor reads plaque from
           the contrast shortcut: a 10 % exposure gain moves its plaque readings by 8-42 %.
"""

import math

import ml_collections

from segcft_jax.evaluation.config import evaluate_config
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


def _scm(variables: tuple[str, ...], image_size: int) -> ml_collections.ConfigDict:
  """Causal graph: sex, age roots; every area a child of (sex, age); a lumen area also a child
  of the plaque areas of its region (plaques narrow the lumen in the renderer)."""
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
  positional = (arg or "").startswith("positional")
  cft_stages = ("cft_reg", "cft_seg") + (("cft_pos_seg",) if positional else ())
  c = defaults.new_config("synth_vessel", arg, VARIANTS,
                          stages=("data", "segmentor", "oracle", "regressor", "pgm", "hvae",
                                  *cft_stages, "evaluate"))
  variant = c.variant
  quick = variant.endswith("quick")
  # Seg-CFT ("global": whole-vessel areas) or Pos-Seg-CFT ("positional": per-region areas).
  c.setting = "positional" if positional else "global"
  c.cft_variables = REGIONAL_AREAS if positional else GLOBAL_AREAS

  c.data = ml_collections.ConfigDict(dict(
      name="synth_vessel", data_dir="", seed=0,
      image_size=32 if quick else 64,
      num_train=256 if quick else 4000,
      num_validation=64 if quick else 500,
      num_test=64 if quick else 500))

  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=60 if quick else 300,
      widths=(8, 16) if quick else (8, 16, 32),
      oracle_widths=(12, 24) if quick else (6, 12, 24),  # 64x64: ~2.3x faster than 12-24-48
      batch_size=16 if quick else 32,
      log_every=20 if quick else 50,
      eval_batch_size=32 if quick else 100,
      optim=defaults.optim_config(lr=3e-3 if quick else 2e-3, warmup_steps=10 if quick else 50))
  c.scm = _scm(c.cft_variables, c.data.image_size)
  # Reg-CFT's predictor: reads the areas from the whole image (contrast shortcut allowed).
  c.regressor = defaults.train_config(
      seed=3, batch_size=16 if quick else 32, num_steps=60 if quick else 600,
      log_every=20 if quick else 50, eval_batch_size=32 if quick else 100,
      variables=c.cft_variables, loss="gaussian_nll",
      model=defaults.regressor_model(width=4 if quick else 8),
      optim=defaults.optim_config(lr=3e-3, warmup_steps=10 if quick else 50))
  # The scalar SCM and the image mechanism (same recipe as synth_chest), SPEC §1.
  # HVAE: 4x the 700-step recipe (~22 min on 2 cores). At 700 steps the decoder mean leaves
  # the small calcified plaques in the carried-over pixel noise (plaque pixels x 205, mu 162,
  # sigma 31 in 0-255; at 2800: mu 201, sigma 13) and test -ELBO is 5.08 against 4.72
  # bits/dim; positional Pos-Seg-CFT then leads in 6 of 9 regions, not 3 (README.md
  # "Measured results").
  c.pgm, c.hvae = defaults.dscm_sections(quick, parents=("sex", "age", *c.cft_variables),
                                         hvae_steps=2800)
  # Counterfactual fine-tuning: Reg-CFT, global Seg-CFT (soft areas of whole structures) and,
  # in the positional setting, Pos-Seg-CFT (regional soft areas). A plaque area can be 0, so
  # the relative-L1 floor is 5 px.
  # Positional: every structure's predictor loss gets the same gradient norm
  # (`balance="structure"`, cft/balance.py), for all three methods alike. Its lumen and
  # non-calcified terms are 8-30x stronger than the calcified ones, and the plain gradient left
  # the lumen nearly where it was: mean oracle MAE Pos-Seg-CFT 16.82 -> 13.03 px, Seg-CFT
  # 18.44 -> 17.00, Reg-CFT 19.33 -> 19.37 (README.md "Measured results"); the balanced
  # step costs ~2.7x the plain one on CPU (benchmarks/README.md).
  for stage, section in defaults.cft_sections(quick, cft_stages, distance_floor=5.0).items():
    c[stage] = section
    if positional:
      c[stage].balance = "structure"
  c.evaluate = evaluate_config(quick, area_error="mae")  # SPEC §4 suite (the evaluate stage)
  c.lock()
  return c
