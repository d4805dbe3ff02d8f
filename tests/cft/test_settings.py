"""CFT settings parsed once: the weights mini-language, the curriculum and the checks."""

import os

import pytest

from segcft_jax import config_files
from segcft_jax.cft.settings import CFTSettings, parse_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(name="synth_chest.py:quick"):
  return config_files.load(os.path.join(ROOT, "configs", name))


def test_settings_of_every_stage_of_every_config():
  for name, stages in (("synth_chest.py:quick", ("cft_reg", "cft_seg")),
                       ("synth_vessel.py:positional_quick", ("cft_reg", "cft_seg",
                                                             "cft_pos_seg"))):
    config = _config(name)
    for stage in stages:
      s = CFTSettings.from_config(config, stage)
      cfg = config[stage]
      assert s.stage == stage and s.distance == cfg.distance and s.damping == cfg.damping
      assert s.intervenable == tuple(config.scm.intervenable)
      assert set(s.distance_weights) == set(s.measurements)
      assert len(s.draw_weights) == len(s.intervenable) and s.focus is None
  positional = _config("synth_vessel.py:positional_quick")
  pos = CFTSettings.from_config(positional, "cft_pos_seg")
  seg = CFTSettings.from_config(positional, "cft_seg")
  # Regional soft areas (one per variable) against one soft area per structure.
  assert len(pos.measurements) == 9 and seg.measurements == (
      "lumen_area", "calcified_area", "noncalcified_area")
  assert pos.balance == "structure" and pos.predictor == "positional"


def test_draw_weights_follow_the_intervenable_order():
  config = _config()
  with config.unlocked():
    config.cft_reg.draw_weights = "heart=4"
  s = CFTSettings.from_config(config, "cft_reg")
  assert dict(zip(s.intervenable, s.draw_weights)) == {
      "left_lung_area": 1.0, "right_lung_area": 1.0, "heart_area": 4.0}


def test_reuse_of_the_elbo_sample_needs_temperature_one():
  config = _config()
  assert CFTSettings.from_config(config, "cft_seg").reuse_latents
  with config.unlocked():
    config.cft_seg.t_abduct = 0.5
  assert not CFTSettings.from_config(config, "cft_seg").reuse_latents


@pytest.mark.parametrize("field,value,message", [
    ("distance", "l3", "is not one of"), ("balance", "norm", "balance='norm' is not one of"),
    ("distance", "nll", "for cft_reg only")])
def test_bad_fields_are_refused(field, value, message):
  config = _config()
  with config.unlocked():
    config.cft_seg[field] = value
  with pytest.raises(ValueError, match=message):
    CFTSettings.from_config(config, "cft_seg")


def test_distance_weights_apply_to_every_measurement_of_a_structure():
  regional = ("lumen_area_mid", "calcified_area_proximal", "calcified_area_mid")
  assert parse_weights("", regional) == {m: 1.0 for m in regional}
  assert parse_weights("calcified=3, lumen=0.5", regional) == {
      "lumen_area_mid": 0.5, "calcified_area_proximal": 3.0, "calcified_area_mid": 3.0}
  # The same spec weighs the global soft area (Seg-CFT) and the regressor's variable alike.
  assert parse_weights("calcified=3", ("lumen_area", "calcified_area")) == {
      "lumen_area": 1.0, "calcified_area": 3.0}
  with pytest.raises(ValueError, match="names .heart., which none of"):
    parse_weights("heart=2", regional)
  for bad in ("calcified", "calcified=0", "calcified=x"):
    with pytest.raises(ValueError, match="positive"):
      parse_weights(bad, regional)


@pytest.mark.parametrize("focus,steps,message", [
    ("", 5, "needs a focus"), ("hart", 5, "focus names 'hart'"), ("heart", 20, "num_steps"),
    ("heart", -1, "num_steps")])
def test_focus_refuses_bad_settings(focus, steps, message):
  config = _config()
  with config.unlocked():
    config.cft_seg.update(num_steps=20, focus=focus, focus_steps=steps)
  with pytest.raises(ValueError, match=message):
    CFTSettings.from_config(config, "cft_seg")
  with config.unlocked():
    config.cft_seg.focus_steps = 0  # No curriculum: the focus is ignored.
  assert CFTSettings.from_config(config, "cft_seg").focus is None
