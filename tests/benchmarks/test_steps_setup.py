"""The throughput benchmark's configurations (benchmarks/steps.py): architectures, batches,
which steps apply, and synthetic batches inside every variable's support. Nothing is timed
or compiled here."""

import os
import sys

import numpy as np
import pytest

from segcft_jax.models import hvae_arch
from segcft_jax.scm.graph import Graph
from segcft_jax import builders

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, ROOT)
from benchmarks import steps  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize("name,reference,batch", [
    ("morphomnist", hvae_arch.morphomnist(), 32),
    ("chest64", hvae_arch.chest64(5), 32),
    ("chest192", hvae_arch.chest192(5), 16),
])
def test_reference_architectures_and_batches(name, reference, batch):
  for step in ("train", "counterfactual", "cft_reg"):
    config = steps.bench_config(name, step)
    model = builders.make_hvae(config)
    assert model.config == reference
    assert steps.default_batch(config, step) == batch


def test_pos_seg_uses_the_vessel_graph_with_the_same_architecture():
  for name in ("synth_chest", "chest64", "chest192"):
    base = steps.bench_config(name, "cft_seg")
    config = steps.bench_config(name, "cft_pos_seg")
    assert config.setting == "positional" and config.data.image_size == base.data.image_size
    assert config.hvae.model.to_dict() == base.hvae.model.to_dict()
    assert steps.default_batch(config, "cft_pos_seg") == steps.default_batch(base, "cft_seg")
    model = builders.make_hvae(config)
    assert model.config.input_res == base.data.image_size
    assert model.config.context_dim == 11  # sex, age and the nine regional areas


def test_morphomnist_has_reg_cft_only():
  assert steps.bench_config("morphomnist", "cft_seg") is None
  assert steps.bench_config("morphomnist", "cft_pos_seg") is None
  config = steps.bench_config("morphomnist", "cft_reg")
  assert tuple(config.scm.intervenable) == ("thickness", "intensity")
  assert tuple(config.regressor.variables) == ("thickness", "intensity")


@pytest.mark.parametrize("name,step", [(n, s) for n in steps.CONFIGS for s in steps.STEPS])
def test_synthetic_batches_are_valid_model_inputs(name, step):
  config = steps.bench_config(name, step)
  if config is None:
    return
  batch = steps.synthetic_batch(config, 4)
  s = config.data.image_size
  assert batch["image"].shape == (4, s, s, 1) and batch["image"].dtype == np.float32
  assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  Graph.from_config(config.scm).check_values(batch)  # raises on values outside the support
  if step == "cft_pos_seg":
    assert batch["regions"].shape == (4, s, s)
    assert set(np.unique(batch["regions"])) == {1, 2, 3}
