"""True counterfactuals rendered for a batch."""

import numpy as np

from segcft_jax.data import phantom_chest
from segcft_jax.evaluation import true_cf


def test_renders_masked_examples_and_skips_unreachable_targets():
  render = true_cf.renderer("synth_chest")
  assert true_cf.renderer("padchest") is None
  ex = phantom_chest.sample_example(np.random.default_rng(0), 32)
  area = float(ex["heart_area"])
  targets = np.array([area * 1.3, 1e6, area], np.float32)
  images, ok = true_cf.render_batch(render, [ex, ex, ex], "heart_area", targets,
                                    np.array([True, True, False]), 32)
  np.testing.assert_array_equal(ok, [True, False, False])  # 1e6 px leaves the body
  expected = phantom_chest.render_counterfactual(ex, {"heart_area": targets[0]})["image"]
  np.testing.assert_allclose(images[0], (expected.astype(np.float32) - 127.5) / 127.5)
  assert not images[1].any() and not images[2].any()
