"""The regressor stage on the quick config: standardisation stats, units, and resumption."""

import json
import os

import numpy as np
import pytest

from segcft_jax import config_files, stages
from segcft_jax.stages import regressor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
synth_chest = config_files.load_module(os.path.join(ROOT, "configs", "synth_chest.py"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("reg"))
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with config.unlocked():
    config.regressor.num_steps = 30
  stages.run_stages(config, work, ["data", "regressor"])
  return work, config


def test_summary_reports_errors_in_data_units(workdir):
  work, _ = workdir
  summary = json.load(open(os.path.join(work, "regressor", "summary.json")))
  for area in synth_chest.AREAS:
    assert 0.0 < summary["test"][f"{area}/mape"] < 100.0
    assert summary["test"][f"{area}/mae"] > 0.0
  stats = regressor.load_stats(work)
  assert set(stats) == set(synth_chest.AREAS)
  # Quick images are 32x32: organ areas are tens to hundreds of pixels.
  assert all(10.0 < m < 1024.0 and s > 0 for m, s in stats.values())


def test_unknown_or_discrete_variable_is_rejected(workdir):
  _, config = workdir
  with pytest.raises(ValueError, match="not a variable"):
    regressor.variable_types(config, ["lung_volume"])
  assert regressor.variable_types(config, ["sex"]) == {"sex": "binary"}
  np.testing.assert_equal(list(regressor.variable_types(config, synth_chest.AREAS).values()),
                          ["continuous"] * 3)
