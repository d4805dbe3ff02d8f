"""The flow SCM: exact abduction-prediction, interventions, masking, likelihood, fitting."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from segcft_jax.scm.graph import Graph
from segcft_jax.scm.pgm import PGM

B = 16


def _config():
  """Chest-like graph: sex, age, scanner roots; areas a, b of (sex, age); c of (a, scanner)."""
  area = lambda *parents: dict(type="continuous", parents=parents, norm="log_standard",
                               mean=6.0, std=0.3)
  return ml_collections.ConfigDict(dict(variables=dict(
      sex=dict(type="binary", parents=()),
      age=dict(type="continuous", parents=(), norm="range", low=20.0, high=85.0),
      scanner=dict(type="categorical", parents=(), num_classes=3),
      area_a=area("sex", "age"),
      area_b=area("sex", "age"),
      area_c=area("area_a", "scanner"))))


@functools.lru_cache(maxsize=None)
def _model(child_spline=True):
  """A PGM with randomly perturbed parameters (init is the identity) and a batch of values.

  Perturbation and values are drawn with numpy: compiling samplers costs more CPU time than
  the whole test otherwise.
  """
  pgm = PGM.from_config(_config(), hidden=(8, 8), num_bins=4, child_spline=child_spline)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda l: l + 0.3 * rng.normal(size=l.shape).astype(np.float32),
                        jax.jit(pgm.init)(jax.random.PRNGKey(0)))
  values = {"sex": (rng.uniform(size=B) < 0.5).astype(np.float32),
            "age": rng.uniform(-0.95, 0.95, B).astype(np.float32),
            "scanner": rng.integers(0, 3, B).astype(np.int32)}
  values.update({n: rng.normal(size=B).astype(np.float32) for n in ("area_a", "area_b", "area_c")})
  return pgm, params, {n: jnp.asarray(x) for n, x in values.items()}


def _same(a, b, names):
  for n in names:
    np.testing.assert_array_equal(a[n], b[n], err_msg=n)


def test_sample_and_log_prob():
  pgm, params, _ = _model()
  v = jax.jit(pgm.sample, static_argnums=2)(params, jax.random.PRNGKey(2), B)
  assert v["sex"].dtype == jnp.float32 and v["scanner"].dtype == jnp.int32
  assert all(v[n].shape == (B,) for n in v)
  assert np.all(np.abs(v["age"]) < 1)  # Range-normalised: squashed into (-1, 1).
  total, per = jax.jit(pgm.log_prob)(params, v)
  assert total.shape == (B,) and set(per) == set(v)
  assert np.all(np.isfinite(total))
  np.testing.assert_allclose(total, sum(per.values()), rtol=1e-6)
  # The declared range's ends (exact +-1) still have a finite likelihood and noise.
  edge = {**v, "age": v["age"].at[:2].set(jnp.array([-1.0, 1.0]))}
  assert np.all(np.isfinite(jax.jit(pgm.log_prob)(params, edge)[0]))
  assert np.all(np.isfinite(jax.jit(pgm.abduct)(params, edge)["age"]))


@pytest.mark.parametrize("child_spline", [True, False])
def test_abduct_predict_round_trip(child_spline):
  pgm, params, v = _model(child_spline)
  noises = jax.jit(pgm.abduct)(params, v)
  assert set(noises) == {"age", "area_a", "area_b", "area_c"}  # Discrete: no noise.
  _same(jax.jit(pgm.predict)(params, noises, v, {}), v, v)
  # Intervening on each root with its own value recomputes every descendant through the
  # mechanisms (forward o inverse), which must return the observations.
  do = {"sex": (v["sex"], jnp.ones(B, bool)), "scanner": (v["scanner"], jnp.ones(B, bool)),
        "age": v["age"]}
  cf = jax.jit(pgm.counterfactual)(params, v, do)
  for n in v:
    np.testing.assert_allclose(cf[n], v[n], atol=1e-5, err_msg=n)


def test_do_changes_exactly_the_descendants():
  pgm, params, v = _model()
  cf = jax.jit(pgm.counterfactual)(params, v, {"age": jnp.full((B,), 0.5)})
  np.testing.assert_array_equal(cf["age"], 0.5)
  _same(cf, v, ("sex", "scanner"))
  for n in ("area_a", "area_b", "area_c"):
    assert np.all(cf[n] != v[n]) and np.mean(np.abs(cf[n] - v[n])) > 1e-2, n
  cf = jax.jit(pgm.counterfactual)(params, v, {"sex": 1.0 - v["sex"]})
  _same(cf, v, ("age", "scanner"))
  assert all(np.all(cf[n] != v[n]) for n in ("sex", "area_a", "area_b", "area_c"))
  cf = jax.jit(pgm.counterfactual)(params, v, {"area_a": v["area_a"] + 0.5})
  _same(cf, v, ("sex", "age", "scanner", "area_b"))
  assert np.all(cf["area_c"] != v["area_c"])
  assert pgm.graph.descendants("area_a") == ("area_c",)


def test_masked_do_leaves_other_examples_unchanged():
  pgm, params, v = _model()
  mask = jnp.arange(B) % 3 == 0
  do = {"age": (jnp.full((B,), -0.2), mask), "area_b": (v["area_b"] - 1.0, ~mask)}
  cf = jax.jit(pgm.counterfactual)(params, v, do)
  full = jax.jit(pgm.counterfactual)(params, v, {"age": jnp.full((B,), -0.2)})
  m = np.asarray(mask)
  for n in ("age", "area_a", "area_c"):
    np.testing.assert_array_equal(cf[n][~m], v[n][~m], err_msg=n)
    np.testing.assert_allclose(cf[n][m], full[n][m], atol=1e-6, err_msg=n)
  np.testing.assert_array_equal(cf["area_b"][~m], v["area_b"][~m] - 1.0)
  np.testing.assert_allclose(cf["area_b"][m], full["area_b"][m], atol=1e-6)
  _same(cf, v, ("sex", "scanner"))


def test_errors():
  pgm, params, v = _model()
  with pytest.raises(ValueError, match="'weight'"):
    pgm.counterfactual(params, v, {"weight": v["age"]})
  with pytest.raises(ValueError, match="area_c"):
    pgm.log_prob(params, {k: x for k, x in v.items() if k != "area_c"})
  cyclic = _config()
  cyclic.variables.area_a.parents = ("sex", "area_c")
  with pytest.raises(ValueError, match="cycle"):
    PGM.from_config(cyclic)
  unknown = _config()
  unknown.variables.area_b.parents = ("sex", "height")
  with pytest.raises(ValueError, match="'height'"):
    PGM.from_config(unknown)


def test_fits_linear_gaussian_scm():
  """Adam on samples of a known SCM raises the likelihood and recovers mean/std of a|s, g."""
  graph = Graph.from_config(_config())
  pgm = PGM(graph, hidden=(16, 16), num_bins=4)
  rng = np.random.default_rng(0)
  n = 1024
  sex = (rng.uniform(size=n) < 0.3).astype(np.float32)
  age = rng.uniform(-0.8, 0.8, n).astype(np.float32)
  scanner = rng.integers(0, 3, n).astype(np.int32)
  # True mechanisms (normalised units): linear-Gaussian areas.
  mean_a = lambda s, g: 0.8 * s - 0.6 * g
  area_a = mean_a(sex, age) + 0.3 * rng.normal(size=n)
  area_b = -0.5 * sex + 0.4 * age + 0.5 * rng.normal(size=n)
  area_c = 0.7 * area_a + 0.2 * rng.normal(size=n)
  data = {k: jnp.asarray(x) for k, x in dict(
      sex=sex, age=age, scanner=scanner, area_a=area_a.astype(np.float32),
      area_b=area_b.astype(np.float32), area_c=area_c.astype(np.float32)).items()}
  params = jax.jit(pgm.init)(jax.random.PRNGKey(0))
  tx = optax.adam(1e-2)
  opt = tx.init(params)
  loss_fn = lambda p: -jnp.mean(pgm.log_prob(p, data)[0])

  @jax.jit
  def train(params, opt):
    def step(carry, _):
      params, opt = carry
      loss, g = jax.value_and_grad(loss_fn)(params)
      upd, opt = tx.update(g, opt, params)
      return (optax.apply_updates(params, upd), opt), loss
    (params, opt), losses = jax.lax.scan(step, (params, opt), None, length=400)
    return params, opt, losses

  params, opt, losses = train(params, opt)
  assert float(losses[-1]) < float(losses[0]) - 1.0, (losses[0], losses[-1])
  per = jax.jit(pgm.log_prob)(params, data)[1]
  # Bernoulli root: learned rate close to the empirical one.
  np.testing.assert_allclose(jax.nn.sigmoid(params["sex"]["logits"][0]), sex.mean(), atol=0.02)
  # Conditional location/scale of the children at a few parent configurations.
  mech = pgm.mechanisms["area_a"]
  s, g = jnp.array([0.0, 1.0, 0.0, 1.0]), jnp.array([-0.5, -0.5, 0.5, 0.5])
  loc, log_scale = mech.loc_scale(params["area_a"], graph.to_vector({"sex": s, "age": g},
                                                                    ("sex", "age")))
  np.testing.assert_allclose(loc, mean_a(s, g), atol=0.1)
  np.testing.assert_allclose(jnp.exp(log_scale), 0.3, atol=0.06)
  pa = graph.to_vector({"area_a": jnp.array([-1.0, 0.0, 1.0]), "scanner": jnp.array([0, 1, 2])},
                       ("area_a", "scanner"))
  loc, log_scale = pgm.mechanisms["area_c"].loc_scale(params["area_c"], pa)
  np.testing.assert_allclose(loc, [-0.7, 0.0, 0.7], atol=0.1)
  np.testing.assert_allclose(jnp.exp(log_scale), 0.2, atol=0.04)
  # Per-variable likelihood of a child is near the true Gaussian's.
  true_c = -0.5 * np.log(2 * np.pi * 0.2 ** 2) - 0.5
  assert abs(float(per["area_c"].mean()) - true_c) < 0.1
