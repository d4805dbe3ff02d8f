"""`segmentor` and `oracle` stages: a 2-D U-Net trained with cross-entropy + soft Dice.

loss = mean_B CE(x) + dice_weight * mean_B (1 - soft Dice over foreground classes).

The segmentor becomes Seg-CFT's frozen predictor; the oracle (other seed, other width) is
trained the same way but used only for evaluation. Both report per-class test Dice of the EMA
parameters with hard argmax labels.

With `exposure_aug = a > 0` every training image is first re-exposed by a random gain,
``x01' = clip(x01 * exp(u), 0, 1)`` with ``u ~ U(-a, a)`` per example and ``x01 = (x + 1) / 2``
the image in [0, 1] (`exposure_augment`, `pipeline.rescale_exposure`). The phantoms tie
exposure to organ size through a hidden body factor, so a segmentor trained without it may
tie its soft boundaries to global brightness, a lever fine-tuning against the frozen
segmentor could pull. Off by default: on the phantoms it did not change Seg-CFT's results
(docs/experiments.md).
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from segcft_jax import builders
from segcft_jax.data import pipeline
from segcft_jax.models import segmentation_loss as seg_loss
from segcft_jax.stages import setup
from segcft_jax.train.task import Task

KEYS = ("image", "mask")


def exposure_augment(x: jax.Array, rng: jax.Array, max_log_gain: float) -> jax.Array:
  """Per-example random exposure of images `x [B, H, W, C]` in [-1, 1] (module docstring)."""
  u = jax.random.uniform(rng, (x.shape[0], 1, 1, 1), minval=-max_log_gain, maxval=max_log_gain)
  return pipeline.rescale_exposure(x, jnp.exp(u))


def segmentation_task(name: str, model_cfg: ml_collections.ConfigDict,
                      class_names: Sequence[str], dice_weight: float,
                      exposure_aug: float = 0.0) -> Task:
  """The U-Net training task (per-example eval metrics: CE and per-class hard Dice).

  Args:
    name: stage name.
    model_cfg: U-Net section (`widths`, `blocks_per_level`, `norm_groups`).
    class_names: mask classes, background first.
    dice_weight: weight of the soft-Dice term.
    exposure_aug: maximum |log gain| of the training-time exposure augmentation (0: off).
  """
  if exposure_aug < 0:
    raise ValueError(f"exposure_aug must be >= 0 (config.<segmentor|oracle>.exposure_aug), "
                     f"got {exposure_aug}.")
  k = len(class_names)
  model = builders.unet(model_cfg, k)

  def init(rng, batch):
    return model.init(rng, jnp.asarray(batch["image"][:1]))["params"]

  def loss_fn(params, batch, rng, frozen):
    del frozen  # Nothing frozen.
    x = batch["image"]
    if exposure_aug > 0:
      x = exposure_augment(x, rng, exposure_aug)
    logits = model.apply({"params": params}, x)  # [B, H, W, K]
    ce = seg_loss.cross_entropy(logits, batch["mask"]).mean()
    dice = seg_loss.soft_dice_loss(logits, batch["mask"], k).mean()
    return ce + dice_weight * dice, {"ce": ce, "dice_loss": dice}

  def eval_fn(params, batch, frozen, rng):
    del frozen, rng  # Deterministic.
    logits = model.apply({"params": params}, batch["image"])
    pred = jnp.argmax(logits, axis=-1)
    return {"ce": seg_loss.cross_entropy(logits, batch["mask"]),
            "dice": seg_loss.hard_dice(pred, batch["mask"], k)}  # [B], [B, K]

  fingerprint = {"task": "segmentation", "model": model_cfg.to_dict(),
                 "classes": list(class_names)}
  return Task(name=name, init=init, loss_fn=loss_fn, eval_fn=eval_fn, fingerprint=fingerprint)


def _train(config: ml_collections.ConfigDict, workdir: str, name: str) -> dict:
  cfg = config[name]
  class_names = builders.class_names(config)
  data = setup.prepare(config, workdir, name, KEYS)
  task = segmentation_task(name, cfg.model, class_names, cfg.dice_weight, cfg.exposure_aug)

  def summarise(m):
    return {"ce": m["ce"], "dice": dict(zip(class_names, m["dice"])),
            "mean_foreground_dice": float(m["dice"][1:].mean())}

  result, test = setup.train_and_evaluate(config, workdir, name, task, data,
                                          builders.unet_architecture(config, name), summarise)
  return dict(test=test, checkpoints=os.path.join(name, "checkpoints"),
              **setup.run_summary(result))


def run_segmentor(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the segmentor that Seg-CFT will use as its frozen predictor."""
  return _train(config, workdir, "segmentor")


def run_oracle(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the evaluation-only oracle segmentor."""
  return _train(config, workdir, "oracle")
