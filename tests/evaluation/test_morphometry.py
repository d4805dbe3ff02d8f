"""The non-learned Morpho-MNIST oracle: analytic strokes, and agreement with the t10k CSV."""

import numpy as np
import pytest

from segcft_jax.data import morphomnist
from segcft_jax.evaluation import morphometry


def _bar(width: int, value: float = 200.0, size: int = 32) -> np.ndarray:
  image = np.zeros((size, size))
  start = (size - width) // 2
  image[6:26, start:start + width] = value
  return image


@pytest.mark.parametrize("width", [2, 3, 5])
def test_thickness_of_a_bar_is_its_width(width):
  assert morphometry.thickness(_bar(width)) == pytest.approx(width, abs=0.35)


def test_intensity_is_the_stroke_median_and_ignores_the_width():
  assert morphometry.intensity(_bar(3, 180.0)) == pytest.approx(180.0)
  assert morphometry.thickness(_bar(4, 90.0)) == pytest.approx(
      morphometry.thickness(_bar(4, 250.0)), abs=1e-6)
  assert morphometry.thickness(np.zeros((32, 32))) == 0.0


def test_agrees_with_the_csv_on_real_images():
  t10k = morphomnist.load_t10k(morphomnist.resolve_source_dir())
  n = 400
  x = (morphomnist.pad_images(t10k["images"][:n]).astype(np.float32) - 127.5) / 127.5
  measured = morphometry.measure(x[..., None])
  for v, max_mae in (("thickness", 0.3), ("intensity", 3.0)):
    r = np.corrcoef(measured[v], t10k[v][:n])[0, 1]
    assert r >= 0.95, (v, r)
    assert np.abs(measured[v] - t10k[v][:n]).mean() < max_mae, v


def test_unknown_variable_is_refused():
  with pytest.raises(ValueError, match="measures"):
    morphometry.measure(np.zeros((1, 32, 32, 1)), ("stroke_area",))
