"""Per-example segmentation losses and metrics (pure functions).

Notation: logits ``z[b, x, k]`` over pixels ``x`` (any spatial rank, usually
``H, W``) and ``K`` classes, integer labels ``t[b, x]``, one-hot labels
``y[b, x, k] = [t[b, x] == k]`` and probabilities ``p = softmax_k(z)``.

* Cross-entropy, mean over the ``N`` pixels of each example::

      CE[b] = -(1/N) sum_x log p[b, x, t[b, x]]

* Soft Dice loss over the class set ``C`` (``{0..K-1}`` with
  ``include_background``, else ``{1..K-1}``)::

      D[b, k] = (2 sum_x p[b,x,k] y[b,x,k] + eps) / (sum_x p[b,x,k] + sum_x y[b,x,k] + eps)
      L[b]    = 1 - (1/|C|) sum_{k in C} D[b, k]

* Hard Dice of predicted labels ``q`` (one-hot ``Q``) against truth ``y``::

      HD[b, k] = 2 |Q_k ∩ Y_k| / (|Q_k| + |Y_k|),   and HD[b, k] = 1 if |Q_k| + |Y_k| = 0

  i.e. a class absent from both the prediction and the truth of an example
  counts as perfectly segmented.

Every function returns per-example values (leading batch axis) so callers can
mask padded examples before averaging.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cross_entropy", "soft_dice_loss", "hard_dice"]


def _float_dtype(dtype) -> jnp.dtype:
  """float32, or float64 when the input already is (x64 mode)."""
  return jnp.promote_types(dtype, jnp.float32)


def _check(logits: jnp.ndarray, labels: jnp.ndarray) -> None:
  if logits.ndim < 2 or labels.shape != logits.shape[:-1]:
    raise ValueError(
        f"labels shape {labels.shape} must equal logits shape {logits.shape} "
        "without its last (class) axis")


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Pixel-mean softmax cross-entropy per example.

  Args:
    logits: ``[B, H, W, K]`` class logits (any float dtype).
    labels: ``[B, H, W]`` integer labels in ``[0, K)``.

  Returns:
    ``[B]`` float32 (float64 for float64 logits) ``-(1/N) sum_x log p[x, t_x]``.
  """
  _check(logits, labels)
  logp = jax.nn.log_softmax(logits.astype(_float_dtype(logits.dtype)), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32),
                             axis=-1)[..., 0]
  return jnp.mean(nll, axis=tuple(range(1, nll.ndim)))


def _class_set(num_classes: int, include_background: bool) -> slice:
  first = 0 if include_background else 1
  if num_classes - first < 1:
    raise ValueError(
        f"no classes to average over: num_classes={num_classes}, "
        f"include_background={include_background}")
  return slice(first, num_classes)


def soft_dice_loss(logits: jnp.ndarray,
                   labels: jnp.ndarray,
                   num_classes: int,
                   include_background: bool = False,
                   eps: float = 1.0) -> jnp.ndarray:
  """Soft (probabilistic) Dice loss per example.

  ``L = 1 - mean_{k in C} (2 sum p_k y_k + eps) / (sum p_k + sum y_k + eps)``
  with ``p = softmax(logits)``, sums over the pixels of one example, and
  ``C = {0..K-1}`` if ``include_background`` else ``{1..K-1}`` (class 0 is
  the background).

  Args:
    logits: ``[B, H, W, K]`` class logits.
    labels: ``[B, H, W]`` integer labels in ``[0, K)``.
    num_classes: ``K``; must equal ``logits.shape[-1]``.
    include_background: Whether class 0 enters the class mean.
    eps: Additive smoothing in numerator and denominator; keeps the ratio
      defined (and equal to 1) for classes absent from both ``p`` and ``y``.

  Returns:
    ``[B]`` loss in ``[0, 1]`` (float32, or float64 for float64 logits).

  Raises:
    ValueError: On shape mismatch or an empty class set.
  """
  _check(logits, labels)
  if logits.shape[-1] != num_classes:
    raise ValueError(
        f"logits have {logits.shape[-1]} classes, num_classes={num_classes}")
  classes = _class_set(num_classes, include_background)
  dtype = _float_dtype(logits.dtype)
  p = jax.nn.softmax(logits.astype(dtype), axis=-1)
  y = jax.nn.one_hot(labels, num_classes, dtype=dtype)
  axes = tuple(range(1, p.ndim - 1))
  inter = jnp.sum(p * y, axis=axes)
  denom = jnp.sum(p, axis=axes) + jnp.sum(y, axis=axes)
  dice = (2.0 * inter + eps) / (denom + eps)
  return 1.0 - jnp.mean(dice[:, classes], axis=-1)


def hard_dice(pred_labels: jnp.ndarray,
              labels: jnp.ndarray,
              num_classes: int) -> jnp.ndarray:
  """Per-example, per-class Dice of hard label maps.

  ``Dice_k = 2 |P_k ∩ Y_k| / (|P_k| + |Y_k|)`` where ``P_k``/``Y_k`` are the
  pixels predicted/labelled ``k``. A class absent from both the prediction and
  the truth of an example has Dice **1.0** (nothing to find, nothing wrongly
  found); a class present in only one of them has Dice 0.

  Args:
    pred_labels: ``[B, H, W]`` integer predicted labels (e.g.
      ``argmax(logits, -1)``).
    labels: ``[B, H, W]`` integer true labels.
    num_classes: ``K``.

  Returns:
    ``[B, K]`` float32 Dice scores in ``[0, 1]``.
  """
  if pred_labels.shape != labels.shape:
    raise ValueError(
        f"pred_labels shape {pred_labels.shape} != labels shape {labels.shape}")
  q = jax.nn.one_hot(pred_labels, num_classes, dtype=jnp.float32)
  y = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  axes = tuple(range(1, q.ndim - 1))
  inter = jnp.sum(q * y, axis=axes)
  denom = jnp.sum(q, axis=axes) + jnp.sum(y, axis=axes)
  safe = jnp.where(denom > 0, denom, 1.0)
  return jnp.where(denom > 0, 2.0 * inter / safe, 1.0)
