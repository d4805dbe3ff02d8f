"""Soft areas against analytic areas and finite differences; the CFT distances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.cft import measurements


def _one_hot_disc(size=16, radius=5.0, k=3):
  yy, xx = np.mgrid[:size, :size]
  labels = np.where((yy - 8) ** 2 + (xx - 7) ** 2 <= radius ** 2, 1, 0)
  labels[:3, :4] = 2  # a 12-pixel rectangle of class 2
  return labels, jax.nn.one_hot(labels[None], k)  # [1, H, W, K]


def test_soft_area_of_one_hot_masks_is_the_pixel_count():
  labels, probs = _one_hot_disc()
  assert float(measurements.soft_area(probs, 2)[0]) == 12.0
  assert float(measurements.soft_area(probs, 1)[0]) == float((labels == 1).sum())
  # Pixel area scales it; the classes sum to the image area.
  assert float(measurements.soft_area(probs, 1, pixel_area=0.25)[0]) == pytest.approx(
      0.25 * (labels == 1).sum())
  total = sum(float(measurements.soft_area(probs, k)[0]) for k in range(3))
  assert total == 16 * 16


def test_regional_soft_area_splits_the_area_by_region():
  labels, probs = _one_hot_disc()
  regions = np.broadcast_to(np.minimum(np.arange(16) // 6, 2)[None, :] + 1, (16, 16))
  parts = [float(measurements.regional_soft_area(probs, 1, (regions == r)[None])[0])
           for r in (1, 2, 3)]
  for r, part in zip((1, 2, 3), parts):
    assert part == float(((labels == 1) & (regions == r)).sum())
  assert sum(parts) == float(measurements.soft_area(probs, 1)[0])


def test_soft_area_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(1, 6, 6, 3)), jnp.float64 if jax.config.x64_enabled
                       else jnp.float32)
  region = jnp.asarray(rng.random((1, 6, 6)) > 0.5)

  def f(l):
    p = jax.nn.softmax(l, axis=-1)
    return measurements.regional_soft_area(p, 1, region)[0] + 0.5 * measurements.soft_area(p, 2)[0]

  grad = np.asarray(jax.grad(f)(logits))
  eps = 1e-2
  for idx in [(0, 0, 0, 1), (0, 2, 3, 0), (0, 5, 1, 2), (0, 4, 4, 1)]:
    e = np.zeros(logits.shape, np.float32)
    e[idx] = eps
    fd = (float(f(logits + e)) - float(f(logits - e))) / (2 * eps)
    assert grad[idx] == pytest.approx(fd, rel=1e-2, abs=1e-4)


@pytest.mark.parametrize("name,expected", [
    ("relative_l1", [0.25, 2.0]),   # |10-8|/8 ; |2-0|/max(0, 1)
    ("relative_l2", [0.0625, 4.0]),
    ("relative_huber", [0.25 - 0.025, 2.0 - 0.025]),  # e - delta/2 past delta = 0.05
    ("l1", [2.0, 2.0]),
    ("l2", [4.0, 4.0]),
    ("log_ratio", [abs(np.log(11 / 9)), abs(np.log(3 / 1))]),
])
def test_distances(name, expected):
  d = measurements.distance_fn(name, floor=1.0)(jnp.array([10.0, 2.0]), jnp.array([8.0, 0.0]))
  np.testing.assert_allclose(np.asarray(d), expected, rtol=1e-6)


def test_unknown_distance_names_the_choices():
  choices = "relative_l1, relative_l2, relative_huber, l1, l2, log_ratio"
  with pytest.raises(ValueError, match=choices):
    measurements.distance_fn("cosine")


def test_relative_huber_is_quadratic_inside_delta_with_continuous_slope():
  huber = measurements.distance_fn("relative_huber", floor=1.0, delta=0.1)
  t = jnp.array([10.0, 10.0])
  # e = 0.05 < delta: e^2 / (2 delta) = 0.0125; e = 0.1 (at delta): delta / 2 = 0.05.
  np.testing.assert_allclose(np.asarray(huber(jnp.array([10.5, 11.0]), t)), [0.0125, 0.05],
                             rtol=1e-6)
  # Slope with respect to the relative error: e / delta inside, 1 outside.
  grad = jax.grad(lambda a: huber(a, t).sum())(jnp.array([10.5, 13.0]))
  np.testing.assert_allclose(np.asarray(grad) * 10.0, [0.5, 1.0], rtol=1e-5)
  with pytest.raises(ValueError, match="huber_delta"):
    measurements.distance_fn("relative_huber", delta=0.0)
