"""`python -m segcft_jax.counterfactual` end to end on the shared quick chest workdir."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files, counterfactual
from segcft_jax.data import datasets
from segcft_jax.evaluation import trained
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
  csv = tmp_path / "p.csv"
  csv.write_text("sex,age\nF,61\n")
  w, out = quick_chest_workdir, str(tmp_path / "out")
  cases = {
      "intervenable variables": [f"--workdir={w}", f"--input={img}", "--do", "lung=3",
                                 "--age=50", "--sex=0", f"--out={out}"],
      "Malformed --do": [f"--workdir={w}", f"--input={img}", "--do", "heart_area:3",
                         f"--out={out}"],
      "has 3 channels (RGB)": [f"--workdir={w}", f"--input={rgb}", "--do", "heart_area=3",
                               "--age=50", "--sex=0", f"--out={out}"],
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


# -- bad input, each answered with one line before any model loads ----------------------------


def _copy_with(work, tmp_path, stage):
  """A copy of workdir `work` to damage: stage `stage` copied, every other entry linked."""
  copy = tmp_path / "w"
  copy.mkdir()
  for name in os.listdir(work):
    if name == stage:
      shutil.copytree(os.path.join(work, name), copy / name)
    else:
      os.symlink(os.path.join(work, name), copy / name)
  return str(copy)


@pytest.fixture
def no_model(monkeypatch):
  """Fails the test if the command loads a model (the input should have been refused)."""
  def load(*args, **kwargs):
    raise AssertionError("the model was loaded")
  monkeypatch.setattr(trained, "load_trained", load)


def _one_line_error(argv, capfd) -> str:
  """Runs the command; asserts exit status 1 and one `error:` line, no traceback."""
  capfd.readouterr()
  assert counterfactual.main(argv) == 1
  err = capfd.readouterr().err.strip()
  assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
  return err


def _writable(directory) -> bool:
  try:
    with tempfile.NamedTemporaryFile(dir=directory):
      return True
  except OSError:
    return False


def _cf_args(work, img, out, *extra):
  return [f"--workdir={work}", f"--input={img}", "--age=21", "--sex=M", f"--out={out}",
          "--do", "heart_area=+10%", *extra]


def test_damaged_weights_name_the_stage_and_the_repair(quick_chest_workdir, image, tmp_path):
  """Item 1: a truncated oracle weights file, in a fresh process (a failed asynchronous
  Orbax restore would print tracebacks even at exit)."""
  work = _copy_with(quick_chest_workdir, tmp_path, "oracle")
  data = os.path.join(work, "oracle", "weights", "params", "ocdbt.process_0", "d")
  largest = max((os.path.join(data, f) for f in os.listdir(data)), key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(100)
  r = subprocess.run([sys.executable, "-m", "segcft_jax.counterfactual",
                      *_cf_args(work, image[0], tmp_path / "out")], cwd=ROOT,
                     capture_output=True, text=True, timeout=300)
  err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert r.returncode == 1 and len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert err[0].startswith(f"error: The oracle weights in {work}/oracle/weights/params are "
                           f"damaged (array ")
  assert f"move {work}/oracle aside and re-run that stage: python -m segcft_jax.main " \
         f"--config=configs/synth_chest.py:quick --workdir={work} --stages=oracle." in err[0]
  assert "python -m segcft_jax.export" in err[0] and not os.path.exists(tmp_path / "out")


def test_edited_or_invalid_config_json_names_the_file(quick_chest_workdir, image, tmp_path,
                                                      capfd, no_model):
  """Item 1: an architecture field changed, a field deleted, and invalid JSON in the
  method stage's config.json."""
  work = _copy_with(quick_chest_workdir, tmp_path, "cft_seg")
  path = os.path.join(work, "cft_seg", "config.json")
  original = open(path).read()
  config = json.loads(original)
  config["hvae"]["model"]["widths"][0] *= 2
  with open(path, "w") as f:
    json.dump(config, f)
  err = _one_line_error(_cf_args(work, image[0], tmp_path / "o"), capfd)
  assert err.startswith(f"error: The cft_seg weights in {work}/cft_seg/weights were trained "
                        f"for another architecture than {path} describes (model.widths: ")
  assert err.endswith(f"restore that config.json as the stage wrote it, or move "
                      f"{work}/cft_seg aside and re-run that stage: python -m segcft_jax.main "
                      f"--config=configs/synth_chest.py:quick --workdir={work} "
                      f"--stages=cft_seg.")
  del config["oracle"]["model"]["widths"]
  with open(path, "w") as f:
    json.dump(config, f)
  err = _one_line_error(_cf_args(work, image[0], tmp_path / "o"), capfd)
  assert err.startswith(f"error: {path} does not describe networks this package can build "
                        f"(KeyError: ")
  with open(path, "w") as f:
    f.write(original.replace("{", '{"x": ,', 1))
  err = _one_line_error(_cf_args(work, image[0], tmp_path / "o"), capfd)
  assert err.startswith(f"error: {path} is not valid JSON (Expecting value: line 1")


def test_unusable_paths_are_named_before_loading(quick_chest_workdir, image, tmp_path, capfd,
                                                 no_model):
  """Item 2: --input a directory (or a truncated PNG), --out a file (or below one) or
  read-only, --workdir a file."""
  w, img = quick_chest_workdir, image[0]
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  assert _one_line_error(_cf_args(w, tmp_path, tmp_path / "o"), capfd) == (
      f"error: Input image {tmp_path} is a directory; give the path of an image file.")
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(open(img, "rb").read()[:200])
  err = _one_line_error(_cf_args(w, truncated, tmp_path / "o"), capfd)
  assert err.startswith(f"error: Input image: cannot decode {truncated} (") and err.endswith(
      "(the file is damaged, incomplete or not an image).")
  assert _one_line_error(_cf_args(w, img, a_file), capfd) == (
      f"error: Output directory {a_file} is a file; give a directory with --out.")
  assert _one_line_error(_cf_args(w, img, a_file / "sub"), capfd) == (
      f"error: Output directory {a_file}/sub lies under the file {a_file}; give a directory "
      f"with --out.")
  assert _one_line_error(_cf_args(a_file, img, tmp_path / "o"), capfd) == (
      f"error: Workdir {a_file} is a file, not a directory; give the directory a training "
      f"run wrote (e.g. runs/synth_chest).")
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o555)
  if _writable(read_only):  # root writes anywhere: try a directory of the kernel's
    read_only = pathlib.Path("/sys")
    if _writable(read_only):
      pytest.skip("no read-only directory to test with")
  err = _one_line_error(_cf_args(w, img, read_only / "out"), capfd)
  assert err.startswith(f"error: Output directory {read_only}/out cannot be written (")
  assert err.endswith(f" in {read_only}); choose a writable place with --out.")


def test_parents_are_checked_against_their_support_before_loading(quick_chest_workdir, image,
                                                                  tmp_path, capfd, no_model):
  """Item 3: sex and age values worded by their flag and their support."""
  w, out = quick_chest_workdir, tmp_path / "o"
  for flag, message in [
      ("--sex=X", "error: --sex=X: sex must be 0/F/female or 1/M/male."),
      ("--sex=0.5", "error: --sex=0.5: sex must be 0/F/female or 1/M/male."),
      ("--age=-5", "error: --age=-5: age must be in [18.0, 90.0]."),
      ("--age=abc", "error: --age=abc: age must be a number (in [18.0, 90.0])."),
      ("--age=+5%", "error: --age=+5%: age must be an absolute value, not a relative change."),
  ]:
    argv = [a for a in _cf_args(w, image[0], out) if not a.startswith(flag.split("=")[0])]
    assert _one_line_error(argv + [flag], capfd) == message
  csv = tmp_path / "p.csv"
  csv.write_text("sex,age\nF,200\n")
  argv = [f"--workdir={w}", f"--input={image[0]}", f"--parents={csv}", f"--out={out}", "--do",
          "heart_area=70"]
  assert _one_line_error(argv, capfd) == f"error: age=200 in {csv}: age must be in [18.0, 90.0]."


def test_regions_of_a_model_without_regions_are_refused(quick_chest_workdir, image, tmp_path,
                                                        capfd, no_model):
  """Item 3: --regions on a whole-structure (non-positional) model."""
  err = _one_line_error(_cf_args(quick_chest_workdir, image[0], tmp_path / "o",
                                 f"--regions={image[0]}"), capfd)
  assert err == ("error: This model has no regions (it measures whole-structure areas; only a "
                 "positional model, e.g. pos_seg, reads a region map): leave out --regions "
                 "(regions=None in Python).")


def test_16_bit_png_is_rescaled_by_its_range_with_a_warning(quick_chest_workdir, image,
                                                            tmp_path, capfd):
  """Item 3: a 16-bit grey PNG is accepted, scaled by its own min / max to 0..255."""
  raw = np.asarray(image[1]["image"])[..., 0].astype(np.uint16) * 200 + 500
  path = str(tmp_path / "x16.png")
  Image.fromarray(raw).save(path)
  assert Image.open(path).mode.startswith("I;16")
  out = tmp_path / "out"
  capfd.readouterr()
  assert counterfactual.main(_cf_args(quick_chest_workdir, path, out)) == 0
  err = capfd.readouterr().err
  lo, hi = int(raw.min()), int(raw.max())
  assert (f"warning: {path} is a 16-bit PNG: rescaled by its own min / max ({lo} .. {hi}) to "
          f"0..255 for the model, which reads 8-bit images; save an 8-bit PNG to choose the "
          f"scaling yourself.") in err.splitlines() and "Traceback" not in err
  u8 = np.asarray(image[1]["image"])[..., 0].astype(np.float64)
  expected = np.round((u8 - u8.min()) / (u8.max() - u8.min()) * 255)
  request = inference.check_request(inference.load_config(quick_chest_workdir, "seg_cft"), path,
                                    {"heart_area": "+10%"}, {"age": 21, "sex": 1})
  np.testing.assert_allclose(request.image, expected, atol=1)
  assert json.load(open(out / "result.json"))["warnings"] == request.warnings


def test_far_targets_and_a_uniform_image_warn(quick_chest_workdir, tmp_path, capfd):
  """Item 3: an area beyond the image's pixel count, and an all-black input."""
  black = str(tmp_path / "black.png")
  Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(black)
  argv = _cf_args(quick_chest_workdir, black, tmp_path / "o")[:-2]  # without its --do
  capfd.readouterr()
  assert counterfactual.main(argv + ["--do", "heart_area=100000"]) == 0
  warnings = [l for l in capfd.readouterr().err.splitlines() if l.startswith("warning:")]
  assert warnings == [
      "warning: heart_area=100000 is far outside the training distribution (it is more than "
      "the image's 1024 pixels); the counterfactual extrapolates beyond what the model was "
      "trained on.",
      "warning: The input image is uniform (pixel mean 0.0, std 0): far outside the training "
      "distribution; the oracle's areas and the counterfactual will mean little."]


def test_help_speaks_to_users(capsys):
  """Item 4: --help exits 0 with what the command does and an example."""
  with pytest.raises(SystemExit) as exit_info:
    counterfactual.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith("Makes the counterfactual of your own image with a trained workdir")
  assert ("python -m segcft_jax.counterfactual --workdir=runs/synth_chest --method=seg\n"
          "      --input=img.png --do left_lung_area=-15% --do heart_area=+10% --age=54 --sex=M"
          ) in text
  assert "counterfactual.png" in text and "--sex: factual sex: 0/F/female or 1/M/male" in text


@pytest.mark.parametrize("shape,dtype,suffix", [((48, 48), np.uint8, ".png"),
                                                ((100, 100), np.uint8, ".png"),
                                                ((40, 56), np.uint16, ".png"),
                                                ((36, 36), np.float32, ".npy")])
def test_any_size_and_depth_maps_back_to_the_input(quick_chest_workdir, image, tmp_path,
                                                   capfd, shape, dtype, suffix):
  """Inputs of other sizes and depths: the dataset's mapping in, the inverse out."""
  base = np.asarray(Image.fromarray(np.asarray(image[1]["image"])[..., 0]).resize(
      shape[::-1], Image.BICUBIC)).astype(np.float64)
  raw = (base * (200 if dtype == np.uint16 else 1) + (500 if dtype == np.uint16 else 0))
  raw = raw.astype(dtype) if dtype != np.float32 else (raw / 255.0).astype(np.float32)
  path = str(tmp_path / f"x{suffix}")
  np.save(path, raw) if suffix == ".npy" else Image.fromarray(raw).save(path)
  out = tmp_path / "out"
  capfd.readouterr()
  assert counterfactual.main(_cf_args(quick_chest_workdir, path, out)
                             + ["--output_size=input"]) == 0
  err = capfd.readouterr().err
  assert "Traceback" not in err
  assert f"{path} is {shape[1]}x{shape[0]} pixels: zero-padded to a square and resized" in err
  written = np.asarray(Image.open(out / "counterfactual.png"))
  assert written.shape == shape
  if suffix == ".npy":
    values = np.load(out / "counterfactual.npy")
    assert values.shape == shape and values.dtype == np.float32
    assert raw.min() - 1e-6 <= values.min() and values.max() <= raw.max() + 1e-6
  else:
    assert written.dtype == dtype
    # Unchanged regions keep the input's intensity scale (not 0..255 for a 16-bit input).
    assert abs(np.median(written.astype(float)) - np.median(raw.astype(float))) < 0.1 * (
        raw.max() - raw.min())
