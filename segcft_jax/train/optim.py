"""Optimiser construction: AdamW with linear warm-up and global-norm clipping.

Follows the reference HVAE recipe (reference spec §2): AdamW with decoupled weight decay on
all parameters, learning rate `lr * min(1, t / warmup_steps)` counted in *accepted* updates
(optax counts only applied updates because skipped steps leave the optimiser state
untouched), and gradients clipped to a global L2 norm before the update.
"""

from __future__ import annotations

import ml_collections
import optax


def warmup_schedule(lr: float, warmup_steps: int) -> optax.Schedule:
  """`lr * min(1, t / warmup_steps)`; constant `lr` when `warmup_steps == 0`."""
  if warmup_steps <= 0:
    return optax.constant_schedule(lr)
  return optax.linear_schedule(0.0, lr, warmup_steps)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW(b1, b2, eps, weight_decay) with warm-up, preceded by global-norm clipping.

  Args:
    cfg: `optim` config with fields lr, warmup_steps, b1, b2, eps, weight_decay, grad_clip.

  Returns:
    The optax transformation.
  """
  adamw = optax.adamw(
      learning_rate=warmup_schedule(cfg.lr, cfg.warmup_steps),
      b1=cfg.b1,
      b2=cfg.b2,
      eps=cfg.eps,
      weight_decay=cfg.weight_decay,
  )
  if cfg.grad_clip and cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
  return adamw
