"""Masked accumulation and the metrics.json block of one method."""

import numpy as np

from segcft_jax.evaluation import results


def test_masked_mean_ignores_masked_examples_and_is_none_when_empty():
  acc = results.Accumulator()
  acc.add(("a",), np.array([1.0, 2.0, 100.0]), np.array([True, True, False]))
  acc.add(("a",), np.array([3.0]), np.array([True]))
  assert acc.mean(("a",)) == 2.0 and acc.count(("a",)) == 3
  acc.add(("b",), np.array([5.0]), np.array([False]))
  assert acc.mean(("b",)) is None and acc.mean(("missing",)) is None
  acc.add(("c",), np.array([1.0 / 3.0]), np.array([True]))
  assert acc.mean(("c",)) == 0.333333  # 6 significant digits


def test_method_block_has_the_spec_layout():
  acc = results.Accumulator()
  on = np.ones(2, bool)
  for p, (mape, mae) in {"oracle": (4.0, 30.0), "segmentor_soft": (2.0, 10.0)}.items():
    for k in ("permutation", "all"):
      acc.add(("eff", "seg_cft", "v", k, p, "mape"), np.full(2, mape), on)
      acc.add(("eff", "seg_cft", "v", k, p, "mae"), np.full(2, mae), on)
    acc.add(("pres", "seg_cft", "v", p, "mape"), np.full(2, 1.0), on)
    acc.add(("pres", "seg_cft", "v", p, "mae"), np.full(2, 2.0), on)
  acc.add(("loc", "seg_cft", "v", "outside_share"), np.full(2, 0.1), on)
  acc.add(("comp", "seg_cft", 1), np.full(2, 0.5), on)
  acc.add(("rev", "seg_cft", "all"), np.full(2, 0.7), on)
  acc.add(("fit", "seg_cft"), np.full(2, 1.8), on)
  out = results.method_metrics(acc, "seg_cft", ["v"], {"v": ("permutation",)},
                               ["oracle", "segmentor_soft"], "segmentor_soft", ["v"], [1])
  eff = out["effectiveness"]["v"]
  assert (eff["mape"], eff["mae"], eff["mape_by_predictor"], eff["count"]) == (4.0, 30.0, 2.0, 2)
  assert eff["by_target"]["permutation"] == {"mape": 4.0, "mae": 30.0}
  assert out["preservation"]["v"]["mape"] == 1.0
  assert out["localisation"]["v"]["outside_share"] == 0.1
  assert out["composition"] == {"l1_1": 0.5}
  assert out["reversibility"]["l1"] == 0.7 and out["fit"] == {"bpd": 1.8}
  assert "true_cf" not in out  # nothing rendered: no empty block


def test_reference_block_holds_exposure_sensitivity_per_predictor_and_gain():
  acc = results.Accumulator()
  on = np.ones(2, bool)
  acc.add(("exposure", "regressor", "v", 0.9), np.array([4.0, 6.0]), on)
  acc.add(("exposure", "regressor", "v", 1.1), np.array([-5.0, -3.0]), on)
  acc.add(("exposure", "oracle", "v", 0.9), np.array([9.0]), np.array([False]))  # all masked
  ref = results.reference_metrics(acc, ["v"], ["oracle", "regressor"], (0.9, 1.1))
  assert ref == {"exposure_sensitivity": {"regressor": {"v": {"gain_0.9": 5.0,
                                                               "gain_1.1": -4.0}}}}
  assert results.reference_metrics(acc, ["v"]) == {}
