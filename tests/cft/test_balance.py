"""Per-structure gradient normalisation: each structure's share of the update has the mean
norm, the ELBO term is untouched, and the mask decides which leaves the norms cover."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.cft import balance


def test_measurements_group_by_structure_as_the_weights_name_them():
  names = ("lumen_area_proximal", "calcified_area_mid", "lumen_area_mid", "thickness",
           "calcified_area")
  assert balance.structures(names) == {
      "lumen": ("lumen_area_proximal", "lumen_area_mid"),
      "calcified": ("calcified_area_mid", "calcified_area"), "thickness": ("thickness",)}


def _parts(p):
  """Two structures of very different gradient scale, then a 'rest' term."""
  a, b, lam = p["w"]["a"], p["w"]["b"], p["lmbda"]
  parts = jnp.stack([jnp.sum(a ** 2) + 0.1 * jnp.sum(b), 0.01 * jnp.sum(jnp.sin(a)),
                     lam * jnp.sum(b ** 2)])
  return parts, {"s": parts[0]}


PARAMS = {"w": {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3, 3.0])},
          "lmbda": jnp.asarray(2.0)}


def _grad(i, params=PARAMS):
  return jax.grad(lambda p: _parts(p)[0][i])(params)


def _norm(tree, keep=lambda path: True):
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return float(jnp.sqrt(sum(jnp.sum(g ** 2) for path, g in leaves if keep(path))))


def test_each_structure_gets_the_mean_norm_and_the_rest_keeps_its_gradient():
  mask = {"w": {"a": True, "b": True}, "lmbda": True}
  (loss, metrics), grads, scales = balance.balanced_value_and_grad(_parts, PARAMS, mask)
  (w_loss, _), _, w_scales = balance.balanced_value_and_grad(_parts, PARAMS, mask, (3.0, 1.0))
  g = [_grad(i) for i in range(3)]
  n = np.array([_norm(g[0]), _norm(g[1])])
  assert n[0] / n[1] > 100  # The imbalance being corrected.
  np.testing.assert_allclose(np.asarray(scales), n.mean() / n, rtol=1e-5)
  want = jax.tree.map(lambda g0, g1, g2: scales[0] * g0 + scales[1] * g1 + g2, *g)
  for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
  for i in range(2):  # Each structure's share now has norm n_bar.
    assert _norm(jax.tree.map(lambda x: scales[i] * x, g[i])) == pytest.approx(n.mean(), rel=1e-5)
  assert float(loss) == pytest.approx(float(_parts(PARAMS)[0].sum()), rel=1e-6)
  # A structure weight W_k multiplies its normalised share (and its term of the loss).
  np.testing.assert_allclose(np.asarray(w_scales), np.asarray(scales) * [3.0, 1.0], rtol=1e-6)
  assert float(w_loss) == pytest.approx(float(loss + 2 * _parts(PARAMS)[0][0]), rel=1e-6)
  assert float(metrics["s"]) == pytest.approx(float(_parts(PARAMS)[0][0]), rel=1e-6)


def test_the_norms_cover_only_the_masked_leaves():
  mask = {"w": {"a": True, "b": False}, "lmbda": True}  # e.g. a frozen encoder.
  _, _, scales = balance.balanced_value_and_grad(_parts, PARAMS, mask)
  only_a = lambda path: path[-1].key == "a"
  n = np.array([_norm(_grad(i), only_a) for i in range(2)])
  np.testing.assert_allclose(np.asarray(scales), n.mean() / n, rtol=1e-5)
