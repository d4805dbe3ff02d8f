"""`python -m segcft_jax.counterfactual` end to end on the shared quick chest workdir."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files, counterfactual
from segcft_jax.data import datasets
from segcft_jax import inference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def image(quick_chest_workdir, tmp_path_factory):
  """The first test image of the workdir's dataset as a grayscale PNG (and its record)."""
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  record = datasets.open_split(datasets.prepared_builder(config.data, quick_chest_workdir),
                               "test")[0]
  path = str(tmp_path_factory.mktemp("img") / "x.png")
  Image.fromarray(np.asarray(record["image"])[..., 0], mode="L").save(path)
  return path, record


def _args(work, img, out, *extra):
  return [f"--workdir={work}", "--method=seg", f"--input={img}", "--do",
          "left_lung_area=-15%", "--do", "heart_area=+10%", "--age=50", "--sex=M",
          f"--out={out}", *extra]


def test_writes_counterfactual_difference_and_json(quick_chest_workdir, image, tmp_path,
                                                   capsys):
  out = str(tmp_path / "out")
  assert counterfactual.main(_args(quick_chest_workdir, image[0], out)) == 0
  cf = Image.open(os.path.join(out, "counterfactual.png"))
  assert cf.mode == "L" and cf.size == (32, 32)
  assert Image.open(os.path.join(out, "difference.png")).mode in ("RGB", "RGBA")
  result = json.load(open(os.path.join(out, "result.json")))
  before, after = result["parents_before"], result["parents_after"]
  assert result["method"] == "seg_cft"
  assert result["parents_source"] == {"sex": "given", "age": "given", "left_lung_area": "oracle",
                                      "right_lung_area": "oracle", "heart_area": "oracle"}
  assert before["left_lung_area"] == result["measured_before"]["left_lung_area"]
  assert after["left_lung_area"] == pytest.approx(0.85 * before["left_lung_area"], rel=1e-4)
  assert after["heart_area"] == pytest.approx(1.1 * before["heart_area"], rel=1e-4)
  assert after["right_lung_area"] == before["right_lung_area"]  # not a descendant
  assert set(result["measured_after"]) == set(result["measured_before"])
  # Nothing is replaced without --overwrite; with it the same result is written again.
  capsys.readouterr()
  assert counterfactual.main(_args(quick_chest_workdir, image[0], out)) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith("error:") and "--overwrite" in err and "\n" not in err
  assert counterfactual.main(_args(quick_chest_workdir, image[0], out, "--overwrite")) == 0
  # The Python API gives the same counterfactual.
  api = inference.counterfactual_of_image(
      quick_chest_workdir, "seg", np.asarray(image[1]["image"]),
      {"left_lung_area": "-15%", "heart_area": "+10%"}, {"age": 50, "sex": "male"})
  np.testing.assert_array_equal(api.counterfactual, np.asarray(cf))


def test_bad_inputs_fail_with_one_line(quick_chest_workdir, image, tmp_path, capsys):
  img = image[0]
  rgb = str(tmp_path / "rgb.png")
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(rgb)
  small = str(tmp_path / "small.png")
  Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(small)
  csv = tmp_path / "p.csv"
  csv.write_text("sex,age\nF,61\n")
  w, out = quick_chest_workdir, str(tmp_path / "out")
  cases = {
      "intervenable variables": [f"--workdir={w}", f"--input={img}", "--do", "lung=3",
                                 "--age=5", "--sex=0", f"--out={out}"],
      "Malformed --do": [f"--workdir={w}", f"--input={img}", "--do", "heart_area:3",
                         f"--out={out}"],
      "RGB image": [f"--workdir={w}", f"--input={rgb}", "--do", "heart_area=3", "--age=5",
                    "--sex=0", f"--out={out}"],
      "16x16 pixels": [f"--workdir={w}", f"--input={small}", "--do", "heart_area=3",
                       "--age=5", "--sex=0", f"--out={out}"],
      "has not been trained": [f"--workdir={w}", "--method=pos_seg", f"--input={img}", "--do",
                               "heart_area=3", f"--out={out}"],
      "cannot be measured": [f"--workdir={w}", f"--input={img}", "--do", "heart_area=3",
                             f"--out={out}"],
      "given both": [f"--workdir={w}", f"--input={img}", "--do", "heart_area=3",
                     f"--parents={csv}", "--age=3", f"--out={out}"],
      "Unknown method": [f"--workdir={w}", "--method=unet", f"--input={img}", "--do",
                         "heart_area=3", f"--out={out}"],
  }
  for message, argv in cases.items():
    capsys.readouterr()
    assert counterfactual.main(argv) == 1, message
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err, (message, err)
  assert not os.path.exists(out)


def test_command_line_entry_point(tmp_path):
  r = subprocess.run([sys.executable, "-m", "segcft_jax.counterfactual",
                      f"--workdir={tmp_path}", "--input=x.png", "--do", "heart_area=3",
                      f"--out={tmp_path / 'o'}"], cwd=ROOT, capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 1 and r.stderr.strip().startswith("error: Method seg_cft")
  r = subprocess.run([sys.executable, "-m", "segcft_jax.counterfactual", "--input=x.png"],
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "required" in r.stderr
