"""Small numpy image filters shared by the procedural phantoms (synth_chest, synth_vessel).

Both phantoms promise that a structure's geometry reaches a pixel only through the labels in
its 3x3 neighbourhood, which is why their blur and dilation have a support of exactly one pixel.
"""

from __future__ import annotations

import math

import numpy as np


def blur3(img: np.ndarray) -> np.ndarray:
  """Separable [1, 2, 1] / 4 blur with edge padding: support of exactly one pixel."""
  p = np.pad(img, 1, mode="edge")
  h = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
  return 0.25 * h[:-2] + 0.5 * h[1:-1] + 0.25 * h[2:]


def dilate3(m: np.ndarray) -> np.ndarray:
  """3x3 binary dilation (zero padding)."""
  h = np.pad(m, 1)
  h = h[:, :-2] | h[:, 1:-1] | h[:, 2:]
  return h[:-2] | h[1:-1] | h[2:]


def smooth_noise(field: np.ndarray, sigma_px: float) -> np.ndarray:
  """White noise blurred by a Gaussian of `sigma_px` pixels (periodic, via the FFT), standardised.

  The filter is exp(-2 pi^2 sigma^2 |f|^2) in frequency space, the Fourier transform of the
  Gaussian kernel of standard deviation `sigma_px`.
  """
  fy = np.fft.fftfreq(field.shape[0])[:, None]
  fx = np.fft.rfftfreq(field.shape[1])[None, :]
  out = np.fft.irfft2(np.fft.rfft2(field) * np.exp(-2.0 * math.pi ** 2 * sigma_px ** 2
                                                   * (fx ** 2 + fy ** 2)), s=field.shape)
  return out / (out.std() + 1e-12)
