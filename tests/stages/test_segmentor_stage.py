"""The segmentation task's exposure augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.stages import segmentor


def test_exposure_augment_is_one_clipped_gain_per_example_in_range():
  x = jnp.linspace(-1.0, 1.0, 2 * 4 * 4).reshape(2, 4, 4, 1)
  x = jnp.concatenate([x, x, x], axis=0)  # [6, 4, 4, 1]: two images, three times each
  out = segmentor.exposure_augment(x, jax.random.PRNGKey(0), 0.3)
  x01, out01 = np.asarray(x + 1.0) / 2.0, np.asarray(out + 1.0) / 2.0
  gains = []
  for i in range(6):
    kept = (out01[i] < 1.0 - 1e-6) & (x01[i] > 0.05)  # unclipped, away from black
    ratio = out01[i][kept] / x01[i][kept]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)   # one gain per example
    assert np.exp(-0.3) - 1e-6 <= ratio[0] <= np.exp(0.3) + 1e-6
    assert out01[i].min() >= 0.0 and out01[i].max() <= 1.0  # clipped to the image range
    np.testing.assert_allclose(out01[i][x01[i] == 0.0], 0.0)  # black stays black
    gains.append(ratio[0])
  assert len(set(np.round(gains, 4))) > 1  # examples get different gains
  np.testing.assert_array_equal(out, segmentor.exposure_augment(x, jax.random.PRNGKey(0), 0.3))


def test_negative_exposure_aug_is_rejected_with_the_config_field():
  with pytest.raises(ValueError, match="exposure_aug"):
    segmentor.segmentation_task("s", None, ("bg", "fg"), 1.0, exposure_aug=-0.1)
