"""Intervention targets: cyclic in-batch permutations and relative changes."""

import numpy as np
import pytest

from segcft_jax.evaluation import interventions
from segcft_jax.scm.graph import Graph

GRAPH = Graph.from_config({"variables": {
    "sex": {"type": "binary", "parents": ()},
    "area": {"type": "continuous", "parents": ("sex",), "norm": "log1p_standard", "mean": 3.0,
             "std": 1.0}}})
REL = (-0.3, 0.15)


def _targets(kind, values, valid, batch_index=0):
  return interventions.targets(GRAPH, "area", kind, np.asarray(values, np.float32),
                               np.asarray(valid, bool), REL, seed=0, batch_index=batch_index,
                               variable_index=1)


def test_permutation_is_a_cyclic_shift_of_the_valid_examples():
  values = np.arange(1, 9, dtype=np.float32)
  valid = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
  target, mask = _targets("permutation", values, valid)
  np.testing.assert_array_equal(mask, valid)
  assert sorted(target[:6]) == sorted(values[:6])  # a permutation of the valid values ...
  assert np.all(target[:6] != values[:6])          # ... without fixed points
  np.testing.assert_array_equal(target[6:], values[6:])  # padding keeps its value
  again, _ = _targets("permutation", values, valid)
  np.testing.assert_array_equal(target, again)     # drawn from (seed, batch, variable)
  other, _ = _targets("permutation", values, valid, batch_index=1)
  assert not np.array_equal(target, other)


def test_relative_change_skips_zero_areas_and_padding():
  target, mask = _targets("-30%", [10.0, 0.0, 20.0], [1, 1, 0])
  np.testing.assert_array_equal(mask, [True, False, False])
  np.testing.assert_allclose(target, [7.0, 0.0, 20.0])
  assert interventions.kinds(GRAPH, "area", REL) == ("permutation", "-30%", "+15%")
  assert interventions.kinds(GRAPH, "sex", REL) == ("permutation",)
  with pytest.raises(ValueError, match="Unknown intervention kind"):
    _targets("+50%", [1.0], [1])


def test_support():
  var = GRAPH["area"]
  np.testing.assert_array_equal(interventions.in_support(var, np.array([-1.0, 0.0, np.nan])),
                                [False, True, False])
