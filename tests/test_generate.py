"""The generate command on the shared quick workdir: rows and files, resumption after an
interruption byte for byte, 8 devices against 1, and bad input in one line."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segcft_jax import generate
from segcft_jax.inference import generation
from tests.conftest import ROOT

ARGS = ("--method=seg", "--split=test", "--num_examples=24", "--per_image=2",
        "--do=heart_area=-15%", "--do=left_lung_area=-20%:+20%:20", "--shard_size=8",
        "--batch_size=8")


def _files(out) -> dict[str, bytes]:
  found = {}
  for folder, _, names in os.walk(out):
    for name in names:
      path = os.path.join(folder, name)
      found[os.path.relpath(path, out)] = open(path, "rb").read()
  return found


@pytest.fixture(scope="module")
def generated(quick_chest_workdir, tmp_path_factory):
  out = tmp_path_factory.mktemp("gen") / "a"
  assert generate.main([f"--workdir={quick_chest_workdir}", f"--out={out}", *ARGS]) == 0
  return out


def test_every_example_gets_every_rule_and_its_random_ones(generated):
  lines = open(generated / "counterfactuals.csv").read().splitlines()
  header, rows = lines[0].split(","), [l.split(",") for l in lines[1:]]
  assert len(rows) == 24 * (1 + 2 + 2)  # one rule, a two-step sweep, two random
  col = {c: i for i, c in enumerate(header)}
  heart = [r for r in rows if r[col["rule"]] == "-15%" and r[col["variable"]] == "heart_area"]
  assert len(heart) >= 24
  for r in heart[:24]:
    assert float(r[col["heart_area_after"]]) == pytest.approx(
        0.85 * float(r[col["heart_area_before"]]), rel=1e-5)
    assert r[col["age_after"]] == r[col["age_before"]]
  image = np.asarray(Image.open(generated / rows[0][col["file"]]))
  assert image.shape == (32, 32) and image.dtype == np.uint8
  assert len(os.listdir(generated / "images")) == len(rows)


def test_an_interrupted_run_resumes_to_the_same_files(quick_chest_workdir, generated,
                                                      tmp_path, monkeypatch):
  out = tmp_path / "b"
  shard = generation.Generator._shard  # pylint: disable=protected-access

  def interrupted_at_shard_2(self, s, *args):
    if s == 2:
      raise KeyboardInterrupt
    return shard(self, s, *args)

  monkeypatch.setattr(generation.Generator, "_shard", interrupted_at_shard_2)
  assert generate.main([f"--workdir={quick_chest_workdir}", f"--out={out}", *ARGS]) == 130
  assert sorted(os.listdir(out / "shards")) == ["00000.csv", "00001.csv"]
  monkeypatch.setattr(generation.Generator, "_shard", shard)
  assert generate.main([f"--workdir={quick_chest_workdir}", f"--out={out}", *ARGS]) == 0
  assert _files(out) == _files(generated)


def test_one_device_writes_the_images_of_eight(quick_chest_workdir, generated, tmp_path):
  env = dict(os.environ, XLA_FLAGS="")
  r = subprocess.run([sys.executable, "-m", "segcft_jax.generate",
                      f"--workdir={quick_chest_workdir}", f"--out={tmp_path / 'c'}", *ARGS],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  one, eight = _files(tmp_path / "c"), _files(generated)
  assert one.keys() == eight.keys()
  for name in (n for n in one if n.endswith(".png")):
    a = np.asarray(Image.open(tmp_path / "c" / name)).astype(int)
    b = np.asarray(Image.open(generated / name)).astype(int)
    assert np.abs(a - b).max() <= 1, name


@pytest.mark.parametrize("extra,expected", [
    (("--do=weight=3",), "--do 'weight=3': expected VARIABLE=VALUE with VARIABLE one of"),
    (("--do=heart_area=-150%",), "a change of -150% leaves no heart_area"),
    (("--do=heart_area=+30%:-30%:5",), "a sweep is FROM%:TO%:STEP with FROM <= TO"),
    ((), "No intervention: give --do rules and/or --per_image=K."),
])
def test_bad_rules_are_one_line(quick_chest_workdir, tmp_path, capsys, extra, expected):
  assert generate.main([f"--workdir={quick_chest_workdir}", f"--out={tmp_path / 'd'}",
                        *extra]) == 1
  err = capsys.readouterr().err
  assert expected in err and "Traceback" not in err
  assert not os.path.exists(tmp_path / "d")


def test_another_runs_output_is_refused(quick_chest_workdir, generated, capsys):
  args = [a for a in ARGS if not a.startswith("--per_image")] + ["--per_image=3"]
  assert generate.main([f"--workdir={quick_chest_workdir}", f"--out={generated}", *args]) == 1
  err = capsys.readouterr().err
  assert f"error: {generated} holds another generation (per_image: 2 -> 3)" in err


def test_overwrite_replaces_another_runs_files(quick_chest_workdir, tmp_path):
  base = [f"--workdir={quick_chest_workdir}", f"--out={tmp_path / 'e'}", "--num_examples=4",
          "--batch_size=8"]
  assert generate.main([*base, "--do=heart_area=-15%"]) == 0
  assert generate.main([*base, "--do=heart_area=+15%", "--overwrite"]) == 0
  rules = {l.split(",")[3] for l in open(tmp_path / "e" / "counterfactuals.csv").readlines()[1:]}
  assert rules == {"+15%"}


def test_a_folder_of_own_images_with_a_table(quick_chest_workdir, tmp_path, capfd):
  """Images of another size (48x48) and format (.npy), one unreadable, age and sex from a
  table, areas measured by the oracle."""
  from segcft_jax.data import datasets as datasets_lib  # pylint: disable=g-import-not-at-top
  from segcft_jax.inference import stored  # pylint: disable=g-import-not-at-top
  config = stored.load_config(quick_chest_workdir, "seg_cft")
  source = datasets_lib.open_split(
      datasets_lib.prepared_builder(config.data, quick_chest_workdir), "test")
  folder = tmp_path / "mine"
  folder.mkdir()
  lines = ["file,age,sex"]
  for i in range(5):
    r = source[i]
    big = Image.fromarray(np.asarray(r["image"])[..., 0]).resize((48, 48), Image.BICUBIC)
    name = f"img{i}.png" if i < 4 else f"img{i}.npy"
    big.save(folder / name) if i < 4 else np.save(folder / name, np.asarray(big))
    lines.append(f"{name},{float(r['age'])},{'M' if float(r['sex']) else 'F'}")
  (folder / "broken.png").write_bytes(b"not a png")
  (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
  args = [f"--workdir={quick_chest_workdir}", f"--input_dir={folder}",
          f"--parents={tmp_path / 'table.csv'}", "--do=heart_area=-15%",
          f"--out={tmp_path / 'f'}", "--batch_size=8", "--max_skip_fraction=0.2"]
  assert generate.main(args) == 0
  err = capfd.readouterr().err
  assert "warning: skipping broken.png: Input image: cannot decode" in err
  assert "Traceback" not in err
  rows = open(tmp_path / "f" / "counterfactuals.csv").read().splitlines()[1:]
  assert len(rows) == 5
  inputs = open(tmp_path / "f" / "inputs.csv").read().splitlines()
  assert inputs == ["example,file"] + [f"{i},img{i}.png" for i in range(4)] + ["4,img4.npy"]
  # Without the table, age cannot be measured: one line naming it.
  assert generate.main([a for a in args if not a.startswith("--parents")]
                       + [f"--out={tmp_path / 'g'}"]) == 1
  err = capfd.readouterr().err
  assert "img0.png: age, sex cannot be measured on an image; give them in --parents" in err
