"""Per-example counterfactual metrics (SPEC §4 conventions). All return `[B]` arrays.

Images are in [-1, 1]; pixel-unit results are reported in 0-255 units (difference × 127.5).

* Effectiveness / preservation: absolute error |m - t| and absolute percentage error
  100 |m - t| / |t| of a measured variable m against its counterfactual target t.
* Localisation: with D = |x* - x| and T the target structure (union of factual and
  counterfactual oracle masks, dilated by 2 px with a 3×3 structure):
  outside_share = Σ_{p∉T} D_p / Σ_p D_p, and outside_shift = mean_{p∉T} (x*_p - x_p) in
  0-255 units (the global brightness change that Reg-CFT shows).
* True-counterfactual error: MAE in 0-255 units and PSNR = 10 log10(255² / MSE_255).
* Composition: mean |x^(n) - x| in 0-255 units after n null interventions.
* Reversibility: x -> do(v = a*) -> do(v = a) back, mean |x'' - x| in 0-255 units.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

PIXEL_SCALE = 127.5  # [-1, 1] -> 0-255 units

# (x, parents, interventions, rng) -> (x_cf, parents_cf): the one counterfactual signature.
CounterfactualFn = Callable[[jax.Array, Mapping[str, jax.Array], Mapping[str, Any], jax.Array],
                            tuple[jax.Array, Mapping[str, jax.Array]]]


def absolute_error(measured: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.abs(measured - target)


def absolute_percentage_error(measured: jax.Array, target: jax.Array) -> jax.Array:
  return 100.0 * jnp.abs(measured - target) / jnp.maximum(jnp.abs(target), 1e-8)


def hard_area(labels: jax.Array, cls: int, region: jax.Array | None = None) -> jax.Array:
  """Pixel count of class `cls` in integer label maps `[B, H, W]` (optionally in a region)."""
  hit = (labels == cls).astype(jnp.float32)
  if region is not None:
    hit = hit * region.astype(jnp.float32)
  return hit.sum(axis=(1, 2))


def structure_mask(labels: jax.Array, cls: int, regions: jax.Array | None = None,
                   region: int | None = None) -> jax.Array:
  """`[B, H, W]` boolean mask of class `cls` (restricted to region label `region` of the
  region map `regions` when both are given)."""
  hit = labels == cls
  if region is not None and regions is not None:
    hit = hit & (regions == region)
  return hit


def dilate(mask: jax.Array, pixels: int) -> jax.Array:
  """Binary dilation of `[B, H, W]` masks by a 3×3 square, `pixels` times."""
  m = mask.astype(jnp.float32)[..., None]
  for _ in range(pixels):
    m = jax.lax.reduce_window(m, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
  return m[..., 0] > 0.5


def localisation(x: jax.Array, x_cf: jax.Array, target: jax.Array,
                 dilation: int = 2) -> dict[str, jax.Array]:
  """Share of the absolute change outside the (dilated) target, and the mean shift there.

  Args:
    x, x_cf: factual and counterfactual images `[B, H, W, 1]` in [-1, 1].
    target: `[B, H, W]` boolean target structure (factual ∪ counterfactual mask).
    dilation: pixels of dilation of `target`.

  Returns:
    `outside_share` in [0, 1] (0 when nothing changed) and `outside_shift` in 0-255 units.
  """
  inside = dilate(target, dilation)
  diff = (x_cf - x)[..., 0] * PIXEL_SCALE  # [B, H, W]
  outside = (~inside).astype(jnp.float32)
  total = jnp.abs(diff).sum(axis=(1, 2))
  share = (jnp.abs(diff) * outside).sum(axis=(1, 2)) / jnp.maximum(total, 1e-12)
  shift = (diff * outside).sum(axis=(1, 2)) / jnp.maximum(outside.sum(axis=(1, 2)), 1.0)
  return {"outside_share": jnp.where(total > 0, share, 0.0), "outside_shift": shift}


def image_l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean absolute difference in 0-255 units, per example."""
  return jnp.abs(a - b).reshape(a.shape[0], -1).mean(axis=1) * PIXEL_SCALE


def true_counterfactual_error(x_cf: jax.Array, x_true: jax.Array) -> dict[str, jax.Array]:
  """MAE (0-255 units) and PSNR (dB) of `x_cf` against the rendered true counterfactual."""
  err = (x_cf - x_true).reshape(x_cf.shape[0], -1) * PIXEL_SCALE
  mse = jnp.mean(err ** 2, axis=1)
  psnr = 10.0 * jnp.log10(255.0 ** 2 / jnp.maximum(mse, 1e-10))
  return {"mae": jnp.abs(err).mean(axis=1), "psnr": psnr}


def composition_series(cf: CounterfactualFn, x: jax.Array, parents: Mapping[str, jax.Array],
                       rng: jax.Array, times: int) -> list[jax.Array]:
  """Mean L1 (0-255) between x and x^(n), n = 1..times: x^(n) = null intervention applied
  to x^(n-1) with key fold_in(rng, n - 1), x^(0) = x. Element n - 1 is `composition(..., n)`."""
  x_n, out = x, []
  for i in range(times):
    x_n, _ = cf(x_n, parents, {}, jax.random.fold_in(rng, i))
    out.append(image_l1(x_n, x))
  return out


def composition(cf: CounterfactualFn, x: jax.Array, parents: Mapping[str, jax.Array],
                rng: jax.Array, times: int) -> jax.Array:
  """Mean L1 (0-255) between x and `times` successive null interventions applied to it."""
  return composition_series(cf, x, parents, rng, times)[-1]


def reversibility(cf: CounterfactualFn, x: jax.Array, parents: Mapping[str, jax.Array],
                  interventions: Mapping[str, Any], rng: jax.Array) -> jax.Array:
  """Mean L1 (0-255) between x and do(v = a*) followed by do(v = a) (a = factual value)."""
  x_cf, parents_cf = cf(x, parents, interventions, jax.random.fold_in(rng, 0))
  back = {k: parents[k] for k in interventions}
  x_back, _ = cf(x_cf, parents_cf, back, jax.random.fold_in(rng, 1))
  return image_l1(x_back, x)
