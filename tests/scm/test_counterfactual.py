"""The DSCM counterfactual function on the quick chest config (untrained weights suffice)."""

import os

import jax
from jax import flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax import builders, config_files
from segcft_jax.scm import counterfactual as cf_lib
from segcft_jax.scm.graph import Graph

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def dscm():
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  pgm, hvae = builders.make_pgm(config), builders.make_hvae(config)
  graph = Graph.from_config(config.scm)
  models = cf_lib.DSCM(pgm=pgm, hvae=hvae, parents=tuple(config.hvae.parents))
  rng = np.random.default_rng(0)
  raw = {"sex": rng.integers(0, 2, 4).astype(np.float32), "age": rng.uniform(20, 80, 4),
         "left_lung_area": rng.uniform(50, 90, 4), "right_lung_area": rng.uniform(70, 120, 4),
         "heart_area": rng.uniform(40, 80, 4)}
  x = jnp.asarray(rng.uniform(-1, 1, (4, 32, 32, 1)), jnp.float32)
  pa = models.parent_vector(graph.normalize(raw))

  @jax.jit  # one program: eagerly, every leaf's shape compiles its own (~20 s)
  def init_hvae():
    p = hvae.init({"params": jax.random.PRNGKey(2), "sample": jax.random.PRNGKey(3)},
                  x[:1], pa[:1])["params"]
    # Perturb the HVAE so that parents visibly matter (fresh prior heads start at zero).
    flat, unravel = flatten_util.ravel_pytree(p)
    return unravel(flat + 0.05 * jax.random.normal(jax.random.PRNGKey(4), flat.shape))

  params = {"pgm": pgm.init(jax.random.PRNGKey(1)), "hvae": init_hvae()}
  return models, params, x, graph.normalize(raw), graph


def test_null_intervention_returns_the_image(dscm):
  models, params, x, parents, _ = dscm
  fn = jax.jit(lambda x, pa, rng: cf_lib.counterfactual(models, params, x, pa, {}, rng))
  x_cf, parents_cf = fn(x, parents, jax.random.PRNGKey(0))
  assert float(jnp.abs(x_cf - x).max()) < 1e-5
  for k in parents:
    np.testing.assert_array_equal(parents_cf[k], parents[k])


def test_intervention_changes_image_and_only_the_intervened_parents(dscm):
  models, params, x, parents, graph = dscm
  do = cf_lib.checked_interventions(graph, {"heart_area": 75.0}, 4,
                                    allowed=("left_lung_area", "right_lung_area", "heart_area"))
  x_cf, parents_cf = jax.jit(lambda: cf_lib.counterfactual(models, params, x, parents, do,
                                                           jax.random.PRNGKey(0)))()
  assert float(jnp.abs(x_cf - x).mean()) > 1e-4
  np.testing.assert_allclose(graph.denormalize(parents_cf)["heart_area"], 75.0, rtol=1e-5)
  for k in ("sex", "age", "left_lung_area", "right_lung_area"):
    np.testing.assert_array_equal(parents_cf[k], parents[k])


def test_factual_from_the_abduction_equals_the_doubled_decode(dscm):
  """Decoding only pa* (the factual decode taken from the abduction pass) gives the x* of
  decoding the abducted latents under pa and pa* as the reference does."""
  models, params, x, parents, graph = dscm
  do = cf_lib.checked_interventions(graph, {"left_lung_area": 60.0}, 4)
  key = jax.random.PRNGKey(7)

  @jax.jit
  def both():
    fast, _ = cf_lib.counterfactual(models, params, x, parents, do, key, t_abduct=0.8)
    z = models.hvae.apply({"params": params["hvae"]}, x, models.parent_vector(parents), t=0.8,
                          method=type(models.hvae).abduct, rngs={"sample": key})
    slow, _ = cf_lib.counterfactual(models, params, x, parents, do, key, latents=z)
    return fast, slow

  fast, slow = both()
  assert float(jnp.abs(fast - x).mean()) > 1e-4
  np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), atol=2e-6)


def test_single_decode_has_the_gradient_of_the_doubled_decode(dscm):
  """What fine-tuning differentiates: d(sum x*)/d(HVAE params) along both paths."""
  models, params, x, parents, graph = dscm
  do = cf_lib.checked_interventions(graph, {"heart_area": 70.0}, 4)
  key = jax.random.PRNGKey(3)
  hvae_cls = type(models.hvae)

  def loss(hvae_params, single):
    p = {"pgm": params["pgm"], "hvae": hvae_params}
    pa = models.parent_vector(parents)
    z, factual = models.hvae.apply({"params": hvae_params}, x, pa, with_factual=True,
                                   method=hvae_cls.abduct, rngs={"sample": key})
    x_cf, _ = cf_lib.counterfactual(models, p, x, parents, do, key, latents=z,
                                    factual=factual if single else None)
    return jnp.sum(x_cf * jnp.linspace(-1.0, 1.0, x_cf.size).reshape(x_cf.shape))

  grads = jax.jit(lambda p: (jax.grad(loss)(p, True), jax.grad(loss)(p, False)))(params["hvae"])
  flat_a, flat_b = (jax.tree.leaves(g) for g in grads)
  scale = max(float(jnp.abs(a).max()) for a in flat_a)
  assert scale > 1e-3
  for a, b in zip(flat_a, flat_b):  # float32 sums in another order: 1e-5 of the largest.
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * scale, rtol=1e-3)


def test_factual_without_latents_is_refused(dscm):
  models, params, x, parents, _ = dscm
  with pytest.raises(ValueError, match="pass both or neither"):
    cf_lib.counterfactual(models, params, x, parents, {}, jax.random.PRNGKey(0),
                          factual=(x, x))


def test_bad_interventions_fail_before_compute(dscm):
  _, _, _, _, graph = dscm
  with pytest.raises(ValueError, match="intervenable variables"):
    cf_lib.checked_interventions(graph, {"lung_volume": 1.0}, 4, allowed=("heart_area",))
  with pytest.raises(ValueError, match="heart_area"):
    cf_lib.checked_interventions(graph, {"heart_area": -3.0}, 4)
