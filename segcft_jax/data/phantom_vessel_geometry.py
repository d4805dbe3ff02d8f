"""Geometry of the synth_vessel phantom: render-parameter layout, centreline and label shapes.

Pure numpy, the shape half of `phantom_vessel` (whose module docstring states the model):
the centreline ``y_c(x)``, arclength fraction ``t(x)``, perpendicular offset ``d``, the region
map, the lumen tube ``{|d| <= r(x)}`` and the plaque ellipses in the vessel frame. Lengths are
in units of the image side ``S`` (pixel centres ``(j + 0.5) / S``).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

CLASS_NAMES = ("background", "lumen", "calcified_plaque", "noncalcified_plaque")
REGION_NAMES = ("proximal", "mid", "distal")  # Region labels 1, 2, 3 in the region map.
STRUCTURES = ("lumen", "calcified", "noncalcified")
LABELS = {"lumen": 1, "calcified": 2, "noncalcified": 3}
GLOBAL_VARIABLES = tuple(f"{s}_area" for s in STRUCTURES)
REGIONAL_VARIABLES = tuple(f"{s}_area_{r}" for s in STRUCTURES for r in REGION_NAMES)
AREA_VARIABLES = GLOBAL_VARIABLES + REGIONAL_VARIABLES
VARIABLES = ("sex", "age") + AREA_VARIABLES

PLAQUES = ("calcified", "noncalcified")
GLOBAL_PARAM_NAMES = ("gain", "offset", "noise_sigma", "hidden", "contrast", "falloff",
                      "cp_level", "ncp_level", "wall_level", "fat_level", "myo_level",
                      "myo_side", "myo_dist", "lung_level", "lung_dist", "tex_amp",
                      "tex_sigma", "cl_y", "cl_amp1", "cl_freq1", "cl_phase1", "cl_amp2",
                      "cl_freq2", "cl_phase2", "radius", "taper", "lumen_scale")
PLAQUE_FIELDS = ("x", "side", "offset", "a", "c", "scale")
RENDER_PARAM_NAMES = (GLOBAL_PARAM_NAMES + tuple(f"lumen_{r}_scale" for r in REGION_NAMES)
                      + tuple(f"{k}_{r}_{f}" for k in PLAQUES for r in REGION_NAMES
                              for f in PLAQUE_FIELDS))
NUM_RENDER_PARAMS = len(RENDER_PARAM_NAMES)
PARAM_INDEX = {name: i for i, name in enumerate(RENDER_PARAM_NAMES)}


def q_max(a: float, c: float) -> float:
  """Largest plaque scale: half-length <= 0.16 and half-thickness <= 0.13 (units of S)."""
  return min(0.16 / a, 0.13 / c)


def vessel_frame(params: np.ndarray, size: int) -> dict[str, np.ndarray]:
  """Centreline per column (y_c, t, region), perpendicular offset d [S, S] and region map."""
  p = {n: float(params[PARAM_INDEX[n]]) for n in GLOBAL_PARAM_NAMES}
  w1, w2 = 2 * math.pi * p["cl_freq1"], 2 * math.pi * p["cl_freq2"]
  curve = lambda x: (p["cl_y"] + p["cl_amp1"] * np.sin(w1 * x + p["cl_phase1"])
                     + p["cl_amp2"] * np.sin(w2 * x + p["cl_phase2"]))
  slope = lambda x: (p["cl_amp1"] * w1 * np.cos(w1 * x + p["cl_phase1"])
                     + p["cl_amp2"] * w2 * np.cos(w2 * x + p["cl_phase2"]))
  x_fine = np.linspace(0.0, 1.0, 2049)
  ds = np.sqrt(1.0 + slope(x_fine) ** 2)
  s = np.concatenate([[0.0], np.cumsum(0.5 * (ds[1:] + ds[:-1]) * np.diff(x_fine))])
  x = (np.arange(size, dtype=np.float64) + 0.5) / size
  t = np.interp(x, x_fine, s / s[-1])
  col_region = np.minimum((3.0 * t).astype(np.int64), 2) + 1
  d = (x[:, None] - curve(x)[None, :]) / np.sqrt(1.0 + slope(x) ** 2)[None, :]  # rows: y = x
  return dict(x=x, t=t, x_fine=x_fine, t_fine=s / s[-1], col_region=col_region, d=d,
              regions=np.broadcast_to(col_region[None, :], (size, size)).astype(np.uint8))


def _window(u: np.ndarray) -> np.ndarray:
  """Plateau window: 0 outside (0, 1), smoothstep ramps over 0.2 at each end, 1 between."""
  v = np.clip(np.minimum(u, 1.0 - u) / 0.2, 0.0, 1.0)
  return v * v * (3.0 - 2.0 * v)


def tube(params: np.ndarray, geo: Mapping[str, np.ndarray]) -> np.ndarray:
  """Lumen tube {|d| <= r(x)} before plaques (r: see `phantom_vessel`'s module docstring)."""
  t = geo["t"]
  bump = sum((float(params[PARAM_INDEX[f"lumen_{r}_scale"]]) - 1.0) * _window(3.0 * t - i)
             for i, r in enumerate(REGION_NAMES))
  radius = (float(params[PARAM_INDEX["lumen_scale"]]) * float(params[PARAM_INDEX["radius"]])
            * (1.0 - float(params[PARAM_INDEX["taper"]]) * t) * (1.0 + bump))
  return np.abs(geo["d"]) <= radius[None, :]


def plaque(params: np.ndarray, geo: Mapping[str, np.ndarray], kind: str,
           region: int) -> np.ndarray:
  """Full shape of one plaque (ellipse in the vessel frame) clipped to its region's columns."""
  x0, side, off, a, c, q = (float(params[PARAM_INDEX[f"{kind}_{REGION_NAMES[region - 1]}_{f}"]])
                            for f in PLAQUE_FIELDS)
  if q <= 0.0:
    return np.zeros(geo["d"].shape, dtype=bool)
  u = ((geo["x"] - x0) / (q * a))[None, :]
  v = (geo["d"] - side * off) / (q * c)
  return (u * u + v * v <= 1.0) & (geo["col_region"] == region)[None, :]


def shapes(params: np.ndarray, geo: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Full boolean shapes: the tube and the union of each plaque kind over the regions."""
  return {"lumen": tube(params, geo), **{k: np.logical_or.reduce(
      [plaque(params, geo, k, r) for r in (1, 2, 3)]) for k in PLAQUES}}


def labels(shapes: Mapping[str, np.ndarray]) -> np.ndarray:
  """Label map: lumen, then non-calcified plaque over it, then calcified plaque over both."""
  mask = np.zeros(shapes["lumen"].shape, dtype=np.uint8)
  for s in ("lumen", "noncalcified", "calcified"):
    mask[shapes[s]] = LABELS[s]
  return mask


def inside(shapes: Mapping[str, np.ndarray]) -> bool:
  """Whether the vessel and its plaques stay clear of the top and bottom image rows."""
  return not any(m[[0, -1]].any() for m in shapes.values())
