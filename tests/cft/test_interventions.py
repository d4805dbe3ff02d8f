"""Interventions drawn during fine-tuning: one variable per example, valid targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.cft.interventions import sample_interventions

VALUES = {"a": jnp.arange(1.0, 33.0), "b": 100.0 + jnp.arange(32.0), "c": jnp.ones(32) * 7.0}


def test_permutation_targets_one_variable_per_example():
  do = sample_interventions(jax.random.PRNGKey(0), VALUES, ("a", "b", "c"))
  masks = np.stack([np.asarray(do[v][1]) for v in "abc"])
  assert (masks.sum(axis=0) == 1).all()
  assert all(masks[i].any() for i in range(3))  # 32 draws hit every variable
  for v in "abc":  # Targets are the batch's own values, permuted.
    np.testing.assert_array_equal(np.sort(np.asarray(do[v][0])), np.sort(np.asarray(VALUES[v])))


def test_relative_targets_lie_in_the_range():
  do = sample_interventions(jax.random.PRNGKey(1), VALUES, ("a", "b"), mode="relative",
                            relative_range=(0.1, 0.3))
  for v in "ab":
    change = np.abs(np.asarray(do[v][0]) / np.asarray(VALUES[v]) - 1.0)
    assert (change >= 0.1 - 1e-6).all() and (change <= 0.3 + 1e-6).all()
  signs = np.sign(np.asarray(do["a"][0]) - np.asarray(VALUES["a"]))
  assert (signs > 0).any() and (signs < 0).any()


def test_draw_weights_set_the_draw_frequencies():
  big = {v: jnp.tile(x, 128) for v, x in VALUES.items()}  # 4,096 examples
  do = sample_interventions(jax.random.PRNGKey(2), big, ("a", "b", "c"), weights=(2.0, 1.0, 1.0))
  share = np.array([np.asarray(do[v][1]).mean() for v in "abc"])
  np.testing.assert_allclose(share, [0.5, 0.25, 0.25], atol=0.03)  # 4 sigma ~ 0.03
  assert (np.stack([np.asarray(do[v][1]) for v in "abc"]).sum(axis=0) == 1).all()
  # Equal weights are the uniform draw, bit for bit (defaults keep their numbers).
  uniform = sample_interventions(jax.random.PRNGKey(2), big, ("a", "b", "c"))
  equal = sample_interventions(jax.random.PRNGKey(2), big, ("a", "b", "c"), weights=(3.0,) * 3)
  for v in "abc":
    np.testing.assert_array_equal(np.asarray(uniform[v][1]), np.asarray(equal[v][1]))
  with pytest.raises(ValueError, match="positive draw weights"):
    sample_interventions(jax.random.PRNGKey(0), VALUES, ("a", "b"), weights=(1.0, 0.0))


def test_an_active_focus_draws_only_its_variables():
  for active, expect in ((True, {"b"}), (False, {"a", "b", "c"})):
    do = sample_interventions(jax.random.PRNGKey(4), VALUES, ("a", "b", "c"),
                              focus=((False, True, False), jnp.asarray(active)))
    assert {v for v in "abc" if np.asarray(do[v][1]).any()} == expect
  with pytest.raises(ValueError, match="focus must name"):
    sample_interventions(jax.random.PRNGKey(0), VALUES, ("a", "b"),
                         focus=((False, False), jnp.asarray(True)))


def test_bad_mode_and_empty_variables():
  with pytest.raises(ValueError, match="permutation"):
    sample_interventions(jax.random.PRNGKey(0), VALUES, ("a",), mode="swap")
  with pytest.raises(ValueError, match="intervenable"):
    sample_interventions(jax.random.PRNGKey(0), VALUES, ())
