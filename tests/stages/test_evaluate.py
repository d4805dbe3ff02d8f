"""The evaluate stage on the shared quick chest workdir: SPEC §4 layout, determinism, report."""

import json
import os

import pytest

from segcft_jax import config_files, stages
from segcft_jax.stages import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AREAS = ("left_lung_area", "right_lung_area", "heart_area")


@pytest.fixture(scope="module")
def config():
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with config.unlocked():  # 12 examples in batches of 8: the second batch is padded.
    config.evaluate.num_examples = 12
    config.evaluate.batch_size = 8
    config.evaluate.composition_examples = 8
    config.evaluate.figure_examples = 2
  return config


@pytest.fixture(scope="module")
def runs(quick_chest_workdir, config, tmp_path_factory):
  """Two evaluations: `evaluate.evaluate` into a fresh directory, and the registered stage
  through `run_stages` on a workdir whose stage directories link to the shared one."""
  first = str(tmp_path_factory.mktemp("eval_direct"))
  evaluate.evaluate(config, quick_chest_workdir, first)
  linked = str(tmp_path_factory.mktemp("eval_stage"))
  for name in os.listdir(quick_chest_workdir):
    os.symlink(os.path.join(quick_chest_workdir, name), os.path.join(linked, name))
  stages.run_stages(config, linked, ["evaluate"])
  return first, os.path.join(linked, "eval")


def test_registered_last_and_writes_eval_dir(runs):
  assert list(stages.REGISTRY)[-1] == "evaluate"
  _, stage_dir = runs
  for name in ("metrics.json", "report.md", "summary.json", "config.json"):
    assert os.path.exists(os.path.join(stage_dir, name)), name
  summary = json.load(open(os.path.join(stage_dir, "summary.json")))
  assert summary["methods"] == ["no_cft", "reg_cft", "seg_cft"]
  assert summary["num_examples"] == 12


def test_metrics_json_is_byte_identical_on_a_second_run(runs):
  first, second = (open(os.path.join(d, "metrics.json"), "rb").read() for d in runs)
  assert first == second


def test_metrics_have_the_spec_layout(runs):
  m = json.load(open(os.path.join(runs[0], "metrics.json")))
  assert m["conventions"]["measured_by"] == "oracle"
  assert m["conventions"]["pixel_units"] == "0-255" and m["conventions"]["num_examples"] == 12
  assert set(m["methods"]) == {"no_cft", "reg_cft", "seg_cft"}
  for key, block in m["methods"].items():
    assert set(block["effectiveness"]) == set(AREAS)
    for v in AREAS:
      eff = block["effectiveness"][v]
      assert eff["mape"] >= 0 and eff["mae"] >= 0 and eff["measured_by"] == "oracle"
      assert set(eff["by_target"]) == {"permutation", "-30%", "-15%", "+15%", "+30%"}
      assert set(eff["by_predictor"]) == {"oracle", "segmentor_soft", "segmentor_hard",
                                          "regressor"}
      assert ("mape_by_predictor" in eff) == (key != "no_cft")
      assert block["preservation"][v]["mape"] >= 0
      assert 0.0 <= block["localisation"][v]["outside_share"] <= 1.0
      assert block["true_cf"][v]["mae"] >= 0 and block["true_cf"][v]["psnr"] > 0
    # A null intervention returns the image up to float rounding (abducted pixel noise).
    assert block["composition"]["l1_1"] < 0.01 and "l1_10" in block["composition"]
    assert block["reversibility"]["l1"] >= 0 and block["fit"]["bpd"] > 0
  for ref in ("oracle_on_factual", "oracle_on_true_cf", "true_cf_localisation"):
    assert set(m["reference"][ref]) == set(AREAS)
  for v, loc in m["reference"]["true_cf_localisation"].items():
    assert 0.0 <= loc["outside_share"] <= 1.0 and loc["outside_shift_abs"] >= 0.0, (v, loc)
  # A true lung counterfactual changes pixels within 1 px of the old/new masks only, so what the
  # oracle's (imperfect, 32x32) masks leave outside the dilated target is a small share.
  for v in ("left_lung_area", "right_lung_area"):
    assert m["reference"]["true_cf_localisation"][v]["outside_share"] < 0.5
  exposure = m["reference"]["exposure_sensitivity"]
  assert m["conventions"]["exposure_gains"] == [0.9, 1.1]
  assert set(exposure) == {"oracle", "segmentor_soft", "segmentor_hard", "regressor"}
  for p, block in exposure.items():
    assert set(block) == set(AREAS)
    for v in AREAS:
      assert set(block[v]) == {"gain_0.9", "gain_1.1"}
      assert all(abs(c) < 100.0 for c in block[v].values()), (p, v, block[v])
  assert m["methods"]["seg_cft"]["effectiveness"]["heart_area"]["predictor"] == "segmentor_soft"
  assert m["methods"]["reg_cft"]["effectiveness"]["heart_area"]["predictor"] == "regressor"


def test_report_and_figures(runs):
  text = open(os.path.join(runs[0], "report.md")).read()
  for row in ("| No-CFT |", "| Reg-CFT |", "| Seg-CFT |"):
    assert row in text
  assert "## Expected ordering" in text and "Seg-CFT < Reg-CFT < No-CFT" in text
  assert "## Exposure sensitivity of the predictors, % change at gain 0.9 / 1.1" in text
  assert "| regressor |" in text
  assert text.count("| *true CF* |") == 2  # outside share and |outside shift| tables
  assert any(s in text for s in ("**holds**", "**does not hold**"))
  figs = sorted(os.listdir(os.path.join(runs[0], "figures")))
  assert figs == sorted([f"counterfactuals_{v}.png" for v in AREAS]
                        + ["localisation.png", "sweep.png"])
  for f in figs:
    assert f"figures/{f}" in text
