"""Exported weights: a params-only Orbax item whose architecture is checked on load."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.train import sharding, weights

ARCH = {"network": "unet", "widths": [4, 8], "num_classes": 3}


def _params():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return {"conv": {"kernel": jax.random.normal(k1, (3, 3, 1, 4)), "bias": jnp.zeros((4,))},
          "head": jax.random.normal(k2, (4, 3), jnp.float32).astype(jnp.bfloat16)}


def test_round_trip_is_exact_and_lands_where_asked(tmp_path):
  stage = str(tmp_path / "segmentor")
  params = _params()
  weights.save(stage, params, dict(ARCH, stats={"a": (1.0, 2.0)}))
  assert weights.exists(stage)
  loaded, saved = weights.load(stage, ARCH)  # extra saved fields are not compared
  assert saved["stats"] == {"a": [1.0, 2.0]}
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  mesh = sharding.make_mesh(8)
  replicated, _ = weights.load(stage, ARCH, sharding.replicated(mesh))
  assert all(len(x.sharding.device_set) == 8 for x in jax.tree.leaves(replicated))


def test_another_architecture_names_the_fields(tmp_path):
  stage = str(tmp_path / "oracle")
  weights.save(stage, _params(), ARCH)
  with pytest.raises(weights.WeightsError, match=r"widths: \[4, 8\] -> \[4, 16\]"):
    weights.load(stage, dict(ARCH, widths=[4, 16]))
  with pytest.raises(weights.WeightsError, match="norm_groups: <absent> -> 8"):
    weights.load(stage, dict(ARCH, norm_groups=8))


def test_missing_or_corrupt_weights_say_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m segcft_jax.export --workdir="):
    weights.load(str(tmp_path / "hvae"), ARCH)
  stage = str(tmp_path / "pgm")
  weights.save(stage, _params(), ARCH)
  item = os.path.join(weights.directory(stage), weights.ITEM)
  for root, _, files in os.walk(item):  # Truncate every file of the item.
    for f in files:
      path = os.path.join(root, f)
      with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 3)
  with pytest.raises(weights.WeightsError, match="corrupt or incomplete"):
    weights.load(stage, ARCH)
  with open(os.path.join(weights.directory(stage), weights.ARCHITECTURE_FILE), "w") as f:
    f.write("{")
  with pytest.raises(weights.WeightsError, match="cannot be read"):
    weights.load(stage, ARCH)
