"""TFDS builder of the synth_chest phantom dataset (SPEC §2): image, mask (background / left
lung / right lung / heart), sex, age, organ areas, render parameters (`phantom_builder`)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from segcft_jax.data import phantom_chest
from segcft_jax.data.phantom_builder import PhantomBuilder

SCALARS = ("age", "left_lung_area", "right_lung_area", "heart_area")
CLASS_NAMES = phantom_chest.CLASS_NAMES
MODEL_KEYS = ("image", "mask", "sex", *SCALARS)


class SynthChest(PhantomBuilder):
  """Procedural chest-radiograph phantom with masks, scalar variables and render parameters."""
  PHANTOM = phantom_chest
  MAPS = ("mask",)
  SCALARS = SCALARS
  DESCRIPTION = "Procedural chest radiograph phantom (segcft-jax, SPEC §2 synth_chest)."
  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {
      "1.0.0": "Lungs sized by their full shape: the heart drawn over them changed their areas.",
      "1.1.0": "Lungs sized by their visible area, independent of the heart, as the graph says.",
      "1.2.0": "Exposure confounding -0.10 (was -0.30) log-gain per std of body size.",
  }


make_builder = SynthChest.for_config
