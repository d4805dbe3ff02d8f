"""The `evaluate` config section: what the evaluation stage measures, on how much data (SPEC §4).

Imported by `configs/*.py`, so it must stay free of JAX and of the rest of the package.

Fields:
  seed: evaluation seed (None in the recipe: `config.seed` + its offset, set by
    `train.defaults.derive_seeds`); batch i uses `fold_in(PRNGKey(seed), i)` and the
    in-batch permutations are drawn from `numpy.random.default_rng([seed, i, variable index])`.
  batch_size: examples per evaluation batch (the last batch is padded and masked).
  num_examples: the first `num_examples` test examples are evaluated (a CPU-sized subset;
    0 = the whole test split).
  relative_changes: fixed relative interventions `a* = (1 + r) a` (true counterfactuals are
    rendered for these).
  composition_times: the null intervention is applied 1 and this many times.
  composition_examples: composition is measured on the first batches covering this many
    examples (it costs `composition_times` counterfactuals per example).
  dilation: pixels by which the localisation target mask is dilated (3x3 steps).
  area_error: the error the report tables show for area variables: "mape" (percent; chest)
    or "mae" (pixels; vessel, whose plaque areas can be zero). Both are always in metrics.json.
  figure_examples: examples per variable in the counterfactual figures.
  exposure_gains: global exposure gains g at which every predictor re-measures the factual
    test images (`pipeline.rescale_exposure`): how much a predictor reads areas from the
    global brightness, the shortcut behind Reg-CFT's global effect (() = off).
  morphometric: variables the non-learned morphometric oracle measures from the image
    (`evaluation.morphometry`: Morpho-MNIST thickness and intensity; () = none); their
    interventions are localised by the oracle's mask of `morphometry.STRUCTURE`.
"""

from __future__ import annotations

import ml_collections

AREA_ERRORS = ("mape", "mae")

# The `quick` override block of the section (dotted paths, `train.defaults.override`).
EVALUATE_QUICK = {"evaluate.batch_size": 16, "evaluate.num_examples": 32,
                  "evaluate.composition_examples": 16}


def evaluate_config(area_error: str = "mape",
                    morphometric: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """The `evaluate` section; `area_error` is one of AREA_ERRORS.

  64 test examples keep the stage CPU-sized: per method and example it runs 5 interventions
  per variable (+ 1 reversal each), 10 null interventions on the first 32 examples and one
  ELBO; raise `num_examples` on faster hardware.
  """
  if area_error not in AREA_ERRORS:
    raise ValueError(f"area_error must be one of {AREA_ERRORS}, got {area_error!r}.")
  return ml_collections.ConfigDict(dict(
      seed=None,
      batch_size=32,
      num_examples=64,
      relative_changes=(-0.30, -0.15, 0.15, 0.30),
      composition_times=10,
      composition_examples=32,
      dilation=2,
      area_error=area_error,
      figure_examples=4,
      exposure_gains=(0.9, 1.1),
      morphometric=tuple(morphometric)))
