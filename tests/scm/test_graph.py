"""Graph declaration: order, normalisation, parent vectors, descendants and validation."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segcft_jax.scm.graph import Graph


def _variables():
  return {
      "sex": dict(type="binary", parents=()),
      "age": dict(type="continuous", parents=(), norm="range", low=20.0, high=80.0),
      "site": dict(type="categorical", parents=(), num_classes=3),
      "lung": dict(type="continuous", parents=("sex", "age"), norm="log_standard",
                   mean=5.0, std=0.5),
      "heart": dict(type="continuous", parents=("lung", "site"), norm="standard",
                    mean=100.0, std=10.0),
  }


def _graph(**changes):
  v = _variables()
  v.update(changes)
  return Graph.from_config(ml_collections.ConfigDict(dict(variables=v)))


def test_order_and_structure():
  g = _graph()
  assert sorted(g.order) == sorted(_variables())
  pos = {n: i for i, n in enumerate(g.order)}
  for n in g.order:
    assert all(pos[p] < pos[n] for p in g.parents(n))
  assert g.descendants("sex") == ("lung", "heart")
  assert g.descendants("site") == ("heart",)
  assert g.descendants("heart") == ()
  assert g.children("lung") == ("heart",)
  assert set(g.roots()) == {"sex", "age", "site"}
  # The whole experiment config works as well as its scm field.
  full = ml_collections.ConfigDict(dict(scm=dict(variables=_variables())))
  assert Graph.from_config(full).order == g.order


def test_normalize_round_trip_and_vector():
  g = _graph()
  raw = {"sex": jnp.array([0.0, 1.0]), "age": jnp.array([20.0, 50.0]),
         "site": jnp.array([2, 0]), "lung": jnp.array([np.exp(5.0), np.exp(5.5)]),
         "heart": jnp.array([90.0, 100.0])}
  n = g.normalize(raw)
  np.testing.assert_allclose(n["age"], [-1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(n["lung"], [0.0, 1.0], atol=1e-5)
  np.testing.assert_allclose(n["heart"], [-1.0, 0.0], atol=1e-6)
  assert n["site"].dtype == jnp.int32
  back = g.denormalize(n)
  for k in raw:
    np.testing.assert_allclose(back[k], raw[k], rtol=1e-5)
  vec = g.to_vector(n, ("site", "sex", "age"))
  assert g.vector_dim(("site", "sex", "age")) == 5 and g.vector_dim() == 7
  np.testing.assert_allclose(vec, [[0, 0, 1, 0, -1], [1, 0, 0, 1, 0]], atol=1e-6)
  assert g.to_vector(n).shape == (2, 7)


@pytest.mark.parametrize("changes, match", [
    (dict(sex=dict(type="binary", parents=("heart",))), "cycle"),
    (dict(lung=dict(type="continuous", parents=("lung",), norm="standard", mean=0.0,
                    std=1.0)), "lung"),
    (dict(heart=dict(type="continuous", parents=("weight",), norm="standard", mean=0.0,
                     std=1.0)), "weight"),
    (dict(sex=dict(type="boolean", parents=())), "boolean"),
    (dict(age=dict(type="continuous", parents=(), norm="minmax")), "minmax"),
    (dict(age=dict(type="continuous", parents=(), norm="range", low=5.0)), "high"),
    (dict(site=dict(type="categorical", parents=())), "num_classes"),
])
def test_bad_declarations(changes, match):
  with pytest.raises(ValueError, match=match):
    _graph(**changes)


def test_check_values():
  g = _graph()
  good = {"sex": np.array([0, 1]), "age": np.array([20.0, 80.0]), "site": np.array([0, 2]),
          "lung": np.array([100.0, 150.0]), "heart": np.array([-3.0, 120.0]),
          "image": np.zeros((2, 4, 4))}  # Non-variable keys are ignored.
  assert g.check_values(good) == 2
  bad_cases = [
      ("lung", np.array([100.0, -1.0]), "'lung'.*positive"),
      ("lung", np.array([0.0, 1.0]), "'lung'"),
      ("sex", np.array([0, 2]), "'sex'.*0 or 1"),
      ("site", np.array([0, 3]), "'site'"),
      ("site", np.array([0.5, 1]), "'site'"),
      ("age", np.array([19.0, 30.0]), "'age'.*range"),
      ("age", np.array([[20.0], [30.0]]), "'age'.*shape"),
      ("heart", np.array([1.0, 2.0, 3.0]), "'heart'.*batch"),
      ("heart", np.array([1.0, np.nan]), "'heart'.*finite"),
  ]
  for name, value, match in bad_cases:
    with pytest.raises(ValueError, match=match):
      g.check_values({**good, name: value})
  with pytest.raises(ValueError, match="'heart'"):
    g.check_values({k: v for k, v in good.items() if k != "heart"})
  with pytest.raises(ValueError, match="'weight'"):
    g.normalize({"weight": jnp.ones(2)})


def test_log1p_standard_round_trips_zero_and_rejects_negative_areas():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from segcft_jax.scm.graph import Graph  # pylint: disable=g-import-not-at-top
  g = Graph.from_config({"variables": {"plaque": dict(type="continuous", parents=(),
                                                      norm="log1p_standard", mean=1.0,
                                                      std=2.0)}})
  raw = {"plaque": np.array([0.0, 3.0, 40.0], np.float32)}
  n = g.normalize(raw)
  np.testing.assert_allclose(n["plaque"], (np.log1p(raw["plaque"]) - 1.0) / 2.0, rtol=1e-6)
  np.testing.assert_allclose(g.denormalize(n)["plaque"], raw["plaque"], rtol=1e-5, atol=1e-5)
  try:
    g.check_values({"plaque": np.array([-1.0, 0.0, 1.0])})
  except ValueError as e:
    assert "non-negative" in str(e)
  else:
    raise AssertionError("negative plaque area accepted")
