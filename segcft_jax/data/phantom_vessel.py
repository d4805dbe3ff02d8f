"""Procedural straightened coronary vessel ("synth_vessel") with exact true counterfactuals.

Pure numpy; lengths in units of the image side ``S`` (pixel centres ``(j + 0.5) / S``). The
vessel crosses the image left (proximal) to right (distal), as in a curved planar reformation.

Geometry: centreline ``y_c(x) = y0 + A1 sin(2 pi f1 x + p1) + A2 sin(2 pi f2 x + p2)``,
arclength fraction ``t(x) = s(x) / s(1)``, ``s(x) = int_0^x sqrt(1 + y_c'^2)``, perpendicular
offset ``d = (y - y_c(x)) / sqrt(1 + y_c'(x)^2)``. Region map: every pixel of column ``j`` gets
1 / 2 / 3 (proximal / mid / distal) as ``t(x_j)`` lies in the first / second / last third of the
arclength. It covers the whole image (regional areas sum to the global one), depends on the
centreline only and never changes under an intervention.

Generative model (one example; e_* ~ N(0, 1) independent)::

    sex ~ Bernoulli(0.5),  age ~ Uniform(30, 85)
    lumen radius r(x) = g r0 (1 - tau t) (1 + sum_i (k_i - 1) w(3 t - i)),  g = 1,  i = 0, 1, 2
        log r0 = log 0.075 + 0.08 sex - 0.002 (age - 60) + 0.05 e_0,   log k_i = 0.07 e_i
        w = plateau window, 0 outside (0, 1): k_i reshapes region i + 1 only
    for each region and kind in {CP (calcified), NCP (non-calcified)}, independently:
        present ~ Bernoulli(sigmoid(b_kind + 0.06 (age - 60) + 0.5 sex)), b = -0.6 / 0
        log q = 0.25 sex + 0.012 (age - 60) + 0.25 e_{kind,region}     (q = 0 when absent)
        plaque = {((x - x_p) / (q a))^2 + ((d - side off) / (q c))^2 <= 1} in its region's
                 columns, centred mid-region on the wall (CP on the opposite wall to NCP);
                 off = (1.15 | 0.9) r(x_p), c = (0.3 | 0.5) r(x_p) (0.8..1.2)  for CP | NCP
    mask: lumen {|d| <= r} = 1, NCP = 3 painted over it, CP = 2 over both
    area_{s,region} = #{mask == label_s, regions == region},  area_s = sum over regions

The nine regional plaque variables are exactly independent given (age, sex); a regional lumen
area also depends on its region's plaques (they narrow it). Hidden patient/scanner factor,
not a causal variable and kept fixed by counterfactuals (drawn after the plaques so that their
conditional independence is exact, correlated 0.9 with the burden)::

    h = 0.9 z_T + sqrt(1 - 0.81) e_h,  z_T = standardised sqrt(sum_plaques pi q^2 a c)
    contrast = clip(0.64 - 0.075 h, 0.46, 0.84):  corr(mean lumen intensity, plaque area) ~ -0.8

Image (``K3`` 3x3 binomial blur, ``D3`` 3x3 dilation, noise fields from the noise seed)::

    V = level[mask] on the vessel M = {mask > 0}, wall_level on D3[M] \\ M, B elsewhere
    level = (-, contrast (1 - falloff t), cp ~ 0.97, ncp ~ 0.37),  wall ~ 0.26,  fat ~ 0.13
    B = fat + myocardium / lung bands beside the centreline + smoothed texture noise
    image = clip(round(255 (gain K3[V] + offset + sigma n)), 0, 255)

A pixel sees the labels only through ``K3[D3[.]]``: changing one structure changes pixels only
within 2 px (two 3x3 steps) of the union of its old and new masks.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from segcft_jax.data import phantom_filters
from segcft_jax.data import phantom_vessel_geometry as geometry

__all__ = ["CLASS_NAMES", "REGION_NAMES", "LABELS", "AREA_VARIABLES", "VARIABLES",
           "RENDER_PARAM_NAMES", "sample_example", "render", "render_counterfactual"]

CLASS_NAMES = geometry.CLASS_NAMES
REGION_NAMES = geometry.REGION_NAMES  # Region labels 1, 2, 3 in the region map.
STRUCTURES = geometry.STRUCTURES
LABELS = geometry.LABELS
GLOBAL_VARIABLES = geometry.GLOBAL_VARIABLES
REGIONAL_VARIABLES = geometry.REGIONAL_VARIABLES
AREA_VARIABLES = geometry.AREA_VARIABLES
VARIABLES = geometry.VARIABLES
RENDER_PARAM_NAMES = geometry.RENDER_PARAM_NAMES
NUM_RENDER_PARAMS = geometry.NUM_RENDER_PARAMS
_IX = geometry.PARAM_INDEX

_PRESENCE_BIAS = {"calcified": -0.6, "noncalcified": 0.0}   # logit at age 60, female
# Semi-axes at q = 1: half-length (units of S), half-thickness (units of the local radius).
_PLAQUE_AC = {"calcified": (0.035, 0.3), "noncalcified": (0.085, 0.5)}
_PLAQUE_OFF = {"calcified": 1.15, "noncalcified": 0.9}  # centre offset / lumen radius
_BURDEN = (0.137, 0.077)  # mean / std of sqrt(sum of nominal plaque areas in S^2), measured
_RHO = 0.9               # corr(h, z_T)
_SCALE_RANGE = (0.2, 3.0)  # feasible lumen scale factors (global g and regional k_r)
_TOL = 0.02               # relative area tolerance of counterfactual targets
_FIT_ORDER = ("calcified", "noncalcified", "lumen")  # painting order, top layer first


def _sample_params(rng: np.random.Generator) -> tuple[int, float, np.ndarray]:
  """Draws (sex, age, float32 render params) from the model in the module docstring."""
  sex = int(rng.random() < 0.5)
  age = float(rng.uniform(30.0, 85.0))
  z = rng.standard_normal(12)
  u = rng.random(16)
  q = dict(gain=math.exp(0.03 * z[0]), offset=0.01 * z[1], noise_sigma=0.015 + 0.008 * u[0],
           falloff=0.08 + 0.08 * u[1], cp_level=0.95 + 0.04 * u[2],
           ncp_level=0.37 + 0.015 * z[2], wall_level=0.26 + 0.015 * z[3],
           fat_level=0.13 + 0.02 * z[4], myo_level=0.33 + 0.02 * z[5],
           myo_side=1.0 if u[3] < 0.5 else -1.0, myo_dist=0.22 + 0.04 * u[4],
           lung_level=0.05 + 0.02 * u[5], lung_dist=0.3 + 0.05 * u[6],
           tex_amp=0.025 + 0.015 * u[7], tex_sigma=0.02 + 0.01 * u[8],
           cl_y=0.5 + 0.02 * z[6], cl_amp1=0.01 + 0.02 * u[9], cl_freq1=0.5 + 0.7 * u[10],
           cl_phase1=2 * math.pi * u[11], cl_amp2=0.008 * u[12], cl_freq2=1.5 + u[13],
           cl_phase2=2 * math.pi * u[14],
           radius=0.075 * math.exp(0.08 * sex - 0.002 * (age - 60.0) + 0.05 * z[7]),
           taper=0.25 + 0.15 * u[15], lumen_scale=1.0)
  for i, r in enumerate(REGION_NAMES):
    q[f"lumen_{r}_scale"] = math.exp(0.07 * z[8 + i])
  geo = geometry.vessel_frame(np.array([q.get(n, 0.0) for n in RENDER_PARAM_NAMES]), 16)
  burden = 0.0
  for kind in ("noncalcified", "calcified"):  # NCP first: CP sits on the opposite wall.
    for i, r in enumerate(REGION_NAMES):
      logit = _PRESENCE_BIAS[kind] + 0.06 * (age - 60.0) + 0.5 * sex
      present = rng.random() < 1.0 / (1.0 + math.exp(-logit))
      e, v = rng.standard_normal(), rng.random(4)
      # Latent geometry is drawn even for absent plaques: it is where one would be created.
      x = float(np.interp((i + 0.3 + 0.4 * v[2]) / 3.0, geo["t_fine"], geo["x_fine"]))
      t_x = float(np.interp(x, geo["x_fine"], geo["t_fine"]))
      r_x = q["radius"] * (1.0 - q["taper"] * t_x) * q[f"lumen_{r}_scale"]
      a, c = (ac * (0.8 + 0.4 * vi) for ac, vi in zip(_PLAQUE_AC[kind], v))
      c *= r_x
      scale = math.exp(0.25 * sex + 0.012 * (age - 60.0) + 0.25 * e)
      scale = min(scale, 0.8 * geometry.q_max(a, c)) if present else 0.0
      side = -q[f"noncalcified_{r}_side"] if kind == "calcified" else 2.0 * (v[3] < 0.5) - 1.0
      q.update({f"{kind}_{r}_{f}": val for f, val in zip(
          geometry.PLAQUE_FIELDS, (x, side, _PLAQUE_OFF[kind] * r_x, a, c, scale))})
      burden += math.pi * a * c * scale ** 2
  z_t = (math.sqrt(burden) - _BURDEN[0]) / _BURDEN[1]
  q["hidden"] = _RHO * z_t + math.sqrt(1.0 - _RHO ** 2) * float(rng.standard_normal())
  q["contrast"] = float(np.clip(0.64 - 0.075 * q["hidden"], 0.46, 0.84))
  return sex, age, np.array([q[n] for n in RENDER_PARAM_NAMES], dtype=np.float32)


def _compose(params: np.ndarray, geo: Mapping[str, np.ndarray], mask: np.ndarray,
             noise_seed: int) -> np.ndarray:
  """Image from global params, geometry, the label map and the seeded noise fields."""
  size = mask.shape[0]
  g = {n: float(params[_IX[n]]) for n in geometry.GLOBAL_PARAM_NAMES}
  rng = np.random.default_rng(int(noise_seed))
  texture_noise = rng.standard_normal((size, size))
  pixel_noise = rng.standard_normal((size, size))
  # Background: depends on the centreline only (never on lumen radius or plaques).
  off = g["myo_side"] * geo["d"]
  ramp = lambda e: np.clip(0.5 + e / 0.06, 0.0, 1.0)
  back = (g["fat_level"] + (g["myo_level"] - g["fat_level"]) * ramp(off - g["myo_dist"])
          + (g["lung_level"] - g["fat_level"]) * ramp(-off - g["lung_dist"])
          + g["tex_amp"] * phantom_filters.smooth_noise(texture_noise, g["tex_sigma"] * size))
  # Structures: each pixel of V depends on the labels in its 3x3 neighbourhood only.
  vessel = mask > 0
  level = np.where(mask == 2, g["cp_level"], np.where(mask == 3, g["ncp_level"], g["contrast"]
                                                     * (1.0 - g["falloff"] * geo["t"])[None]))
  value = np.where(vessel, level, np.where(phantom_filters.dilate3(vessel), g["wall_level"], back))
  img = g["gain"] * phantom_filters.blur3(value) + g["offset"] + g["noise_sigma"] * pixel_noise
  return np.clip(np.rint(255.0 * img), 0, 255).astype(np.uint8)[..., None]


def _areas(mask: np.ndarray, regions: np.ndarray) -> dict[str, np.float32]:
  """Exact pixel counts of every structure in every region, and their global sums."""
  out = {}
  for s in STRUCTURES:
    counts = [int(np.count_nonzero((mask == LABELS[s]) & (regions == r))) for r in (1, 2, 3)]
    out.update({f"{s}_area_{r}": np.float32(n) for r, n in zip(REGION_NAMES, counts)})
    out[f"{s}_area"] = np.float32(sum(counts))
  return out


def _example(params, noise_seed, geo, shapes, sex, age) -> dict:
  mask, regions = geometry.labels(shapes), geo["regions"].copy()
  return {"image": _compose(params, geo, mask, noise_seed), "mask": mask, "regions": regions,
          "sex": np.int64(sex), "age": np.float32(age), **_areas(mask, regions),
          "render_params": params, "noise_seed": np.int64(noise_seed)}


def render(render_params: np.ndarray, noise_seed: int,
           size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Renders an example deterministically from its parameters.

  Args:
    render_params: float32 vector of length `NUM_RENDER_PARAMS` (see `RENDER_PARAM_NAMES`).
    noise_seed: seed of the pixel-noise and background-texture fields.
    size: image side S.

  Returns:
    (image uint8 [S, S, 1], mask uint8 [S, S], regions uint8 [S, S] with values 1..3).
  """
  params = np.asarray(render_params, dtype=np.float32).reshape(NUM_RENDER_PARAMS)
  geo = geometry.vessel_frame(params, size)
  mask = geometry.labels(geometry.shapes(params, geo))
  return _compose(params, geo, mask, noise_seed), mask, geo["regions"].copy()


def sample_example(rng: np.random.Generator, size: int = 64) -> dict:
  """Samples one phantom example.

  Args:
    rng: numpy Generator; the example is a deterministic function of its state.
    size: image side S (32 to 256 recommended).

  Returns:
    Dict with "image" uint8 [S, S, 1], "mask" uint8 [S, S] (labels of `CLASS_NAMES`),
    "regions" uint8 [S, S] (1..3 = `REGION_NAMES`), "sex" np.int64 (0 female, 1 male), "age"
    np.float32, the 12 `AREA_VARIABLES` as np.float32 (exact pixel counts of mask ∩ region),
    "render_params" float32 [NUM_RENDER_PARAMS] and "noise_seed" np.int64.
  """
  if not 16 <= size <= 1024:
    raise ValueError(f"size must be in [16, 1024] (32 to 256 recommended), got {size}")
  for _ in range(1000):  # Rejection keeps the vessel inside the image; it virtually never fires.
    sex, age, params = _sample_params(rng)  # float32 before rendering: render() reproduces it.
    geo = geometry.vessel_frame(params, size)
    shapes = geometry.shapes(params, geo)
    if geometry.inside(shapes):
      break
  else:
    raise RuntimeError(f"could not place the vessel inside the image at size {size}")
  return _example(params, rng.integers(0, 2 ** 62), geo, shapes, sex, age)


def _closest(count, target: float, lo: float, hi: float, variable: str) -> float:
  """Bisection for the parameter in [lo, hi] whose (non-decreasing) count is closest to target.

  Raises ValueError when even the ends of the range miss the target by more than 2 %.
  """
  c_lo, c_hi = count(lo), count(hi)
  if target > c_hi * (1.0 + _TOL) or target < c_lo * (1.0 - _TOL):
    raise ValueError(f"{variable}={target:g} is infeasible (unreachable): the structure can "
                     f"only cover {c_lo:g} to {c_hi:g} pixels here")
  if not c_lo < target < c_hi:
    return hi if target >= c_hi else lo
  while hi - lo > 1e-7 * hi:  # Invariant: count(lo) < target <= count(hi).
    mid = 0.5 * (lo + hi)
    lo, hi = (lo, mid) if count(mid) >= target else (mid, hi)
  return lo if target - count(lo) < count(hi) - target else hi


def _set_structure(params: np.ndarray, geo, shapes: dict, structure: str, region: int | None,
                   target: float, variable: str) -> np.ndarray:
  """Fits one structure (in one region, or in all: region None) to `target` pixels.

  Plaques: the regional scale q (from 0: a missing plaque is created from its stored latent
  geometry), or for a global target one common factor on every present plaque (on all three
  latent plaques when none is present). Lumen: the regional calibre k_r, or the global g.
  Earlier-painted structures are fixed, so the visible count is monotone in the parameter.
  """
  regions = geo["regions"]
  sel = np.ones(regions.shape, bool) if region is None else regions == region
  regs = (1, 2, 3) if region is None else (region,)
  if structure == "lumen":
    names = ["lumen_scale" if region is None else f"lumen_{REGION_NAMES[region - 1]}_scale"]
    base = {n: float(params[_IX[n]]) for n in names}
    lo, hi = _SCALE_RANGE[0] / base[names[0]], _SCALE_RANGE[1] / base[names[0]]
    cover = shapes["calcified"] | shapes["noncalcified"]
    shape_fn = lambda p: geometry.tube(p, geo)
  else:
    names = [f"{structure}_{REGION_NAMES[r - 1]}_scale" for r in regs]
    base = {n: float(params[_IX[n]]) for n in names}
    if not any(base.values()):
      base = dict.fromkeys(names, 1.0)
    qmax = {n: geometry.q_max(*(float(params[_IX[n[:-5] + f]]) for f in ("a", "c")))
            for n in names}
    lo, hi = 0.0, min(qmax[n] / base[n] for n in names if base[n] > 0)
    cover = shapes["calcified"] if structure == "noncalcified" else np.zeros_like(sel)
    shape_fn = lambda p: np.logical_or.reduce(
        [geometry.plaque(p, geo, structure, r) for r in (1, 2, 3)])

  def trial(m: float) -> tuple[np.ndarray, np.ndarray]:
    p = params.copy()
    for n in names:
      p[_IX[n]] = np.float32(base[n] * m)  # float32, exactly what render sees.
    return p, shape_fn(p)

  count = lambda m: int(np.count_nonzero(trial(m)[1] & ~cover & sel))
  current = int(np.count_nonzero(shapes[structure] & ~cover & sel))
  if current == target:
    return params
  m = 0.0 if target == 0 else _closest(count, target, lo, hi, variable)
  new_params, shape = trial(m)
  new_shapes = dict(shapes, **{structure: shape})
  if not geometry.inside(new_shapes):
    raise ValueError(f"{variable}={target:g} is infeasible: the vessel would leave the image")
  shapes.update(new_shapes)
  return new_params


def _parse(variable: str) -> tuple[str, int | None]:
  """'noncalcified_area_mid' -> ('noncalcified', 2); 'lumen_area' -> ('lumen', None)."""
  structure, _, region = variable.partition("_area")
  return structure, (REGION_NAMES.index(region[1:]) + 1 if region else None)


def render_counterfactual(example: Mapping[str, Any], interventions: Mapping[str, float]) -> dict:
  """True counterfactual: re-renders `example` with only the named structures resized.

  Noise seed, hidden factor, contrast, centreline, region map and all other parameters stay
  fixed. A regional variable resizes its structure in its region only: a plaque is scaled
  about its centre (an absent plaque is created at its stored latent position, so positive
  targets are supported), the lumen through the region's calibre k_r (other regions' columns
  untouched). A global variable scales the structure in all regions by one common factor
  (plaques: every present plaque, or all three latent ones when none is present; lumen: g).
  The pixel count ends at the reachable count closest to the target: within 2 % or 0.5 px.
  CP is fitted first, then NCP, then lumen (each is painted under the earlier ones), so a
  plaque change may also change its region's lumen (CP: and NCP) area by occlusion.

  Args:
    example: dict as returned by `sample_example` (numpy scalars, 0-d arrays or numbers).
    interventions: {area variable (`AREA_VARIABLES`): target pixel count}. Plaque targets may
      be 0 (removes the plaque); lumen targets must be positive.

  Returns:
    Dict with the keys of `sample_example`; the areas are the new mask counts.

  Raises:
    ValueError: unknown variable, global and regional variables of one structure together,
      negative / non-finite target, or an infeasible target.
  """
  targets = {v: float(np.asarray(t)) for v, t in interventions.items()}
  for var, t in targets.items():
    if var not in AREA_VARIABLES:
      raise ValueError(f"cannot intervene on {var!r}; valid choices: {AREA_VARIABLES}")
    lumen = var.startswith("lumen")
    if not math.isfinite(t) or t < 0 or (lumen and t == 0):
      raise ValueError(f"target for {var!r} must be a finite "
                       f"{'positive' if lumen else 'non-negative'} pixel count, got {t}")
    if _parse(var)[1] and _parse(var)[0] + "_area" in targets:
      raise ValueError(f"cannot intervene on {_parse(var)[0]}_area together with {var}")
  params = np.array(example["render_params"], dtype=np.float32).reshape(NUM_RENDER_PARAMS)
  geo = geometry.vessel_frame(params, int(np.asarray(example["image"]).shape[0]))
  shapes = geometry.shapes(params, geo)
  for var in sorted(targets, key=lambda v: _FIT_ORDER.index(_parse(v)[0])):
    params = _set_structure(params, geo, shapes, *_parse(var), targets[var], var)
  return _example(params, np.asarray(example["noise_seed"]), geo, shapes,
                  np.asarray(example["sex"]), np.asarray(example["age"]))
