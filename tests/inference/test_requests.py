"""Input validation of the counterfactual API and command (no model needed)."""

import os

import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files
from segcft_jax import inference
from segcft_jax.inference import requests
from segcft_jax.scm.graph import Graph

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
      (np.zeros((32, 32, 3), np.uint8), {"heart_area": "3"}, {"age": 50, "sex": 1},
       r"must be grey, \[H, W\] or \[H, W, 1\]; got shape \[32, 32, 3\]"),
  ]
  for image, do, parents, message in cases:
    with pytest.raises(ValueError, match=message):
      requests.check_request(CONFIG, image, do, parents)
  rgb = tmp_path / "rgb.png"
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(rgb)
  with pytest.raises(ValueError, match=r"has 3 channels \(RGB\)"):
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


def test_parent_values_are_worded_by_where_they_were_given():
  graph = Graph.from_config(CONFIG.scm)
  assert requests.parent_value(graph, "sex", "female") == 0.0
  assert requests.parent_value(graph, "age", "54", "--age") == 54.0
  cases = [("sex", "X", "--sex", "--sex=X: sex must be 0/F/female or 1/M/male."),
           ("sex", 0.5, None, "sex=0.5: sex must be 0/F/female or 1/M/male."),
           ("age", "-5", "--age", "--age=-5: age must be in [18.0, 90.0]."),
           ("heart_area", "0", "p.csv", "heart_area=0 in p.csv: heart_area must be positive.")]
  for name, value, origin, message in cases:
    with pytest.raises(ValueError) as e:
      requests.parent_value(graph, name, value, origin)
    assert str(e.value) == message


def test_far_targets_uniform_and_16_bit_images_warn(tmp_path):
  ok = requests.check_request(CONFIG, IMAGE, {"heart_area": "5000"}, {"age": 50, "sex": 1})
  assert ok.warnings == [
      "heart_area=5000 is far outside the training distribution (it is more than the image's "
      "1024 pixels); the counterfactual extrapolates beyond what the model was trained on.",
      "The input image is uniform (pixel mean 100.0, std 0): far outside the training "
      "distribution; the oracle's areas and the counterfactual will mean little."]
  graph = Graph.from_config(CONFIG.scm)
  assert requests.far_outside(graph["heart_area"], 50.0, 1024) is None
  assert "standard deviations of log heart_area" in requests.far_outside(
      graph["heart_area"], 0.01, 1024)
  ramp = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 30 + 1000)
  path = tmp_path / "x16.png"
  Image.fromarray(ramp).save(path)
  request = requests.check_request(CONFIG, str(path), {"heart_area": "+1%"}, {"age": 50,
                                                                             "sex": 1})
  assert request.image.dtype == np.uint8 and request.image.min() == 0
  assert request.image.max() == 255 and "16-bit PNG: rescaled" in request.warnings[0]


def test_regions_need_a_positional_model():
  with pytest.raises(ValueError, match="This model has no regions"):
    requests.check_request(CONFIG, IMAGE, {"heart_area": "3"}, {"age": 50, "sex": 1}, IMAGE)
