"""Metrics on hand-built cases with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.evaluation import metrics


def _square(size=16, lo=6, hi=10):
  m = np.zeros((1, size, size), bool)
  m[0, lo:hi, lo:hi] = True
  return jnp.asarray(m)


def test_dilation_of_a_pixel_by_two_is_a_5x5_square():
  m = np.zeros((1, 9, 9), bool)
  m[0, 4, 4] = True
  d = np.asarray(metrics.dilate(jnp.asarray(m), 2))
  assert d.sum() == 25 and d[0, 2:7, 2:7].all()


def test_change_confined_to_the_mask_has_no_leakage():
  target = _square()
  x = jnp.zeros((1, 16, 16, 1))
  x_cf = jnp.where(target[..., None], 0.5, 0.0)
  loc = metrics.localisation(x, x_cf, target)
  assert float(loc["outside_share"][0]) == 0.0 and float(loc["outside_shift"][0]) == 0.0


def test_global_brightness_shift_gives_the_expected_share_and_shift():
  target = _square()  # 4x4 -> dilated by 2: 8x8 = 64 pixels inside, 192 outside
  x = jnp.zeros((1, 16, 16, 1))
  x_cf = x + 0.1
  loc = metrics.localisation(x, x_cf, target)
  assert float(loc["outside_share"][0]) == pytest.approx(192 / 256, abs=1e-6)
  assert float(loc["outside_shift"][0]) == pytest.approx(0.1 * 127.5, rel=1e-5)


def test_unchanged_image_has_zero_share():
  target = _square()
  x = jnp.zeros((1, 16, 16, 1))
  assert float(metrics.localisation(x, x, target)["outside_share"][0]) == 0.0


def test_errors_and_areas():
  np.testing.assert_allclose(metrics.absolute_percentage_error(jnp.array([110., 90.]),
                                                               jnp.array([100., 100.])), [10, 10])
  labels = jnp.asarray(np.array([[[0, 1], [1, 2]]]))
  assert float(metrics.hard_area(labels, 1)[0]) == 2.0
  region = jnp.asarray(np.array([[[1, 1], [0, 0]]]))
  assert float(metrics.hard_area(labels, 1, region)[0]) == 1.0


def test_true_counterfactual_error_and_psnr():
  x = jnp.zeros((2, 4, 4, 1))
  y = x + 2.0 / 255.0  # (2 / 255) * 127.5 = 1 grey level
  out = metrics.true_counterfactual_error(y, x)
  np.testing.assert_allclose(out["mae"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(out["psnr"], 10 * np.log10(255.0 ** 2), rtol=1e-5)


def test_composition_and_reversibility_of_exact_and_drifting_counterfactuals():
  x = jnp.linspace(-1, 1, 32).reshape(2, 4, 4, 1)
  parents = {"a": jnp.array([1.0, 2.0])}

  def exact(x, pa, do, rng):  # brightness = a; do(a) rescales exactly
    new = dict(pa, **do)
    return x + 0.01 * (new["a"] - pa["a"])[:, None, None, None], new

  def drifting(x, pa, do, rng):
    x_cf, new = exact(x, pa, do, rng)
    return x_cf + 0.002, new

  rng = jax.random.PRNGKey(0)
  np.testing.assert_allclose(metrics.composition(exact, x, parents, rng, 10), 0.0, atol=1e-5)
  np.testing.assert_allclose(metrics.composition(drifting, x, parents, rng, 10),
                             10 * 0.002 * 127.5, rtol=1e-4)
  do = {"a": jnp.array([3.0, 0.0])}
  np.testing.assert_allclose(metrics.reversibility(exact, x, parents, do, rng), 0.0, atol=1e-5)


def test_structure_mask_restricts_to_the_region():
  labels = jnp.asarray(np.array([[[1, 1, 2], [1, 0, 1]]]))
  regions = jnp.asarray(np.array([[[1, 2, 2], [1, 1, 2]]]))
  np.testing.assert_array_equal(metrics.structure_mask(labels, 1)[0],
                                [[True, True, False], [True, False, True]])
  np.testing.assert_array_equal(metrics.structure_mask(labels, 1, regions, 2)[0],
                                [[False, True, False], [False, False, True]])


def test_composition_series_accumulates_drift_and_ends_at_composition():
  x = jnp.zeros((2, 4, 4, 1))

  def drifting(x, pa, do, rng):
    return x + 0.002, pa

  series = metrics.composition_series(drifting, x, {}, jax.random.PRNGKey(0), 3)
  np.testing.assert_allclose(np.stack(series)[:, 0], [0.255, 0.51, 0.765], rtol=1e-4)
  np.testing.assert_allclose(metrics.composition(drifting, x, {}, jax.random.PRNGKey(0), 3),
                             series[-1])
