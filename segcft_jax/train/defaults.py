"""Config defaults shared by every trained stage (imported by `configs/*.py`)."""

from __future__ import annotations

import ml_collections


def new_config(name: str, arg: str | None, variants: tuple[str, ...],
               stages: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The fields every config file starts with; fails on a variant not in `variants`.

  `threefry_partitionable=False`: JAX's default (partitionable) threefry compiles ~8x
  slower on CPU (jax.random.normal 2.3 s -> 0.3 s; U-Net init 12.7 s -> 1.6 s, measured on the
  2-core CI machine). Both are sharding-invariant but draw different numbers, so the choice
  is recorded in the config. `mesh`: devices (-1: all); fsdp > 1 shards parameters over
  groups of that many devices.
  """
  variant = arg or "default"
  if variant not in variants:
    raise ValueError(f"Unknown variant {variant!r} of configs/{name}.py; "
                     f"valid variants: {', '.join(variants)}.")
  return ml_collections.ConfigDict(dict(
      name=name, variant=variant, seed=0, threefry_partitionable=False, stages=tuple(stages),
      mesh=ml_collections.ConfigDict(dict(num_devices=-1, fsdp=1, fsdp_min_size=2 ** 14))))


def optim_config(lr: float = 1e-3, warmup_steps: int = 100, weight_decay: float = 1e-4,
                 grad_clip: float = 100.0, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> ml_collections.ConfigDict:
  """AdamW + warm-up + clipping settings (see `segcft_jax.train.optim`)."""
  return ml_collections.ConfigDict(dict(lr=lr, warmup_steps=warmup_steps, b1=b1, b2=b2,
                                        eps=eps, weight_decay=weight_decay,
                                        grad_clip=grad_clip))


def train_config(*, seed: int, batch_size: int, num_steps: int, log_every: int = 50,
                 eval_every: int | None = None, ckpt_every: int | None = None,
                 eval_batch_size: int | None = None, ema_rate: float = 0.999,
                 grad_skip: float = 1e4, optim: ml_collections.ConfigDict | None = None,
                 **extra) -> ml_collections.ConfigDict:
  """The training fields `train.loop.fit` reads, plus stage-specific `extra` fields.

  `grad_skip`: updates with pre-clip gradient norm >= this are skipped and counted;
  more than `max_skip_fraction` skipped updates stop the stage with a message.
  """
  return ml_collections.ConfigDict(dict(
      seed=seed, batch_size=batch_size, eval_batch_size=eval_batch_size or batch_size,
      num_steps=num_steps, log_every=log_every, eval_every=eval_every or num_steps,
      ckpt_every=ckpt_every or num_steps, ema_rate=ema_rate, grad_skip=grad_skip,
      max_skip_fraction=0.25, min_steps_before_divergence_check=20,
      optim=optim or optim_config(), **extra))


def unet_config(widths, blocks_per_level: int = 1,
                norm_groups: int = 8) -> ml_collections.ConfigDict:
  """A U-Net architecture (see `segcft_jax.models.unet.UNet`)."""
  return ml_collections.ConfigDict(dict(widths=tuple(widths), blocks_per_level=blocks_per_level,
                                        norm_groups=norm_groups))


def regressor_model(width: int, norm_groups: int = 8,
                    norm: str = "group") -> ml_collections.ConfigDict:
  """The regressor's architecture (see `segcft_jax.models.regressor.Regressor`)."""
  return ml_collections.ConfigDict(dict(width=width, norm_groups=norm_groups, norm=norm))


def segmentor_pair(*, num_steps: int, widths, oracle_widths, exposure_aug: float = 0.0,
                   **common) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """The `segmentor` and `oracle` sections: one recipe, other seed and width for the oracle.

  The segmentor is frozen after training and is Seg-CFT's predictor; the oracle is trained
  independently and used only for evaluation. `exposure_aug`: maximum |log gain| of the
  random training-time exposure (`stages.segmentor.exposure_augment`; 0: off). `common` goes
  to `train_config` (batch_size, log_every, eval_batch_size, optim, ...).
  """
  common = dict(dict(eval_every=num_steps, ckpt_every=num_steps // 2, dice_weight=1.0,
                     exposure_aug=exposure_aug), **common)
  return (train_config(seed=1, num_steps=num_steps, model=unet_config(widths), **common),
          train_config(seed=2, num_steps=num_steps, model=unet_config(oracle_widths), **common))


def cft_config(*, seed: int, batch_size: int, num_steps: int, lr: float,
               weight_decay: float, log_every: int = 50, eval_batch_size: int | None = None,
               grad_clip: float = 350.0, grad_skip: float = 500.0, warmup_steps: int = 0,
               **extra) -> ml_collections.ConfigDict:
  """A counterfactual fine-tuning stage section (`cft_reg`, `cft_seg`, `cft_pos_seg`).

  Reference values (reference spec §4.2) unless overridden by `extra`: AdamW betas (0.9,
  0.9) and the HVAE's weight decay / clip / skip; damping 100, lambda_0 = 0, Lagrange
  learning rate 1e-2 (ascent); interventions from an in-batch permutation; relative-L1
  distance (`huber_delta`: where `relative_huber` turns linear); abduction at temperature 1
  (`reuse_elbo_latents`: the ELBO pass's posterior sample serves as the abduction, one
  encoder pass fewer than the reference). `elbo_margin`
  (nats/dim) is added to the pretrained validation -ELBO to give epsilon; `train_encoder=False`
  fine-tunes decoder + likelihood only; `aux_weight` multiplies the predictor loss against
  the ELBO terms (reference: 1); `distance_weights` ("" = all 1, else e.g. "calcified=3")
  weighs the distances of the measurements of a structure (`cft.task.parse_weights`);
  `draw_weights` (same syntax) makes interventions on a structure's variables that many times
  likelier than on the others ("" = the uniform draw); `focus_steps` = N > 0 draws the first
  N steps' interventions only on the variables of the structures in `focus` (e.g.
  "calcified"; `cft.task.focus_mask`); `balance="structure"` gives every structure's
  predictor loss the same gradient norm (`cft.balance`).
  """
  fields = dict(
      distance="relative_l1", distance_floor=1.0, huber_delta=0.05, aux_weight=1.0,
      damping=100.0, lmbda_init=0.0, lr_lagrange=1e-2, elbo_margin=0.02,
      intervention="permutation", relative_range=(0.1, 0.3),
      train_encoder=True, t_abduct=1.0, reuse_elbo_latents=True, distance_weights="",
      draw_weights="", focus="", focus_steps=0, balance="")
  unknown = set(extra) - set(fields)
  if unknown:
    raise ValueError(f"Unknown CFT config fields {sorted(unknown)}; valid: {sorted(fields)}.")
  fields.update(extra)
  return train_config(
      seed=seed, batch_size=batch_size, num_steps=num_steps, log_every=log_every,
      eval_batch_size=eval_batch_size, grad_skip=grad_skip,
      optim=optim_config(lr=lr, warmup_steps=warmup_steps, b2=0.9, weight_decay=weight_decay,
                         grad_clip=grad_clip), **fields)


def dscm_sections(quick: bool, parents: tuple[str, ...], hvae_steps: int = 700
                  ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """The `pgm` and `hvae` sections of the CPU-sized phantom configs (64x64; quick: 32x32).

  PGM: spline roots, conditional-affine children. HVAE: a small VDVAE-style model with an
  exogenous prior (SPEC §1), AdamW betas (0.9, 0.9), clip 350 / skip 500 as the reference.
  Two deviations for the 700-step CPU budget, measured on synth_chest (default variant,
  2-core CPU, 2026-12-05, `--stages=hvae` on the same pretrained stages; test -ELBO):
  EMA rate 0.99, not the reference's 0.999 (the EMA decay min(e / (1 + e), rate) averages
  uniformly until e = rate / (1 - rate), so over 700 steps 0.999 gave the plain mean of the
  weights since step 100, early ones included): 6.00 -> 5.63 bits/dim at lr 1e-3; and lr
  3e-3 instead of 1e-3: 5.10 bits/dim (2e-3: 5.27; 5e-3: 5.01), no update skipped.
  `hvae_steps` (non-quick): the HVAE's step budget; the configs set it from what the
  counterfactuals need (configs/synth_vessel.py, configs/synth_chest.py).
  """
  pgm = train_config(
      seed=4, batch_size=64 if quick else 128, num_steps=200 if quick else 1000,
      log_every=50 if quick else 200, eval_batch_size=64 if quick else 100,
      model=ml_collections.ConfigDict(dict(hidden=(32, 32), num_bins=8, bound=3.0,
                                           child_spline=False)),
      optim=optim_config(lr=3e-3, warmup_steps=20, weight_decay=1e-4))
  hvae = train_config(
      seed=5, batch_size=16 if quick else 32, num_steps=100 if quick else hvae_steps,
      log_every=25 if quick else 100, eval_batch_size=32 if quick else 100,
      parents=tuple(parents), beta=1.0, grad_skip=500.0, ema_rate=0.99,
      model=ml_collections.ConfigDict(dict(
          widths=(8, 16, 32, 64) if quick else (16, 32, 48, 64, 128),
          enc_arch="32b1d2,16b1d2,8b1d8,1b1" if quick else "64b1d2,32b1d2,16b1d2,8b1d8,1b1",
          dec_arch="1b1,8b1,16b1,32b1" if quick else "1b1,8b1,16b1,32b1,64b1",
          z_dim=8 if quick else 16, z_max_res=16 if quick else 32, bias_max_res=16,
          cond_prior=False, compute_dtype="float32")),
      optim=optim_config(lr=1e-3 if quick else 3e-3, warmup_steps=20 if quick else 100, b2=0.9,
                         weight_decay=0.01, grad_clip=350.0))
  return pgm, hvae


def cft_sections(quick: bool, stages: tuple[str, ...], **overrides
                 ) -> dict[str, ml_collections.ConfigDict]:
  """`{stage: section}` for the CFT stages of the CPU-sized phantom configs (one recipe).

  Deviations from the reference (measured on the default synth_chest workdir, 2-core CPU):
  damping 1 instead of 100 — with relative-L1 area distances the predictor's gradient norm
  is ~0.14 against ~50 for the damped ELBO term, so at damping 100 the ELBO alone steers the
  update, and at lr 5e-4 without warm-up the first update pushed the -ELBO 1.7 nats/dim past
  epsilon, after which every update exceeded grad_skip and was skipped. lr 1e-3 with a
  20-step warm-up fits the CPU step budget. On the 2026-12-05 pretrained stages (synth_chest
  1.1.0, HVAE test -ELBO 5.10 bits/dim) 150 Seg-CFT steps lowered the intervened relative
  error (training predictor, test split) to 0.042 and the preserved one to 0.017 with the
  test -ELBO at 3.52 nats/dim (pretrained validation 3.52, epsilon 3.57); oracle MAPE 4.0 /
  4.4 / 6.4 % against Reg-CFT's 5.4 / 6.2 / 11.0 % and No-CFT's 21.7 / 19.8 / 23.2 % (seeds
  11 and 21 alike); lr 3e-3 was no better (docs/results_history.md, with the earlier
  settings on the weaker HVAE of before that day). Lagrange learning rate 5e-2 instead of 1e-2:
  Adam moves lambda by about the learning rate per step, so over the reference's thousands of
  steps 1e-2 suffices, but in 150 steps lambda reached only 1.3 while the positional vessel's
  Reg-CFT and Pos-Seg-CFT ran above epsilon throughout (test -ELBO 5.23 / 5.18 bits/dim against
  epsilon 5.15). At 5e-2 Reg-CFT / Seg-CFT / Pos-Seg-CFT end inside epsilon (5.11 / 5.11 /
  5.09 bits/dim, lambda 2.08 / 0.92 / 2.08) with mean regional oracle MAE 19.87 / 18.70 /
  18.65 px against 19.83 / 18.78 / 18.69; synth_chest 1.1.0, whose constraint is slack (lambda
  <= 0.08), moved from Reg-CFT 5.41 / 6.22 / 11.03 % and Seg-CFT 3.99 / 4.38 / 6.36 % to
  5.40 / 6.05 / 10.65 % and 3.84 / 4.43 / 5.80 % (2026-12-05,
  `--stages=cft_reg,cft_seg[,cft_pos_seg],evaluate` on copies of the pretrained workdirs).
  """
  common = dict(batch_size=16 if quick else 32, num_steps=20 if quick else 150,
                log_every=10 if quick else 25, eval_batch_size=32 if quick else 100,
                lr=1e-3, warmup_steps=20 if not quick else 5, weight_decay=0.01, damping=1.0,
                lr_lagrange=5e-2, elbo_margin=0.05)
  common.update(overrides)
  return {s: cft_config(seed=6, **common) for s in stages}
