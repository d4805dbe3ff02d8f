"""Input validation of the counterfactual API and command (no model needed)."""

import os

import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files
from segcft_jax import inference
from segcft_jax.inference import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
IMAGE = np.full((32, 32), 100, np.uint8)


def test_do_values_absolute_and_relative():
  assert requests.parse_do(["left_lung_area=-15%", "heart_area=250"]) == {
      "left_lung_area": "-15%", "heart_area": "250"}
  assert requests.parse_value("v", "+10%") == (10.0, True)
  assert requests.parse_value("v", 2.5e2) == (250.0, False)
  for bad in ("heart_area", "heart_area=", "=3", "heart area=3", "heart_area=1O%"):
    with pytest.raises(ValueError, match="Malformed"):
      requests.parse_do([bad])
  with pytest.raises(ValueError, match="twice"):
    requests.parse_do(["heart_area=1", "heart_area=2"])


def test_request_validation_names_the_problem(tmp_path):
  ok = requests.check_request(CONFIG, IMAGE, {"heart_area": "+10%"}, {"age": "50", "sex": "M"})
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
      requests.check_request(CONFIG, image, do, parents)
  rgb = tmp_path / "rgb.png"
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(rgb)
  with pytest.raises(ValueError, match="RGB image with 3 channel"):
    requests.check_request(CONFIG, str(rgb), {"heart_area": "3"}, {"age": 50, "sex": 1})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    requests.check_request(CONFIG, str(tmp_path / "nope.png"), {"heart_area": "3"},
                          {"age": 50, "sex": 1})


def test_parents_csv_and_output_guard(tmp_path):
  path = tmp_path / "p.csv"
  path.write_text("sex,age,heart_area\nF,61,70\n")
  assert requests.read_parents_csv(str(path)) == {"sex": "F", "age": "61", "heart_area": "70"}
  path.write_text("sex,age\n1,2\n3,4\n")
  with pytest.raises(ValueError, match="exactly one row"):
    requests.read_parents_csv(str(path))
  inference.check_outputs(str(tmp_path / "new"), overwrite=False)
  (tmp_path / "result.json").write_text("{}")
  with pytest.raises(FileExistsError, match="--overwrite"):
    inference.check_outputs(str(tmp_path), overwrite=False)
  inference.check_outputs(str(tmp_path), overwrite=True)


def test_missing_workdir_or_method(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    inference.load_config(str(tmp_path / "nope"), "seg_cft")
  with pytest.raises(FileNotFoundError, match="has not been trained"):
    inference.load_config(str(tmp_path), "seg_cft")
