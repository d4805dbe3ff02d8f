"""Config building blocks shared by `configs/*.py`: sections, stage seeds, variant overrides.

A config file writes its default variant as one recipe; `finish` then applies the variant's
override block (dotted field paths -> values), derives the stage seeds and locks the config.
The config files are loaded before JAX is configured, so this module must not import JAX.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import ml_collections

# Stage seed = `config.seed` + SEED_OFFSETS[section] (`derive_seeds`), unless the recipe or
# the command line sets the stage's own. The offsets are the seeds the stages had before
# `config.seed` was read, so seed 0 reproduces them. Segmentor and oracle differ because the
# oracle must be an independently trained network; the CFT stages share one, so every CFT
# method sees the same batches and intervention draws.
SEED_OFFSETS = {
    "data": 0,
    "segmentor": 1,
    "oracle": 2,
    "regressor": 3,
    "pgm": 4,
    "hvae": 5,
    "cft_reg": 6,
    "cft_seg": 6,
    "cft_pos_seg": 6,
    "evaluate": 0,
}


def check_variant(name: str, arg: str | None, variants: tuple[str, ...]) -> str:
  """Returns the variant `arg` names (None: "default"); fails on one not in `variants`."""
  variant = arg or "default"
  if variant not in variants:
    raise ValueError(f"Unknown variant {variant!r} of configs/{name}.py; "
                     f"valid variants: {', '.join(variants)}.")
  return variant


def new_config(name: str, arg: str | None, variants: tuple[str, ...],
               stages: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The fields every config file starts with; fails on a variant not in `variants`.

  `threefry_partitionable=False` (JAX's default is True): the partitionable threefry
  compiles several times slower on CPU; both are sharding-invariant but draw different
  numbers, so the choice is part of the config. `tensorboard`: every stage also writes its
  logged scalars as TensorBoard events (`train.events`). `mesh`: devices (-1: all); fsdp > 1
  shards parameters over groups of that many devices.
  """
  variant = check_variant(name, arg, variants)
  return ml_collections.ConfigDict(dict(
      name=name, variant=variant, seed=0, threefry_partitionable=False, stages=tuple(stages),
      tensorboard=True,
      mesh=ml_collections.ConfigDict(dict(num_devices=-1, fsdp=1, fsdp_min_size=2 ** 14))))


def finish(c: ml_collections.ConfigDict,
           overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The end of every `get_config`: applies `overrides`, derives the seeds, locks `c`.

  Args:
    c: the config built from the recipe (the default variant's values).
    overrides: the variant's override block (`override`); None or {} for the default.

  Returns:
    `c`, locked.
  """
  override(c, overrides or {})
  derive_seeds(c)
  c.lock()
  return c


def override(c: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
  """Sets every dotted field path of `overrides` (e.g. "hvae.model.z_dim") to its value.

  Fails on a path the recipe lacks: an override block changes values, never the structure.
  """
  for path, value in overrides.items():
    *parents, leaf = path.split(".")
    node = c
    for key in parents:
      node = node[key]
    if leaf not in node:
      raise KeyError(f"Override {path!r}: the recipe has no field {leaf!r} there.")
    node[leaf] = value


def derive_seeds(c: ml_collections.ConfigDict) -> None:
  """Sets every section seed left None to `config.seed + SEED_OFFSETS[section]`.

  Each derived seed is its own FieldReference, so `--config.seed=1` moves them all and
  `--config.cft_seg.seed=11` detaches only that stage. Fails on a None seed of a section
  without an offset.
  """
  for section in c:
    value = c[section]
    if not (isinstance(value, ml_collections.ConfigDict) and "seed" in value
            and value.seed is None):
      continue
    if section not in SEED_OFFSETS:
      raise ValueError(f"Section {section!r} has seed None but no entry in SEED_OFFSETS.")
    # `+ offset` even for 0: a fresh reference per stage, so that setting one stage's seed
    # moves neither `config.seed` nor the other stages.
    value.seed = c.get_ref("seed") + SEED_OFFSETS[section]


def under(sections: str | Iterable[str], fields: Mapping[str, Any]) -> dict[str, Any]:
  """Override entries: every (relative dotted) path of `fields` under each of `sections`."""
  sections = (sections,) if isinstance(sections, str) else tuple(sections)
  return {f"{s}.{k}": v for s in sections for k, v in fields.items()}


def schedule(num_steps: int, ckpt_every: int | None = None) -> dict[str, int]:
  """The step fields `train_config` derives from `num_steps`, for an override block."""
  return {"num_steps": num_steps, "eval_every": num_steps,
          "ckpt_every": ckpt_every or num_steps}


def optim_config(lr: float = 1e-3, warmup_steps: int = 100, weight_decay: float = 1e-4,
                 grad_clip: float = 100.0, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> ml_collections.ConfigDict:
  """AdamW + warm-up + clipping settings (see `segcft_jax.train.optim`)."""
  return ml_collections.ConfigDict(dict(lr=lr, warmup_steps=warmup_steps, b1=b1, b2=b2,
                                        eps=eps, weight_decay=weight_decay,
                                        grad_clip=grad_clip))


def train_config(*, batch_size: int, num_steps: int, seed: int | None = None,
                 log_every: int = 50, eval_every: int | None = None,
                 ckpt_every: int | None = None, eval_batch_size: int | None = None,
                 ema_rate: float = 0.999, grad_skip: float = 1e4,
                 optim: ml_collections.ConfigDict | None = None,
                 **extra) -> ml_collections.ConfigDict:
  """The training fields `train.loop.fit` reads, plus stage-specific `extra` fields.

  Args:
    seed: None in a config file (`derive_seeds` sets it); a number for a standalone section.
    grad_skip: updates with pre-clip gradient norm >= this are skipped and counted; more
      than `max_skip_fraction` skipped updates stop the stage with a message.
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
  """The `segmentor` and `oracle` sections: one recipe, other widths for the oracle.

  The segmentor is frozen after training and is Seg-CFT's predictor; the oracle is trained
  independently (its own seed offset) and used only for evaluation. Both share one `optim`
  section (AdamW lr 2e-3, 50 warm-up steps unless `common` has `optim`), so an override of
  either's sets both.

  Args:
    num_steps: training steps; evaluation at the end, checkpoints every half.
    widths: the segmentor's U-Net widths.
    oracle_widths: the oracle's U-Net widths.
    exposure_aug: maximum |log gain| of the random training-time exposure
      (`stages.segmentor.exposure_augment`; 0: off).
    **common: to `train_config` (batch_size, log_every, eval_batch_size, optim, ...).
  """
  common = dict(dict(eval_every=num_steps, ckpt_every=num_steps // 2, dice_weight=1.0,
                     exposure_aug=exposure_aug,
                     optim=optim_config(lr=2e-3, warmup_steps=50)), **common)
  return (train_config(num_steps=num_steps, model=unet_config(widths), **common),
          train_config(num_steps=num_steps, model=unet_config(oracle_widths), **common))


def segmentor_quick(num_steps: int) -> dict[str, Any]:
  """The `quick` override block of `segmentor_pair`: smaller U-Nets, a short schedule."""
  return {**under(("segmentor", "oracle"), {
              **schedule(num_steps, ckpt_every=num_steps // 2), "log_every": 20,
              "optim.lr": 3e-3, "optim.warmup_steps": 10}),
          "segmentor.model.widths": (8, 16), "oracle.model.widths": (12, 24)}


def regressor_section(variables: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The `regressor` section: Reg-CFT's predictor of `variables` from the whole image."""
  return train_config(batch_size=32, num_steps=600, log_every=50, eval_batch_size=100,
                      variables=tuple(variables), loss="gaussian_nll",
                      model=regressor_model(width=8),
                      optim=optim_config(lr=3e-3, warmup_steps=50))


def regressor_quick() -> dict[str, Any]:
  """The `quick` override block of `regressor_section`: a narrower model, a short schedule."""
  return under("regressor", {**schedule(60), "log_every": 20, "model.width": 4,
                             "optim.warmup_steps": 10})


def cft_config(*, batch_size: int, num_steps: int, lr: float, weight_decay: float,
               seed: int | None = None, log_every: int = 50,
               eval_batch_size: int | None = None, grad_clip: float = 350.0,
               grad_skip: float = 500.0, warmup_steps: int = 0,
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
  predictor loss the same gradient norm (`cft.balance`); `regressor_for` (segmentor stages)
  names variables no soft area measures, which the frozen regressor measures instead (a
  hybrid predictor). `seed`: as in `train_config`.
  """
  fields = dict(
      distance="relative_l1", distance_floor=1.0, huber_delta=0.05, aux_weight=1.0,
      damping=100.0, lmbda_init=0.0, lr_lagrange=1e-2, elbo_margin=0.02,
      intervention="permutation", relative_range=(0.1, 0.3),
      train_encoder=True, t_abduct=1.0, reuse_elbo_latents=True, distance_weights="",
      draw_weights="", focus="", focus_steps=0, balance="", regressor_for=())
  unknown = set(extra) - set(fields)
  if unknown:
    raise ValueError(f"Unknown CFT config fields {sorted(unknown)}; valid: {sorted(fields)}.")
  fields.update(extra)
  return train_config(
      seed=seed, batch_size=batch_size, num_steps=num_steps, log_every=log_every,
      eval_batch_size=eval_batch_size, grad_skip=grad_skip,
      optim=optim_config(lr=lr, warmup_steps=warmup_steps, b2=0.9, weight_decay=weight_decay,
                         grad_clip=grad_clip), **fields)


# The CPU-sized phantom recipe (configs/synth_chest.py, configs/synth_vessel.py): 64x64
# images; `phantom_quick` is its 32x32 `quick` block.


def phantom_data(name: str) -> ml_collections.ConfigDict:
  """The `data` section of phantom `name` (4000 / 500 / 500 examples at 64x64)."""
  return ml_collections.ConfigDict(dict(
      name=name, data_dir="", seed=None, image_size=64, num_train=4000, num_validation=500,
      num_test=500))


def phantom_segmentors(num_steps: int
                       ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """The phantoms' `segmentor` and `oracle` (`segmentor_pair`), `num_steps` steps."""
  # The oracle's 6-12-24 U-Net: at 64x64 ~2.3x faster than 12-24-48.
  return segmentor_pair(num_steps=num_steps, widths=(8, 16, 32), oracle_widths=(6, 12, 24),
                        batch_size=32, log_every=50, eval_batch_size=100)


def pgm_section() -> ml_collections.ConfigDict:
  """The `pgm` section: the scalar SCM, spline roots and conditional-affine children."""
  return train_config(
      batch_size=128, num_steps=1000, log_every=200, eval_batch_size=100,
      model=ml_collections.ConfigDict(dict(hidden=(32, 32), num_bins=8, bound=3.0,
                                           child_spline=False)),
      optim=optim_config(lr=3e-3, warmup_steps=20, weight_decay=1e-4))


def hvae_section(parents: tuple[str, ...], num_steps: int = 700) -> ml_collections.ConfigDict:
  """The `hvae` section: a CPU-sized VDVAE-style HVAE with an exogenous prior (SPEC §1).

  AdamW betas (0.9, 0.9) and clip 350 / skip 500 as the reference. Deviations, for a CPU
  budget of hundreds of steps (docs/experiments.md):
    EMA rate 0.99, not 0.999: over its first ~1,000 steps a 0.999 EMA is the plain mean of
      all weights, early ones included.
    lr 3e-3, not 1e-3: a lower test -ELBO in the same steps.

  Args:
    parents: the SCM variables the HVAE is conditioned on.
    num_steps: the step budget; the configs set it from what the counterfactuals need.
  """
  return train_config(
      batch_size=32, num_steps=num_steps, log_every=100, eval_batch_size=100,
      parents=tuple(parents), beta=1.0, grad_skip=500.0, ema_rate=0.99,
      model=ml_collections.ConfigDict(dict(
          widths=(16, 32, 48, 64, 128), enc_arch="64b1d2,32b1d2,16b1d2,8b1d8,1b1",
          dec_arch="1b1,8b1,16b1,32b1,64b1", z_dim=16, z_max_res=32, bias_max_res=16,
          cond_prior=False, compute_dtype="float32")),
      optim=optim_config(lr=3e-3, warmup_steps=100, b2=0.9, weight_decay=0.01,
                         grad_clip=350.0))


def cft_section(**overrides) -> ml_collections.ConfigDict:
  """A CFT stage section of the phantom recipe (`cft_config`, 150 steps); `overrides` to it.

  Deviations from the reference, for a CPU budget of 150 steps (docs/experiments.md):
    damping 1, not 100: the predictor's gradient (relative-L1 distances) is hundreds of times
      smaller than the damped ELBO term's, which alone would steer the update.
    lr 1e-3 with 20 warm-up steps: without warm-up the first update pushed the -ELBO past
      epsilon, and every later update was skipped.
    Lagrange lr 5e-2, not 1e-2: Adam moves lambda by about its lr per step, too little to
      catch up with the constraint within 150 steps.
  """
  fields = dict(batch_size=32, num_steps=150, log_every=25, eval_batch_size=100, lr=1e-3,
                warmup_steps=20, weight_decay=0.01, damping=1.0, lr_lagrange=5e-2,
                elbo_margin=0.05)
  fields.update(overrides)
  return cft_config(**fields)


def phantom_quick(cft_stages: Iterable[str]) -> dict[str, Any]:
  """The phantom recipe's `quick` block: 32x32 images, tiny models and schedules.

  The config adds the SCM of the smaller images (its area statistics depend on the size)
  and `evaluation.config.EVALUATE_QUICK` (train may not import evaluation).

  Args:
    cft_stages: the CFT stages the config has.
  """
  small_batches = {"batch_size": 16, "eval_batch_size": 32}
  return {
      **under("data", {"image_size": 32, "num_train": 256, "num_validation": 64,
                       "num_test": 64}),
      **segmentor_quick(60), **regressor_quick(),
      **under(("segmentor", "oracle", "regressor"), small_batches),
      **under("pgm", {**schedule(200), "batch_size": 64, "eval_batch_size": 64,
                      "log_every": 50}),
      **under("hvae", {**schedule(100), **small_batches, "log_every": 25,
                       "optim.lr": 1e-3, "optim.warmup_steps": 20,
                       "model.widths": (8, 16, 32, 64),
                       "model.enc_arch": "32b1d2,16b1d2,8b1d8,1b1",
                       "model.dec_arch": "1b1,8b1,16b1,32b1", "model.z_dim": 8,
                       "model.z_max_res": 16}),
      **under(cft_stages, {**schedule(20), **small_batches, "log_every": 10,
                           "optim.warmup_steps": 5}),
  }


def _standalone(sections: dict[str, ml_collections.ConfigDict],
                quick: bool) -> dict[str, ml_collections.ConfigDict]:
  """`sections` outside a config file: the quick block if `quick`, the seeds of seed 0."""
  if quick:
    block = phantom_quick(s for s in sections if s.startswith("cft_"))
    override(sections, {k: v for k, v in block.items() if k.split(".")[0] in sections})
  for name, section in sections.items():
    section.seed = SEED_OFFSETS[name]
  return sections


def dscm_sections(quick: bool, parents: tuple[str, ...], hvae_steps: int = 700
                  ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """`(pgm, hvae)` of the phantom recipe for a config built outside a config file."""
  s = _standalone({"pgm": pgm_section(), "hvae": hvae_section(parents, hvae_steps)}, quick)
  return s["pgm"], s["hvae"]


def cft_sections(quick: bool, stages: tuple[str, ...], **overrides
                 ) -> dict[str, ml_collections.ConfigDict]:
  """`{stage: cft_section(**overrides)}` for a config built outside a config file.

  The quick block is applied after `overrides` (it sets the schedule and batch sizes).
  """
  return _standalone({s: cft_section(**overrides) for s in stages}, quick)
