"""Which class (and region) measures a variable, and what each predictor measures."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax import builders, config_files
from segcft_jax.cft import predictors
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.stages import cft as cft_stage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(spec):
  return config_files.load(os.path.join(ROOT, "configs", spec))


def test_measured_structure_of_chest_and_vessel_variables():
  chest = _config("synth_chest.py:quick")
  assert predictors.measured_structure(chest, "left_lung_area") == (1, None)
  assert predictors.measured_structure(chest, "heart_area") == (3, None)
  vessel = _config("synth_vessel.py:positional_quick")
  assert predictors.measured_structure(vessel, "calcified_area") == (2, None)
  assert predictors.measured_structure(vessel, "noncalcified_area_distal") == (3, 3)
  assert predictors.measured_structure(vessel, "lumen_area_proximal") == (1, 1)
  with pytest.raises(ValueError, match="region"):
    predictors.measured_structure(vessel, "lumen_area_apex")
  with pytest.raises(ValueError, match="not an area"):
    predictors.measured_structure(chest, "age")


def test_global_seg_cft_sums_the_regional_targets_and_pos_seg_keeps_them():
  vessel = _config("synth_vessel.py:positional_quick")
  regional = tuple(vessel.cft_variables)
  glob = predictors.segmentor_measurements(vessel, regional, positional=False)
  assert [m.name for m in glob] == ["lumen_area", "calcified_area", "noncalcified_area"]
  assert glob[1].targets == ("calcified_area_proximal", "calcified_area_mid",
                             "calcified_area_distal")
  pos = predictors.segmentor_measurements(vessel, regional, positional=True)
  assert [m.name for m in pos] == list(regional)
  with pytest.raises(ValueError, match="positional"):
    predictors.segmentor_measurements(vessel, ("lumen_area",), positional=True)


class _Perfect:
  """A stand-in U-Net whose logits are the one-hot labels stored in the image batch."""

  def __init__(self, labels):
    self.labels = labels

  def apply(self, variables, x):
    del variables, x
    return 50.0 * jax.nn.one_hot(self.labels, 4)


def test_segmentor_predictor_measures_soft_areas_of_its_output():
  labels = np.zeros((1, 12, 12), np.int32)
  labels[0, 2:5, :] = 1   # 36 px of class 1, 12 in each region of width 4
  labels[0, 8, 0:2] = 2   # 2 px of class 2 in region 1
  regions = np.broadcast_to(np.arange(12)[None, None, :] // 4 + 1, (1, 12, 12))
  vessel = _config("synth_vessel.py:positional_quick")
  batch = {"regions": jnp.asarray(regions)}
  x = jnp.zeros((1, 12, 12, 1))
  pos = predictors.segmentor_predictor(
      _Perfect(labels), predictors.segmentor_measurements(vessel, vessel.cft_variables, True),
      "positional")
  out = pos.measure({}, x, batch)
  assert float(out["lumen_area_mid"][0]) == pytest.approx(12.0, abs=1e-3)
  assert float(out["calcified_area_proximal"][0]) == pytest.approx(2.0, abs=1e-3)
  assert float(out["calcified_area_distal"][0]) == pytest.approx(0.0, abs=1e-3)
  glob = predictors.segmentor_predictor(
      _Perfect(labels), predictors.segmentor_measurements(vessel, vessel.cft_variables, False),
      "segmentor")
  assert float(glob.measure({}, x, batch)["lumen_area"][0]) == pytest.approx(36.0, abs=1e-3)
  values = {v: jnp.ones(1) for v in vessel.cft_variables}
  assert float(glob.targets(values)["lumen_area"][0]) == 3.0


def test_hybrid_seg_cft_measures_areas_by_soft_area_and_the_rest_by_the_regressor():
  config = _config("morphomnist.py:quick")
  settings = CFTSettings.from_config(config, "cft_seg")
  assert settings.regressor_for == ("thickness", "intensity")
  assert settings.measurements == ("stroke_area", "thickness", "intensity")
  predictor = cft_stage.unloaded_predictor(config, "segmentor", settings.regressor_for)
  assert predictor.names == settings.measurements and predictor.kind == "segmentor"
  x = jnp.zeros((2, 32, 32, 1))
  unet = builders.make_unet(config, "segmentor")
  regressor = builders.make_regressor(config, {v: (0.0, 1.0)
                                               for v in builders.regressor_types(config)})
  params = {"segmentor": unet.init(jax.random.PRNGKey(0), x)["params"],
            "regressor": regressor.model.init(jax.random.PRNGKey(1), x)["params"]}
  out = predictor.measure(params, x, {})
  probs = jax.nn.softmax(unet.apply({"params": params["segmentor"]}, x), axis=-1)
  np.testing.assert_allclose(out["stroke_area"], probs[..., 1].sum(axis=(1, 2)), rtol=1e-5)
  pred = regressor.predict(params["regressor"], x)
  np.testing.assert_allclose(out["thickness"], pred["thickness"], rtol=1e-6)
  with config.unlocked():
    config.cft_reg.regressor_for = ("thickness",)
  with pytest.raises(ValueError, match="segmentor stages"):
    CFTSettings.from_config(config, "cft_reg")
