"""The method registry: every table, stage and command line reads one entry per method."""

import pytest

from segcft_jax import stages
from segcft_jax.cft import methods
from segcft_jax.evaluation import trained


def test_registry_entries():
  assert [m.key for m in methods.METHODS] == ["no_cft", "reg_cft", "seg_cft", "pos_seg_cft"]
  assert methods.CFT_STAGES == ("cft_reg", "cft_seg", "cft_pos_seg")
  assert [m.name for m in methods.METHODS] == ["No-CFT", "Reg-CFT", "Seg-CFT", "Pos-Seg-CFT"]
  assert methods.BY_KEY["pos_seg_cft"].settings == ("positional",)
  assert len({m.colour for m in methods.METHODS}) == len(methods.METHODS)
  # metrics.json's training_predictor comes from the registry, in its order.
  assert trained.TRAINING_PREDICTOR == {"reg_cft": "regressor", "seg_cft": "segmentor_soft",
                                        "pos_seg_cft": "segmentor_soft"}


def test_every_fine_tuning_stage_is_a_registered_stage():
  names = list(stages.REGISTRY)
  assert names[-1] == "evaluate" and names.index("hvae") < names.index("cft_reg")
  assert all(s in stages.REGISTRY for s in methods.CFT_STAGES)
  assert methods.display_name("seg_cft") == "Seg-CFT" and methods.display_name("x") == "x"


def test_method_names():
  assert methods.method_key("seg") == "seg_cft" and methods.method_key("Pos-Seg") == "pos_seg_cft"
  assert methods.method_key("no_cft") == "no_cft" and methods.method_key("none") == "no_cft"
  with pytest.raises(ValueError, match="Unknown method 'segmentor'; choose one of no_cft"):
    methods.method_key("segmentor")
