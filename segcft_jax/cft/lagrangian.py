"""The ELBO constraint of counterfactual fine-tuning as a damped Lagrangian (ref. spec §4).

With gap = epsilon - nelbo and sg the stop-gradient,

    loss = aux - (lambda - damping * sg(gap)) * gap

(the modified differential method of multipliers, Platt & Barr 1988). Its gradient is
grad(aux) + (lambda + damping (nelbo - epsilon)) grad(nelbo) for the HVAE and
nelbo - epsilon for lambda, which is trained by gradient *ascent* (Adam, no weight decay)
and clamped to lambda >= 0 after every update: lambda grows while the -ELBO exceeds epsilon.

Optimiser (reference spec §4.2): the whole pytree {hvae, lmbda} is clipped to one global
norm; the HVAE gets AdamW (no warm-up in the reference; configurable here), optionally with
the encoder frozen (zero updates, `train_encoder=False`); lambda gets ascent Adam.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from segcft_jax.train import optim


def lagrangian(aux: jax.Array, nelbo: jax.Array, lmbda: jax.Array, epsilon: float,
               damping: float) -> jax.Array:
  """`aux - (lmbda - damping sg(epsilon - nelbo)) (epsilon - nelbo)` (scalars)."""
  gap = epsilon - nelbo
  return aux - (lmbda - damping * jax.lax.stop_gradient(gap)) * gap


def param_labels(params: Any, train_encoder: bool) -> Any:
  """'hvae' / 'frozen' / 'lagrange' for every leaf of `{hvae, lmbda}`."""
  def hvae_label(path, _):
    top = path[0].key if path else ""
    return "frozen" if (not train_encoder and top == "encoder") else "hvae"
  return {"hvae": jax.tree_util.tree_map_with_path(hvae_label, params["hvae"]),
          "lmbda": "lagrange"}


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Clip(all) -> {AdamW on the HVAE (or its non-encoder part), ascent Adam on lambda}.

  Args:
    cfg: the CFT stage config (`optim`, `lr_lagrange`, `train_encoder`).
  """
  o = cfg.optim
  hvae = optax.adamw(optim.warmup_schedule(o.lr, o.warmup_steps), b1=o.b1, b2=o.b2,
                     eps=o.eps, weight_decay=o.weight_decay)
  # Positive scale: optax adds updates, so this steps *up* the gradient (maximisation).
  lagrange = optax.chain(optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps),
                         optax.scale(cfg.lr_lagrange))
  tx = optax.multi_transform(
      {"hvae": hvae, "frozen": optax.set_to_zero(), "lagrange": lagrange},
      lambda p: param_labels(p, cfg.train_encoder))
  if o.grad_clip and o.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx


def project(params: Any) -> Any:
  """Clamps the multiplier to lambda >= 0 after an update."""
  return dict(params, lmbda=jnp.maximum(params["lmbda"], 0.0))
