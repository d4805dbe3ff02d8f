"""Measuring the evaluated variables on images, by every available predictor (SPEC §4).

For an area variable v measured by class k (and region r in the positional setting), with
L = argmax segmentor logits and p = softmax(segmentor logits):

    oracle:          a_v = #{pixels: L_oracle = k [, region = r]}         (hard argmax area)
    segmentor_hard:  a_v = #{pixels: L_segmentor = k [, region = r]}
    segmentor_soft:  a_v = sum_pixels p_k [* 1{region = r}]              (Seg-CFT's measure)
    regressor:       a_v = the regressor's de-standardised prediction    (Reg-CFT's measure)

Variables of `config.evaluate.morphometric` (Morpho-MNIST thickness, intensity) are measured
for the oracle by `evaluation.morphometry`, outside the jitted `measure` (`add_morphometry`).

The oracle is the evaluation's referee (it is never used in fine-tuning); the others expose
how much a fine-tuned model over-fits its own training predictor. Areas are in pixels.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from segcft_jax.cft import measurements
from segcft_jax.evaluation import metrics, morphometry
from segcft_jax.evaluation.trained import Trained

PREDICTORS = ("oracle", "segmentor_soft", "segmentor_hard", "regressor")


def predictors(trained: Trained) -> tuple[str, ...]:
  """The predictor keys this workdir can measure with."""
  out = ["oracle"]
  if trained.segmentor is not None:
    out += ["segmentor_soft", "segmentor_hard"]
  if trained.regressor is not None:
    out.append("regressor")
  return tuple(out)


def _areas(labels: jax.Array, probs: jax.Array | None, trained: Trained,
           regions: jax.Array | None) -> tuple[dict, dict]:
  hard, soft = {}, {}
  for v, (cls, region) in trained.structures.items():
    in_region = None if region is None else regions == region  # [B, H, W]
    hard[v] = metrics.hard_area(labels, cls, in_region)
    if probs is not None:
      soft[v] = (measurements.soft_area(probs, cls) if in_region is None
                 else measurements.regional_soft_area(probs, cls, in_region))
  return hard, soft


def oracle_labels(trained: Trained, frozen: dict[str, Any], x: jax.Array) -> jax.Array:
  """The oracle segmentor's argmax label map `[B, H, W]` of images `x` `[B, H, W, 1]`."""
  return jnp.argmax(trained.oracle.apply({"params": frozen["oracle"]}, x), axis=-1)


def measure(trained: Trained, frozen: dict[str, Any], x: jax.Array,
            regions: jax.Array | None) -> dict[str, Any]:
  """Measures every evaluated variable on images `x` `[B, H, W, 1]` (jit-compatible).

  Returns:
    `{"labels": oracle argmax [B, H, W], predictor: {variable: [B]}}` for each key of
    `predictors(trained)`; variables a predictor cannot measure are absent from its dict.
  """
  labels = oracle_labels(trained, frozen, x)
  out = {"labels": labels}
  out["oracle"], _ = _areas(labels, None, trained, regions)
  if trained.segmentor is not None:
    logits = trained.segmentor.apply({"params": frozen["segmentor"]}, x)  # [B, H, W, K]
    out["segmentor_hard"], out["segmentor_soft"] = _areas(
        jnp.argmax(logits, axis=-1), jax.nn.softmax(logits, axis=-1), trained, regions)
  if trained.regressor is not None:
    pred = trained.regressor.predict(frozen["regressor"], x)
    out["regressor"] = {v: pred[v] for v in trained.variables if v in pred}
  return out


def structure_target(trained: Trained, variable: str, labels: jax.Array,
                     regions: jax.Array | None) -> jax.Array:
  """`[B, H, W]` mask of `variable`'s structure in label map `labels` (its region's part in
  the positional setting)."""
  cls, region = trained.localised[variable]
  return metrics.structure_mask(labels, cls, regions, region)


def add_morphometry(trained: Trained, x: Any, measured: dict[str, Any]) -> dict[str, Any]:
  """`measured` (host arrays of `measure`) with the morphometric oracle's values of
  `trained.morphometric` on images `x` added to its "oracle" entry (host numpy, not jitted)."""
  if trained.morphometric:
    measured["oracle"] = dict(measured["oracle"], **morphometry.measure(
        jax.device_get(x), trained.morphometric))
  return measured


def structure_union(trained: Trained, variable: str, labels_f: jax.Array,
                    labels_cf: jax.Array, regions: jax.Array | None) -> jax.Array:
  """T before dilation (SPEC §4): `variable`'s structure in the factual ∪ counterfactual
  label maps, `[B, H, W]`."""
  return (structure_target(trained, variable, labels_f, regions)
          | structure_target(trained, variable, labels_cf, regions))
