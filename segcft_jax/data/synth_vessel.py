"""TFDS builder of the synth_vessel phantom dataset (SPEC §2): image, mask (wall / lumen /
calcified / non-calcified plaque), region map (1..3 = proximal / mid / distal), age, sex, the
3 global and 9 regional structure areas, render parameters (`phantom_builder`)."""

from __future__ import annotations

from segcft_jax.data import phantom_vessel
from segcft_jax.data.phantom_builder import PhantomBuilder

GLOBAL_AREAS = phantom_vessel.GLOBAL_VARIABLES
REGIONAL_AREAS = phantom_vessel.REGIONAL_VARIABLES
SCALARS = ("age", *GLOBAL_AREAS, *REGIONAL_AREAS)
CLASS_NAMES = phantom_vessel.CLASS_NAMES
REGION_NAMES = phantom_vessel.REGION_NAMES
MODEL_KEYS = ("image", "mask", "regions", "sex", *SCALARS)


class SynthVessel(PhantomBuilder):
  """Procedural straightened coronary vessel with masks, regions, areas and render params."""
  PHANTOM = phantom_vessel
  MAPS = ("mask", "regions")
  SCALARS = SCALARS
  DESCRIPTION = "Procedural straightened coronary vessel (segcft-jax, SPEC §2 synth_vessel)."


make_builder = SynthVessel.for_config
