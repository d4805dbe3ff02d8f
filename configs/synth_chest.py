"""synth_chest: the procedural chest-radiograph phantom (SPEC §2), the default main job.

Run (2 CPU cores, no downloads; synthetic data):
  python -m segcft_jax.main --config=configs/synth_chest.py
  python -m segcft_jax.main --config=configs/synth_chest.py:quick --stages=data,segmentor,oracle

Variants (the argument after the colon): `default` (CPU-sized main job, 64x64) and `quick`
(32x32, tiny; used by tests and smoke runs). Override any field with `--config.a.b=value`.

Measured results (synthetic data, 2-core CPU, 2026-12-06, dataset 1.2.0, HVAE 1,000 steps,
cold compilation cache; the first command above, 17 min 49 s wall; details in README.md
"Measured results"):
  segmentor test Dice left lung 0.992 / right lung 0.994 / heart 0.990; oracle 0.991 / 0.994 /
  0.986; regressor MAPE 2.11 / 1.63 / 2.59 %; pgm test log-likelihood -5.16 nats; hvae test
  -ELBO 4.95 bits/dim. Evaluation (oracle MAPE of the intervened area, left lung / right lung /
  heart / mean, 64 test examples): No-CFT 19.8 / 19.3 / 22.3 / 20.5; Reg-CFT 4.9 / 4.6 / 10.2 /
  6.6; Seg-CFT 3.7 / 3.3 / 4.9 / 4.0. Outside share 77.2 / 65.6 / 58.7 %, mean |outside shift|
  0.33 / 2.22 / 0.67 (0-255).
  quick:   data + segmentor + oracle in 16.2 s (2026-12-05, dataset 1.2.0, cold cache);
           segmentor Dice 0.962 / 0.979 / 0.959.
"""

import math

import ml_collections

from segcft_jax.evaluation.config import evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")


# log-area mean/std of each organ on the default 64x64 train split (measured on the built
# dataset); areas scale with S^2, so the log-mean shifts by 2 log(S / 64) at other sizes.
_LOG_AREA_64 = {"left_lung_area": (5.5917, 0.2506), "right_lung_area": (5.9357, 0.2512),
                "heart_area": (5.3939, 0.2529)}
AREAS = tuple(_LOG_AREA_64)


def _scm(image_size: int) -> ml_collections.ConfigDict:
  """The causal graph: sex, age roots; each organ area a child of (sex, age)."""
  shift = 2.0 * math.log(image_size / 64)
  variables = {
      "sex": dict(type="binary", parents=()),
      "age": dict(type="continuous", parents=(), norm="range", low=18.0, high=90.0),
  }
  for name, (mean, std) in _LOG_AREA_64.items():
    variables[name] = dict(type="continuous", parents=("sex", "age"), norm="log_standard",
                           mean=mean + shift, std=std)
  return ml_collections.ConfigDict(dict(variables=variables, intervenable=AREAS))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  c = defaults.new_config(
      "synth_chest", arg, VARIANTS,
      stages=("data", "segmentor", "oracle", "regressor", "pgm", "hvae", "cft_reg", "cft_seg",
              "evaluate"))
  variant = c.variant
  quick = variant == "quick"

  c.data = ml_collections.ConfigDict(dict(
      name="synth_chest", data_dir="", seed=0,
      image_size=32 if quick else 64,
      num_train=256 if quick else 4000,
      num_validation=64 if quick else 500,
      num_test=64 if quick else 500))

  # Segmentor (frozen afterwards; Seg-CFT's predictor) and the evaluation-only oracle.
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=60 if quick else 400,
      widths=(8, 16) if quick else (8, 16, 32),
      oracle_widths=(12, 24) if quick else (6, 12, 24),  # 64x64: ~2.3x faster than 12-24-48
      batch_size=16 if quick else 32,
      log_every=20 if quick else 50,
      eval_batch_size=32 if quick else 100,
      optim=defaults.optim_config(lr=3e-3 if quick else 2e-3, warmup_steps=10 if quick else 50))
  c.scm = _scm(c.data.image_size)
  # Reg-CFT's predictor: reads the areas from the whole image (brightness shortcut allowed).
  c.regressor = defaults.train_config(
      seed=3, batch_size=16 if quick else 32, num_steps=60 if quick else 600,
      log_every=20 if quick else 50, eval_batch_size=32 if quick else 100,
      variables=AREAS, loss="gaussian_nll",
      model=defaults.regressor_model(width=4 if quick else 8),
      optim=defaults.optim_config(lr=3e-3, warmup_steps=10 if quick else 50))
  # The scalar SCM (spline roots, conditional-affine children) and the image mechanism (a
  # CPU-sized VDVAE-style HVAE, exogenous prior), SPEC §1.
  # HVAE: 1,000 steps. At the recipe's 700 (test -ELBO 5.16 bits/dim) Seg-CFT amplified the
  # HVAE's learned exposure-area coupling and its mean |outside shift| exceeded Reg-CFT's; at
  # 1,000 / 1,400 / 2,100 steps (4.95 / 4.77 / 4.56) Reg-CFT's is 3.3 / 2.4 / 3.1x Seg-CFT's
  # and Seg-CFT's outside share is lower for every structure; 1,400 would take the main job
  # past 20 minutes on 2 cores (README.md "Measured results").
  c.pgm, c.hvae = defaults.dscm_sections(quick, parents=("sex", "age", *AREAS),
                                         hvae_steps=1000)
  # Counterfactual fine-tuning: Reg-CFT (regressor) and Seg-CFT (segmentor soft areas) of the
  # pretrained HVAE, over all three organ areas (SPEC §1).
  for stage, section in defaults.cft_sections(quick, ("cft_reg", "cft_seg")).items():
    c[stage] = section
  c.evaluate = evaluate_config(quick)  # SPEC §4 suite (the evaluate stage)
  c.lock()
  return c
