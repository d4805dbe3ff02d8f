"""Every stage through evaluate on real-format data: PadChest fixture files, Morpho-MNIST, and
folders of phantom files (one declared by the shipped template, one by the inspector).

Each runs the command line once (one CPU device, step counts cut to a handful) and checks what
the stages wrote: the measured normalisation, the evaluation's metrics and report.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from segcft_jax import builders, config_files
from segcft_jax import workdir as workdir_lib
from segcft_jax.data import datasets, padchest
from segcft_jax.models import hvae_arch
from segcft_jax.scm import measured

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests import conftest  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.data import test_folder  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.data import test_padchest  # pylint: disable=g-import-not-at-top,wrong-import-position
# The shared quick chest workdir's step counts (tests/conftest.py: the same schedules, so
# programs the data does not enter can be shared through the compilation cache), a smaller
# evaluation.
_SHORT = (*conftest.QUICK_CHEST_OVERRIDES, "--config.evaluate.num_examples=16",
          "--config.evaluate.composition_examples=16", "--config.evaluate.figure_examples=1")


def _main(config: str, workdir, *extra: str) -> subprocess.CompletedProcess:
  return conftest.run_main(config, workdir, *_SHORT, *extra)


def _read(workdir, stage: str, name: str) -> dict:
  with open(os.path.join(workdir_lib.stage_dir(str(workdir), stage), name)) as f:
    return json.load(f)


def _check_measured(workdir, names, norm: str) -> dict:
  """The data stage measured `names` under `norm`, and the HVAE stage ran with those numbers."""
  stats = _read(workdir, "data", "summary.json")["normalisation"]
  hvae_scm = _read(workdir, "hvae", "config.json")["scm"]["variables"]
  for name in names:
    s = stats[name]
    assert s["norm"] == norm and s["std"] > 0
    assert hvae_scm[name]["mean"] == s["mean"] and hvae_scm[name]["std"] == s["std"]
  return stats


def _check_evaluation(workdir, variables, methods=("no_cft", "reg_cft", "seg_cft")) -> dict:
  """Every method's effectiveness of every intervened variable is a finite error."""
  metrics = _read(workdir, "evaluate", "metrics.json")
  assert set(metrics["methods"]) == set(methods)
  for method in metrics["methods"].values():
    assert set(method["effectiveness"]) == set(variables)
    for v in variables:
      assert np.isfinite(method["effectiveness"][v]["mae"])
    assert np.isfinite(method["fit"]["bpd"])
  assert os.path.isfile(os.path.join(workdir_lib.stage_dir(str(workdir), "evaluate"),
                                     "report.md"))
  return metrics


def test_padchest_every_stage_on_fixture_files(tmp_path):
  manual = tmp_path / "manual"
  kept = test_padchest.write_fixture(manual, bad=True, extra=32)
  work = tmp_path / "work"
  r = _main("configs/padchest.py:quick", work, f"--config.data.manual_dir={manual}",
            "--config.data.split_fractions=(0.6,0.2,0.2)", "--config.data.max_skip_fraction=0.5",
            "--config.pgm.batch_size=16")  # 25 training images
  assert r.returncode == 0, r.stderr[-3000:]
  data = _read(work, "data", "summary.json")
  assert sum(data["splits"].values()) == len(kept)
  # The areas' log statistics were measured on the train split and used by every later stage.
  assert set(data["normalisation"]) == set(padchest.AREAS)
  stats = _check_measured(work, padchest.AREAS, "log_standard")
  # The fixture's left lung covers ~14 % of the 48x48 padded image: ~145 px at 32x32.
  assert abs(stats["left_lung_area"]["mean"] - np.log(0.14 * 32 ** 2)) < 0.3
  _check_evaluation(work, stats)


# causal-gen's mimic192 HVAE has 7,976,658 parameters with its six context columns (measured
# from the reference; tests/models/test_hvae.py checks parity). Each context column feeds the
# same layers, 7,104 weights of them, so the paper variant's five columns give 7,969,554.
REFERENCE_CHEST192, PER_CONTEXT_COLUMN = 7_976_658, 7_104


def test_padchest_paper_variant_initialises_the_reference_chest_hvae(capsys):
  config = config_files.load(os.path.join(ROOT, "configs", "padchest.py:paper"))
  assert config.is_locked and config.data.image_size == 192 and config.hvae.batch_size == 16
  # The data stage measures the areas' statistics; the architecture does not depend on them.
  config = measured.fill(config, {a: dict(norm="log_standard", mean=8.0, std=0.25)
                                  for a in padchest.AREAS}, "a stand-in data summary")
  model = builders.make_hvae(config)
  assert model.config == hvae_arch.chest192(5)  # sex, age and three areas
  x = jnp.zeros((1, 192, 192, 1))
  pa = jnp.zeros((1, model.config.context_dim))
  key = jax.random.key(0)
  shapes = jax.eval_shape(lambda: model.init({"params": key, "sample": key,
                                              "cond_dropout": key}, x, pa))
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes))
  with capsys.disabled():
    print(f"\npadchest:paper HVAE parameters: {count:,}")
  assert count == REFERENCE_CHEST192 - PER_CONTEXT_COLUMN == 7_969_554
  assert hvae_arch.chest192(6) == dataclasses.replace(model.config, context_dim=6)


def test_morphomnist_every_stage_on_real_digits(tmp_path):
  work = tmp_path / "work"
  r = _main("configs/morphomnist.py:quick", work, "--config.data.num_train=128",
            "--config.data.num_validation=32", "--config.data.num_test=32")
  assert r.returncode == 0, r.stderr[-3000:]
  metrics = _check_evaluation(work, ("thickness", "intensity", "stroke_area"))
  # The oracle's thickness and intensity are the non-learned morphometric measurements.
  assert metrics["conventions"]["morphometric"]["variables"] == ["thickness", "intensity"]
  seg = metrics["methods"]["seg_cft"]["effectiveness"]
  assert {seg[v]["measured_by"] for v in seg} == {"oracle"}
  assert set(seg["thickness"]["by_predictor"]) == {"oracle", "regressor"}
  assert seg["stroke_area"]["predictor"] == "segmentor_soft"  # Seg-CFT's own measurement


def _phantom_folder(tmp_path, name: str, **kw):
  """A folder of the 32x32 phantom's 24 / 8 / 8 examples as PNGs and a table."""
  data = ml_collections.ConfigDict(dict(name=name, data_dir="", seed=0, image_size=32,
                                        num_train=24, num_validation=8, num_test=8))
  b = datasets.builder(data, str(tmp_path / "native"))
  b.download_and_prepare(file_format="array_record")
  recs = {s: [b.as_data_source(s)[i] for i in range(len(b.as_data_source(s)))]
          for s in ("train", "validation", "test")}
  root = tmp_path / "folder"
  test_folder.write_folder(root, recs, **kw)
  return root


def test_folder_of_chest_files_runs_every_stage_with_the_template(tmp_path):
  root = _phantom_folder(tmp_path, "synth_chest", sex_text=False)
  work = tmp_path / "work"
  r = _main("configs/folder.py:quick", work, f"--config.data.directory={root}",
            "--config.pgm.batch_size=16")
  assert r.returncode == 0, r.stderr[-3000:]
  assert _read(work, "data", "summary.json")["splits"] == {"train": 24, "validation": 8,
                                                           "test": 8}
  _check_measured(work, ("left_lung_area", "right_lung_area", "heart_area"), "log_standard")
  _check_measured(work, ("age",), "standard")
  _check_evaluation(work, ("left_lung_area", "right_lung_area", "heart_area"))


def test_vessel_folder_declared_by_the_inspector_runs_through_pos_seg_cft(tmp_path):
  root = _phantom_folder(tmp_path, "synth_vessel", regions=True)
  regional = [f"{s}_area_{r}" for s in ("lumen", "calcified", "noncalcified")
              for r in ("proximal", "mid", "distal")]
  graph = "sex, age -> " + ", ".join(regional) + "".join(
      f"; calcified_area_{r}, noncalcified_area_{r} -> lumen_area_{r}"
      for r in ("proximal", "mid", "distal"))
  path = tmp_path / "my_vessels.py"
  r = subprocess.run([sys.executable, "-m", "segcft_jax.inspect", f"--dir={root}",
                      "--image_size=32", "--classes=background,lumen,calcified,noncalcified",
                      "--regions=proximal,mid,distal", f"--graph={graph}", f"--write={path}"],
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "calcified_area_mid" in r.stdout and "log1p_standard" in r.stdout
  work = tmp_path / "work"
  r = _main(f"{path}:quick", work, "--config.pgm.batch_size=16",
            "--config.cft_pos_seg.num_steps=4")
  assert r.returncode == 0, r.stderr[-3000:]
  config = _read(work, "hvae", "config.json")
  assert config["setting"] == "positional" and config["scm"]["variables"][
      "lumen_area_mid"]["parents"] == ["sex", "age", "calcified_area_mid",
                                       "noncalcified_area_mid"]
  # The inspector chose log1p for areas with zeros (plaques absent from a region), log for
  # the lumen, which is never empty.
  _check_measured(work, [v for v in regional if v.startswith("lumen")], "log_standard")
  _check_measured(work, [v for v in regional if not v.startswith("lumen")], "log1p_standard")
  _check_evaluation(work, regional, ("no_cft", "reg_cft", "seg_cft", "pos_seg_cft"))
