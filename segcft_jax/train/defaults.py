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


def segmentor_pair(*, num_steps: int, widths, oracle_widths, **common
                   ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """The `segmentor` and `oracle` sections: one recipe, other seed and width for the oracle.

  The segmentor is frozen after training and is Seg-CFT's predictor; the oracle is trained
  independently and used only for evaluation. `common` goes to `train_config` (batch_size,
  log_every, eval_batch_size, optim, ...).
  """
  common = dict(dict(eval_every=num_steps, ckpt_every=num_steps // 2, dice_weight=1.0),
                **common)
  return (train_config(seed=1, num_steps=num_steps, model=unet_config(widths), **common),
          train_config(seed=2, num_steps=num_steps, model=unet_config(oracle_widths), **common))
