"""The command line: the quick pipeline end to end, resumability, and bad-input messages."""

import json
import os
import subprocess
import sys

import pytest

from tests.train.test_events import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--config=configs/synth_chest.py:quick"


def _main(*args, timeout=600):
  return subprocess.run([sys.executable, "-m", "segcft_jax.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,expected", [
    ((QUICK, "--config.segmentor.num_stpes=3"),
     "config.segmentor has no field 'num_stpes'. Valid fields of config.segmentor: "),
    ((QUICK, "--config.dta.image_size=3"), "config has no field 'dta'"),
    (("--config=configs/synth_chest.py:quik",), "valid variants: default, quick"),
    ((QUICK, "--stages=data,segmentr"), "Unknown stage(s) ['segmentr']; valid stages"),
])
def test_bad_input_fails_at_once_with_the_valid_choices(args, expected, tmp_path):
  r = _main(*args, f"--workdir={tmp_path}", timeout=120)
  assert r.returncode != 0
  assert expected in r.stderr, r.stderr[-2000:]
  assert "Traceback" not in r.stderr
  assert not os.listdir(tmp_path)  # Nothing ran, nothing written.


def test_config_path_resolves_from_the_repository_or_says_where_it_looked(tmp_path):
  elsewhere = dict(cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
  # The README's relative path, run from another directory: found in the repository (the
  # run then stops at the bad stage name, before anything is written).
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", QUICK, "--stages=nope",
                      f"--workdir={tmp_path / 'w'}"], **elsewhere)
  assert r.returncode == 1 and "Unknown stage(s) ['nope']" in r.stderr, r.stderr[-2000:]
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", "--config=configs/nope.py"],
                     **elsewhere)
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert r.stderr.strip() == (f"error: Config file configs/nope.py not found: looked in "
                              f"{tmp_path} and in {ROOT}. Give its path, e.g. "
                              f"--config=configs/synth_chest.py.")
  assert not os.listdir(tmp_path)


def test_quick_pipeline_end_to_end_and_skip_on_rerun(tmp_path):
  work = str(tmp_path / "run")
  args = (QUICK, f"--workdir={work}", "--stages=data,segmentor,oracle",
          "--config.segmentor.num_steps=24", "--config.oracle.num_steps=24")
  r = _main(*args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "ETA" in r.stderr  # The progress line.
  for stage in ("data", "segmentor", "oracle"):
    assert os.path.exists(os.path.join(work, stage, "summary.json"))
    with open(os.path.join(work, stage, "config.json")) as f:
      assert json.load(f)["variant"] == "quick"
  seg = json.load(open(os.path.join(work, "segmentor", "summary.json")))
  assert set(seg["test"]["dice"]) == {"background", "left_lung", "right_lung", "heart"}
  assert 0.0 <= seg["test"]["mean_foreground_dice"] <= 1.0 and seg["steps"] == 24
  lines = [json.loads(l) for l in open(os.path.join(work, "segmentor", "metrics.jsonl"))]
  assert {"step", "loss", "img_per_s", "grad_norm", "input_share"} <= set(lines[0])
  # The host's batch time per step: positive, and a fraction of the interval's wall time.
  assert all(0 < l["input_ms_per_step"] and 0 < l["input_share"] < 1
             for l in lines if "input_share" in l)
  assert 0 < seg["train_input_share"] < 1
  assert any(l.get("split") == "validation" for l in lines)
  data = json.load(open(os.path.join(work, "data", "summary.json")))
  assert data["splits"] == {"train": 256, "validation": 64, "test": 64}
  # The same scalars as TensorBoard events beside metrics.jsonl.
  tb = read_events(os.path.join(work, "segmentor"))
  assert [s for s, _ in tb["train/loss"]] == [l["step"] for l in lines
                                             if "loss" in l and "split" not in l]
  assert any(t.startswith("validation/") for t in tb)

  before = open(os.path.join(work, "segmentor", "summary.json")).read()
  r = _main(*args)  # Everything is complete: every stage is skipped.
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stderr.count("skipping") == 3
  assert open(os.path.join(work, "segmentor", "summary.json")).read() == before


def test_missing_dataset_gets_a_clear_message(tmp_path):
  r = _main(QUICK, f"--workdir={tmp_path}", "--stages=segmentor", timeout=120)
  assert r.returncode != 0
  assert "is not built" in r.stderr and "--stages=data" in r.stderr
