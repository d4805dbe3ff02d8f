"""Differentiable measurements of a segmentor's output and the CFT distances (SPEC §1).

Soft area of class k (Seg-CFT), with p = softmax(segmentor(x*)) `[B, H, W, K]`:

    area_k(x*)     = sum_pixels p_k * pixel_area
    area_{k,r}(x*) = sum_pixels p_k * [region == r] * pixel_area      (Pos-Seg-CFT)

Both are linear in p, so their gradient with respect to the image is the segmentor's
Jacobian summed over the (region's) pixels: it flows through the frozen segmentor's
activations into x* and on into the HVAE.

Distances between a measured value a and its counterfactual target t (per example, `[B]`):

    relative_l1: |a - t| / max(t, floor)      (default; the floor keeps zero-area targets,
                                               e.g. an absent plaque, finite)
    relative_l2: ((a - t) / max(t, floor))^2  (smooth: a variable that is already close to
                                               its target pulls with a small gradient, where
                                               relative_l1 pulls with its full sign)
    relative_huber: with e = |a - t| / max(t, floor) and delta > 0,
                 e^2 / (2 delta) if e < delta, else e - delta / 2   (relative_l1's slope 1
                 for errors past delta, relative_l2's proportional pull inside it: a
                 preserved variable a few per cent off its target stops pulling with
                 full strength against the intervened one)
    l1:          |a - t|
    l2:          (a - t)^2
    log_ratio:   |log((a + floor) / (t + floor))|
    nll:         Reg-CFT only: the regressor's Gaussian -log q(t | x*) on the standardised
                 target (`models.regressor.gaussian_nll`), the reference's auxiliary loss;
                 handled by `cft.task.CounterfactualStep`, not by `distance_fn`
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

DISTANCES = ("relative_l1", "relative_l2", "relative_huber", "l1", "l2", "log_ratio")


def soft_area(probs: jax.Array, cls: int, pixel_area: float = 1.0) -> jax.Array:
  """Expected area of class `cls` under per-pixel class probabilities.

  Args:
    probs: `[B, H, W, K]` softmax probabilities.
    cls: class index.
    pixel_area: area of one pixel (1: areas in pixels).

  Returns:
    `[B]` soft areas.
  """
  return probs[..., cls].sum(axis=(1, 2)) * pixel_area


def regional_soft_area(probs: jax.Array, cls: int, region_mask: jax.Array,
                       pixel_area: float = 1.0) -> jax.Array:
  """Expected area of class `cls` inside a region.

  Args:
    probs: `[B, H, W, K]` softmax probabilities.
    cls: class index.
    region_mask: `[B, H, W]` (or broadcastable) region indicator, bool or {0, 1}.
    pixel_area: area of one pixel.

  Returns:
    `[B]` soft areas within the region.
  """
  weight = region_mask.astype(probs.dtype)
  return (probs[..., cls] * weight).sum(axis=(1, 2)) * pixel_area


def distance_fn(name: str, floor: float = 1.0,
                delta: float = 0.05) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The per-example distance `(measured [B], target [B]) -> [B]` called `name`.

  Args:
    name: one of `DISTANCES` (module docstring).
    floor: lower bound of the relative distances' denominator.
    delta: the relative error where `relative_huber` turns from quadratic to linear.

  Raises:
    ValueError: `name` is not one of `DISTANCES`, or `floor` is not positive, or
      `delta` is not positive for `relative_huber`.
  """
  if floor <= 0:
    raise ValueError(f"The distance floor must be positive, got {floor}.")
  if name == "relative_huber" and delta <= 0:
    raise ValueError(f"The Huber delta must be positive (config.<cft stage>.huber_delta), "
                     f"got {delta}.")

  def relative(a, t):
    return (a - t) / jnp.maximum(t, floor)

  if name == "relative_l1":
    return lambda a, t: jnp.abs(relative(a, t))
  if name == "relative_l2":
    return lambda a, t: relative(a, t) ** 2
  if name == "relative_huber":
    return lambda a, t: optax.huber_loss(relative(a, t), delta=delta) / delta
  if name == "l1":
    return lambda a, t: jnp.abs(a - t)
  if name == "l2":
    return lambda a, t: (a - t) ** 2
  if name == "log_ratio":
    return lambda a, t: jnp.abs(jnp.log((jnp.maximum(a, 0.0) + floor) / (t + floor)))
  raise ValueError(f"Unknown CFT distance {name!r} (config.<cft stage>.distance); "
                   f"choose one of {', '.join(DISTANCES)} (or nll, cft_reg only).")
