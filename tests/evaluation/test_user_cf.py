"""Input validation of the user counterfactual command (no model needed)."""

import os

import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files
from segcft_jax.evaluation import user_cf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
IMAGE = np.full((32, 32), 100, np.uint8)


def test_do_values_absolute_and_relative():
  assert user_cf.parse_do(["left_lung_area=-15%", "heart_area=250"]) == {
      "left_lung_area": "-15%", "heart_area": "250"}
  assert user_cf.parse_value("v", "+10%") == (10.0, True)
  assert user_cf.parse_value("v", 2.5e2) == (250.0, False)
  for bad in ("heart_area", "heart_area=", "=3", "heart area=3", "heart_area=1O%"):
    with pytest.raises(ValueError, match="Malformed"):
      user_cf.parse_do([bad])
  with pytest.raises(ValueError, match="twice"):
    user_cf.parse_do(["heart_area=1", "heart_area=2"])


def test_method_names():
  assert user_cf.method_key("seg") == "seg_cft" and user_cf.method_key("Pos-Seg") == "pos_seg_cft"
  assert user_cf.method_key("no_cft") == "no_cft"
  with pytest.raises(ValueError, match="Unknown method"):
    user_cf.method_key("segmentor")


def test_request_validation_names_the_problem(tmp_path):
  ok = user_cf.check_request(CONFIG, IMAGE, {"heart_area": "+10%"}, {"age": "50", "sex": "M"})
  assert ok.given == {"age": 50.0, "sex": 1.0} and ok.interventions["heart_area"][:2] == (10, True)
  cases = [
      (IMAGE, {"lung_volume": "3"}, {"age": 50, "sex": 1}, "intervenable variables"),
      (IMAGE, {"heart_area": "-5"}, {"age": 50, "sex": 1}, "outside the support"),
      (IMAGE, {"heart_area": "-100%"}, {"age": 50, "sex": 1}, "above -100%"),
      (IMAGE, {}, {"age": 50, "sex": 1}, "at least one intervention"),
      (IMAGE, {"heart_area": "3"}, {"sex": 1}, "age cannot be measured"),
      (IMAGE, {"heart_area": "3"}, {"age": 50, "sex": 1, "weight": 3}, "Unknown variable"),
      (np.zeros((64, 64), np.uint8), {"heart_area": "3"}, {"age": 50, "sex": 1},
       "64x64 pixels; this model takes 32x32"),
      (np.zeros((32, 32, 3), np.uint8), {"heart_area": "3"}, {"age": 50, "sex": 1}, "uint8"),
  ]
  for image, do, parents, message in cases:
    with pytest.raises(ValueError, match=message):
      user_cf.check_request(CONFIG, image, do, parents)
  rgb = tmp_path / "rgb.png"
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(rgb)
  with pytest.raises(ValueError, match="RGB image with 3 channel"):
    user_cf.check_request(CONFIG, str(rgb), {"heart_area": "3"}, {"age": 50, "sex": 1})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    user_cf.check_request(CONFIG, str(tmp_path / "nope.png"), {"heart_area": "3"},
                          {"age": 50, "sex": 1})


def test_parents_csv_and_output_guard(tmp_path):
  path = tmp_path / "p.csv"
  path.write_text("sex,age,heart_area\nF,61,70\n")
  assert user_cf.read_parents_csv(str(path)) == {"sex": "F", "age": "61", "heart_area": "70"}
  path.write_text("sex,age\n1,2\n3,4\n")
  with pytest.raises(ValueError, match="exactly one row"):
    user_cf.read_parents_csv(str(path))
  user_cf.check_outputs(str(tmp_path / "new"), overwrite=False)
  (tmp_path / "result.json").write_text("{}")
  with pytest.raises(FileExistsError, match="--overwrite"):
    user_cf.check_outputs(str(tmp_path), overwrite=False)
  user_cf.check_outputs(str(tmp_path), overwrite=True)


def test_missing_workdir_or_method(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    user_cf.load_config(str(tmp_path / "nope"), "seg_cft")
  with pytest.raises(FileNotFoundError, match="has not been trained"):
    user_cf.load_config(str(tmp_path), "seg_cft")
