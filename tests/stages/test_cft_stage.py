"""The CFT stages on the shared quick workdir: what they record, and their input errors."""

import json
import math
import os

import pytest

from segcft_jax import config_files
from segcft_jax.stages import run_stages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("stage,predictor", [("cft_reg", "regressor"), ("cft_seg", "segmentor")])
def test_cft_stage_summary_and_constraint(quick_chest_workdir, stage, predictor):
  summary = json.load(open(os.path.join(quick_chest_workdir, stage, "summary.json")))
  constraint = json.load(open(os.path.join(quick_chest_workdir, stage, "constraint.json")))
  assert summary["predictor"] == predictor and summary["steps"] == 4
  assert summary["measurements"] == ["left_lung_area", "right_lung_area", "heart_area"]
  assert constraint["epsilon"] == pytest.approx(
      constraint["pretrained_validation_nelbo"] + constraint["margin"])
  assert summary["lmbda"] >= 0.0
  test = summary["test"]
  assert math.isfinite(test["bits_per_dim"]) and test["intervened_distance"] > 0
  assert set(test["distance"]) == set(summary["measurements"])
  hvae = json.load(open(os.path.join(quick_chest_workdir, "hvae", "summary.json")))
  assert summary["num_params"] == hvae["num_params"] + 1  # the HVAE and lambda, nothing else


def test_pos_seg_cft_needs_the_positional_setting(tmp_path):
  # Fails before touching the workdir (nothing is written).
  config = config_files.load(os.path.join(ROOT, "configs", "synth_vessel.py:quick"))
  with pytest.raises(ValueError, match="positional config variant"):
    run_stages(config, str(tmp_path), ["cft_pos_seg"])
  chest = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with pytest.raises(ValueError, match="positional config variant"):
    run_stages(chest, str(tmp_path), ["cft_pos_seg"])
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("stage,overrides,message", [
    ("cft_seg", {"cft_seg.distance": "nll"}, "cft_seg.distance='nll'"),
    ("cft_reg", {"cft_reg.distance": "nll", "regressor.loss": "mse"}, "regressor loss is 'mse'"),
    ("cft_seg", {"cft_seg.distance_weights": "hart=2"}, "distance_weights names 'hart'"),
    ("cft_reg", {"cft_reg.draw_weights": "heart=0"}, "draw_weights entry 'heart=0'"),
], ids=["nll_needs_cft_reg", "nll_needs_a_gaussian_regressor", "weights_typo",
        "draw_weight_not_positive"])
def test_cft_settings_are_checked_before_any_work(tmp_path, stage, overrides, message):
  # A setting the stage cannot run with fails before the data stage writes anything.
  chest = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with chest.unlocked():
    for key, value in overrides.items():
      section, field = key.split(".")
      chest[section][field] = value
  with pytest.raises(ValueError, match=message):
    run_stages(chest, str(tmp_path), ["data", stage])
  assert not os.listdir(tmp_path)
