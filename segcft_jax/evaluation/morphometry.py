"""A non-learned Morpho-MNIST oracle: stroke thickness and intensity measured from the image.

Nothing here is trained, so a fine-tuned model cannot have learned to please it. Following
Castro et al. 2019 (Morpho-MNIST, §3 "Morphometrics"), for an image I (0-255 units):

    thickness  upsample I by `UPSCALE` (bicubic), binarise at its Otsu threshold, skeletonise;
               t = 2 mean_{p in skeleton} D(p) / UPSCALE with D the Euclidean distance
               transform of the binary stroke (the mean stroke width in pixels)
    intensity  median of the pixels of I at or above I's Otsu threshold (the statistic the
               Morpho-MNIST generator sets intensities with)

Both thresholds are relative to the image, so the thickness of a dim stroke and the
intensity of a thin one are measured alike. An image without a stroke (constant) gives
thickness 0 and intensity its value. Host-side numpy (scikit-image, SciPy), ~2 ms per 32x32
image on one CPU core: the evaluation calls it on each batch of counterfactuals.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import filters, morphology, transform

# The segmentation class whose oracle mask localises interventions on VARIABLES.
STRUCTURE = "stroke"
UPSCALE = 4


def _otsu(image: np.ndarray) -> float | None:
  """Otsu's threshold of `image`, None for a constant image."""
  if float(image.max()) <= float(image.min()):
    return None
  return float(filters.threshold_otsu(image))


def thickness(image: np.ndarray, upscale: int = UPSCALE) -> float:
  """Mean stroke width (pixels) of a 2-D image in 0-255 units (module docstring)."""
  big = transform.rescale(np.asarray(image, np.float64), upscale, order=3,
                          preserve_range=True, anti_aliasing=False)
  level = _otsu(big)
  if level is None:
    return 0.0
  stroke = big >= level
  skeleton = morphology.skeletonize(stroke)
  if not skeleton.any():
    return 0.0
  distance = ndimage.distance_transform_edt(stroke)
  return float(2.0 * distance[skeleton].mean() / upscale)


def intensity(image: np.ndarray) -> float:
  """Median of the stroke pixels (at or above Otsu's threshold), 0-255 units."""
  image = np.asarray(image, np.float64)
  level = _otsu(image)
  if level is None:
    return float(image.flat[0])
  return float(np.median(image[image >= level]))


_MEASURES = {"thickness": thickness, "intensity": intensity}
VARIABLES = tuple(_MEASURES)


def to_pixels(x: np.ndarray) -> np.ndarray:
  """Model images in [-1, 1] -> 0-255 units (`data.pipeline`'s scaling inverted)."""
  return (np.asarray(x, np.float64) + 1.0) * 127.5


def measure(x: np.ndarray, variables: tuple[str, ...] = VARIABLES) -> dict[str, np.ndarray]:
  """`{variable: [B] float32}` of model images `x` `[B, H, W, 1]` in [-1, 1]."""
  unknown = set(variables) - set(_MEASURES)
  if unknown:
    raise ValueError(f"The morphometric oracle measures {VARIABLES}, not {sorted(unknown)}.")
  images = to_pixels(x)[..., 0]
  return {v: np.asarray([_MEASURES[v](im) for im in images], np.float32) for v in variables}
