"""Normalisation statistics measured on the train split (scm.measured, stages.with_measured)."""

import ml_collections
import numpy as np
import pytest

from segcft_jax import stages
from segcft_jax import workdir as workdir_lib
from segcft_jax.scm import measured
from segcft_jax.scm.graph import Graph


def _config(**area) -> ml_collections.ConfigDict:
  area = dict(dict(type="continuous", parents=("age",), norm="log_standard", mean=None,
                   std=None), **area)
  c = ml_collections.ConfigDict(dict(scm=dict(variables=dict(
      age=dict(type="continuous", parents=(), norm="range", low=0.0, high=100.0),
      sex=dict(type="binary", parents=()), area=area))))
  c.lock()
  return c


def test_measure_is_the_moments_of_the_norms_transform():
  v = np.array([1.0, np.e, np.e ** 2, np.e ** 3])
  s = measured.measure(v, "log_standard")
  assert s == dict(mean=1.5, std=round(float(np.std([0, 1, 2, 3])), 6))
  assert measured.measure(np.array([0.0, 2.0]), "standard") == dict(mean=1.0, std=1.0)
  np.testing.assert_allclose(measured.measure(np.array([0.0, np.e - 1]), "log1p_standard")
                             ["mean"], 0.5)
  with pytest.raises(ValueError, match="area: norm='log_standard' needs positive values.*min 0"):
    measured.measure(np.array([0.0, 1.0]), "log_standard", "area")
  with pytest.raises(ValueError, match="constant"):
    measured.measure(np.array([3.0, 3.0]), "standard")


def test_fill_copies_and_normalises_like_the_measured_moments():
  c = _config()
  assert measured.unmeasured(c.scm) == ("area",)
  areas = np.array([50.0, 80.0, 120.0, 200.0])
  stats = measured.statistics(c.scm, {"area": areas, "age": np.array([1.0, 2, 3, 4])})
  assert set(stats) == {"area"}  # range norms are declared, never measured
  filled = measured.fill(c, stats, "here")
  assert c.scm.variables.area.mean is None and filled.is_locked
  assert measured.unmeasured(filled.scm) == ()
  z = np.asarray(Graph.from_config(filled.scm).normalize({"area": areas})["area"])
  np.testing.assert_allclose([z.mean(), z.std()], [0.0, 1.0], atol=1e-5)
  declared = _config(mean=4.0, std=0.5)
  assert measured.fill(declared, {}, "here") is declared
  with pytest.raises(ValueError, match="here has no log_standard statistics of 'area'"):
    measured.fill(c, {"area": dict(norm="standard", mean=1.0, std=1.0)}, "here")


def test_stages_after_data_need_its_measurement(tmp_path):
  c = _config()
  with pytest.raises(ValueError, match=r"mean / std of area .* run --stages=data first"):
    stages.with_measured(c, str(tmp_path))
  workdir_lib.write_summary(str(tmp_path), "data", {"normalisation": {}})
  with pytest.raises(ValueError, match=r"data/summary.json has no log_standard statistics"):
    stages.with_measured(c, str(tmp_path))
  workdir_lib.write_summary(str(tmp_path), "data", {"normalisation": {
      "area": dict(norm="log_standard", mean=4.5, std=0.3)}})
  filled = stages.with_measured(c, str(tmp_path))
  assert (filled.scm.variables.area.mean, filled.scm.variables.area.std) == (4.5, 0.3)
