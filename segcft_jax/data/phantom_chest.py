"""Procedural chest-radiograph phantom ("synth_chest") with exact true counterfactuals.

Pure numpy. Lengths are in units of the image side ``S`` (pixel centres at ``(j + 0.5) / S``), so
the phantom looks the same at every size and areas scale with ``S**2``.

Generative model (one example)::

    sex ~ Bernoulli(0.5)           (0 = female, 1 = male)
    age ~ Uniform(20, 85)          (years)
    b   ~ N(0, 1), clipped to [-2.5, 2.5]     hidden body size; NOT a causal variable
    e_o ~ N(0, 1) per organ o                 independent organ noise

    log T_o = log B_o + beta_o * sex + gamma_o * (age - 50) + 0.22 * b + 0.05 * e_o
    (B_rl, B_ll, B_h) = (0.086, 0.061, 0.050) S^2
    (beta_rl, beta_ll, beta_h) = (0.16, 0.16, 0.12)           males have larger organs
    (gamma_rl, gamma_ll, gamma_h) = (-0.004, -0.004, +0.005) / yr   lungs shrink, heart grows

Each organ is a rotated, egg-shaped superellipse with a sampled aspect ratio. Lungs are clipped
at the mediastinum and the heart is drawn over them; the stored variables are the *visible*
pixel counts::

    area_o = #{pixels with mask == label_o}        (heart label wins over lung labels)

``T_o`` is the target of ``area_o``: the heart's semi-axes follow from ``T_h`` directly; each
lung's shape is then scaled about its centre until its *visible* count (what the heart and the
mediastinum leave of it) is closest to ``T_o``. So a lung's area depends on sex, age and its
noise only, never on the heart, exactly as the declared graph says (organ areas are children
of sex and age alone): under do(heart_area) a lung keeps its visible area, its outline moving
out where the heart covers more of it (``render_counterfactual``).

Image, with ``L`` the label map, ``K3`` a 3x3 binomial blur and ``n, t`` noise fields drawn from
``default_rng(noise_seed)``::

    x = tissue(body, spine, ribs) + K3[v(L)] + a_tex * vessels(t) * K3[1{L in lungs}]
    image = clip(round(255 * (g * x + o + sigma * n)), 0, 255)
    g = exp(-0.10 * b + 0.02 * e_g),   o = 0.035 + 0.008 * e_o'      (exposure)

``v`` maps background/lung/heart to 0 / -lung_att / +heart_att. The exposure gain ``g`` is
driven by the same hidden ``b`` as the organ areas: that is the confounding shortcut (mean
brightness falls as every organ grows; dark lungs add to it, the bright heart is too small to
undo it: corr(mean intensity, area) = -0.77 / -0.77 / -0.67 for left lung / right lung / heart
on the default 64x64 train split; before 1.2.0, -0.30 * b: -0.82 / -0.83 / -0.79). The thorax
widens mildly with ``b`` and sex; it carries no causal variable. Organ geometry enters a pixel
only through the labels in its 3x3 neighbourhood, so rescaling organs (``render_counterfactual``:
the intervened one, and under do(heart) the lungs that keep their visible area) changes pixels
only within one pixel of their old/new masks: the true counterfactual.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from segcft_jax.data import phantom_filters

__all__ = ["CLASS_NAMES", "ORGAN_LABELS", "VARIABLES", "RENDER_PARAM_NAMES", "NUM_RENDER_PARAMS",
           "sample_example", "render", "render_counterfactual"]

CLASS_NAMES = ("background", "left_lung", "right_lung", "heart")
ORGAN_LABELS = {"left_lung_area": 1, "right_lung_area": 2, "heart_area": 3}
VARIABLES = ("sex", "age", "left_lung_area", "right_lung_area", "heart_area")

_GLOBAL_NAMES = ("gain", "offset", "noise_sigma", "body_cx", "body_cy", "body_w", "body_h",
                 "body_p", "tissue", "spine_w", "spine_amp", "rib_amp", "rib_freq", "rib_phase",
                 "rib_curv", "lung_att", "heart_att", "tex_amp", "tex_sigma", "mediastinum")
_SHAPE_FIELDS = ("cx", "cy", "a", "c", "theta", "p", "k")
# Organ prefixes in the order they are parameterised; "left" is the patient's left (image right).
_ORGANS = ("right_lung", "left_lung", "heart")
RENDER_PARAM_NAMES = _GLOBAL_NAMES + tuple(f"{o}_{f}" for o in _ORGANS for f in _SHAPE_FIELDS)
NUM_RENDER_PARAMS = len(RENDER_PARAM_NAMES)
_IX = {name: i for i, name in enumerate(RENDER_PARAM_NAMES)}
_ORGAN_OF_VARIABLE = {"left_lung_area": "left_lung", "right_lung_area": "right_lung",
                      "heart_area": "heart"}

# Visible area in S^2, female, age 50 (lungs: what the heart and the mediastinum leave).
_BASE_AREA = {"right_lung": 0.086, "left_lung": 0.061, "heart": 0.050}
_AGE_SLOPE = {"right_lung": -0.004, "left_lung": -0.004, "heart": 0.005}  # log-area per year
_SEX_EFFECT = {"right_lung": 0.16, "left_lung": 0.16, "heart": 0.12}  # log-area, male - female
_BODY_EFFECT = 0.22    # log-area per std of the hidden body size b
_ORGAN_NOISE = 0.05    # log-area, independent per organ
_EXPOSURE_EFFECT = -0.10  # log-gain per std of b: the confounding shortcut


def _superellipse_area(p: float) -> float:
  """Area of {|u|^p + |v|^p <= 1}; the egg factor (1 + k v) integrates out by symmetry."""
  return 4.0 * math.gamma(1.0 + 1.0 / p) ** 2 / math.gamma(1.0 + 2.0 / p)


def _semi_axes(area: float, aspect: float, p: float) -> tuple[float, float]:
  """Semi-axes (a, c) with c / a = aspect of a shape with the given area."""
  ac = area / _superellipse_area(p)
  return math.sqrt(ac / aspect), math.sqrt(ac * aspect)


def _sample_params(rng: np.random.Generator) -> tuple[int, float, np.ndarray, dict[str, float]]:
  """Draws (sex, age, float32 render params, {organ: T_o in S^2}) from the module docstring's
  model; each lung's semi-axes are a first guess from T_o, refined by `_fit_lungs`."""
  sex = int(rng.random() < 0.5)
  age = float(rng.uniform(20.0, 85.0))
  z = rng.standard_normal(16)
  b = float(np.clip(z[0], -2.5, 2.5))
  u = rng.random(12)
  targets = {}
  q = dict(gain=math.exp(_EXPOSURE_EFFECT * b + 0.02 * z[1]), offset=0.035 + 0.008 * z[2],
           noise_sigma=0.012 + 0.006 * u[0])
  # The thorax grows mildly with b and sex; it is generous enough to hold the largest organs.
  body_w = min(0.47, 0.41 * math.exp(0.03 * b + 0.03 * sex))
  q.update(body_cx=0.5 + 0.01 * z[3], body_cy=0.58, body_w=body_w, body_h=0.52, body_p=3.0,
           tissue=0.42 + 0.015 * z[4], spine_w=0.03 + 0.01 * u[1], spine_amp=0.10 + 0.04 * u[2],
           rib_amp=0.05 + 0.03 * u[3], rib_freq=8.5 + 1.5 * u[4], rib_phase=u[5],
           rib_curv=1.2 + 0.6 * u[6],
           lung_att=0.27 + 0.02 * z[5], heart_att=0.13 + 0.02 * z[6], tex_amp=0.05 + 0.03 * u[7],
           tex_sigma=0.02 + 0.01 * u[8], mediastinum=0.015)
  for i, organ in enumerate(_ORGANS):
    log_area = (math.log(_BASE_AREA[organ]) + _SEX_EFFECT[organ] * sex
                + _AGE_SLOPE[organ] * (age - 50.0) + _BODY_EFFECT * b + _ORGAN_NOISE * z[7 + i])
    if organ == "heart":  # Tilted ellipse, apex towards the patient's left (image right, down).
      p, k, aspect, theta = 2.0, 0.1, 0.77 + 0.05 * z[10], 0.45 + 0.08 * z[11]
      cx, cy = q["body_cx"] + 0.06 + 0.01 * z[12], 0.61 + 0.01 * z[13]
    else:  # Egg-shaped superellipse, wider at the base; the base leans out (costophrenic angle).
      side = -1.0 if organ == "right_lung" else 1.0
      p, k, aspect = 2.2 + 0.3 * u[9], 0.25, 1.8 + 0.1 * z[14]
      theta = -side * (0.08 + 0.04 * u[10 + i])
      cx, cy = q["body_cx"] + side * 0.42 * q["body_w"], 0.49 + 0.01 * z[15]
    targets[organ] = math.exp(log_area)
    a, c = _semi_axes(targets[organ], aspect, p)
    q.update({f"{organ}_{f}": v for f, v in zip(_SHAPE_FIELDS, (cx, cy, a, c, theta, p, k))})
  return sex, age, np.array([q[n] for n in RENDER_PARAM_NAMES], dtype=np.float32), targets


def _scaled(params: np.ndarray, organ: str, a0: float, c0: float, s: float) -> np.ndarray:
  """Params with the organ's semi-axes (a0, c0) scaled by s (float32, exactly what render sees)."""
  p = params.copy()
  p[_IX[f"{organ}_a"]], p[_IX[f"{organ}_c"]] = np.float32(a0 * s), np.float32(c0 * s)
  return p


def _fit_lungs(params: np.ndarray, targets: Mapping[str, float], shapes: dict[str, np.ndarray],
               size: int) -> np.ndarray:
  """Scales each lung until its visible pixel count is close to its target (module docstring).

  Fixed-point iteration on the scale s (area ~ s^2): s <- s sqrt(T / visible(s)); the stored
  area is the final count, so it need not be exact. Updates `shapes`, returns the new params.
  """
  x, y = _grid(size)
  for organ in ("right_lung", "left_lung"):
    a0, c0 = float(params[_IX[f"{organ}_a"]]), float(params[_IX[f"{organ}_c"]])
    target, s = targets[organ] * size * size, 1.0
    for _ in range(8):
      trial = _scaled(params, organ, a0, c0, s)
      shape = _organ_shape(trial, organ, x, y)
      count = int(_visible(shape, organ, shapes["heart"]).sum())
      params, shapes[organ] = trial, shape
      if count == 0 or abs(count - target) <= max(0.5, 2e-3 * target):
        break
      s *= math.sqrt(target / count)
  return params


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (x right, y down) in units of the image side."""
  t = (np.arange(size, dtype=np.float64) + 0.5) / size
  return t[None, :], t[:, None]


def _organ_shape(params: np.ndarray, organ: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Rasterises one organ's full shape: |u / (1 + k v)|^p + |v|^p <= 1 in its rotated frame.

  The shape is star-shaped about its centre, so scaling (a, c) by s gives nested shapes and a
  pixel count monotone in s (what the counterfactual bisection relies on). Lungs are clipped at
  the mediastinum so the two lungs never overlap.
  """
  cx, cy, a, c, theta, p, k = (float(params[_IX[f"{organ}_{f}"]]) for f in _SHAPE_FIELDS)
  dx, dy = x - cx, y - cy
  ct, st = math.cos(theta), math.sin(theta)
  u = (dx * ct + dy * st) / a
  v = (dy * ct - dx * st) / c
  w = u / (1.0 + k * np.clip(v, -1.0, 1.0))  # |v| > 1 lies outside anyway.
  inside = np.abs(w) ** p + np.abs(v) ** p <= 1.0
  if organ != "heart":
    mid, gap = float(params[_IX["body_cx"]]), float(params[_IX["mediastinum"]])
    inside &= (x < mid - gap) if organ == "right_lung" else (x > mid + gap)
  return inside


def _visible(shape: np.ndarray, organ: str, heart: np.ndarray) -> np.ndarray:
  """The part of an organ's shape that carries its label (lungs lose what the heart covers)."""
  return shape if organ == "heart" else shape & ~heart


def _body_level(params: np.ndarray, size: int) -> np.ndarray:
  """Superellipse level of the thorax: < 1 inside the body."""
  x, y = _grid(size)
  cx, cy, w, h, p = (float(params[_IX[n]]) for n in ("body_cx", "body_cy", "body_w", "body_h",
                                                     "body_p"))
  return np.abs((x - cx) / w) ** p + np.abs((y - cy) / h) ** p


def _body_mask(params: np.ndarray, size: int) -> np.ndarray:
  """Hard body mask, used to keep organs inside the thorax."""
  return _body_level(params, size) <= 1.0


def _labels(shapes: Mapping[str, np.ndarray]) -> np.ndarray:
  """Label map from full organ shapes; painted in order so the heart wins over the lungs."""
  mask = np.zeros(shapes["heart"].shape, dtype=np.uint8)
  mask[shapes["right_lung"]] = ORGAN_LABELS["right_lung_area"]
  mask[shapes["left_lung"]] = ORGAN_LABELS["left_lung_area"]
  mask[shapes["heart"]] = ORGAN_LABELS["heart_area"]
  return mask


def _vessels(field: np.ndarray, sigma_px: float) -> np.ndarray:
  """Vessel-like branching ridges: zero crossings of Gaussian-smoothed noise."""
  ridges = np.exp(-(phantom_filters.smooth_noise(field, sigma_px) / 0.3) ** 2)
  return ridges - ridges.mean()


def _compose(params: np.ndarray, mask: np.ndarray, noise_seed: int) -> np.ndarray:
  """Image from global params, the label map and the seeded noise fields (see module doc)."""
  size = mask.shape[0]
  g = {n: float(params[_IX[n]]) for n in _GLOBAL_NAMES}
  x, y = _grid(size)
  rng = np.random.default_rng(int(noise_seed))
  texture_noise = rng.standard_normal((size, size))
  pixel_noise = rng.standard_normal((size, size))
  # Nothing below up to `organ` depends on organ geometry, so it may have any spatial support.
  level = _body_level(params, size)
  body = np.clip((1.0 - level) / 0.08, 0.0, 1.0)
  tissue = g["tissue"] * body * (0.8 + 0.2 * np.sqrt(np.clip(1.0 - level, 0.0, 1.0)))
  spine = g["spine_amp"] * np.exp(-(((x - g["body_cx"]) / g["spine_w"]) ** 2)) * body  # 1-D exp
  phase = (y - g["rib_curv"] * (x - g["body_cx"]) ** 2) * g["rib_freq"] + g["rib_phase"]
  thorax = np.clip((0.85 - y) / 0.1, 0.0, 1.0)
  ribs = (0.5 + 0.5 * np.cos(2.0 * math.pi * phase)) ** 2
  ribs = g["rib_amp"] * (ribs * ribs * ribs) * body * thorax  # Sharpened stripes, cos^6.
  # Organ-dependent terms see the labels only through a 3x3 blur: exact local counterfactuals.
  value = np.array([0.0, -g["lung_att"], -g["lung_att"], g["heart_att"]])
  organ = phantom_filters.blur3(value[mask])
  lung = phantom_filters.blur3(((mask == 1) | (mask == 2)).astype(np.float64))
  tex = g["tex_amp"] * _vessels(texture_noise, g["tex_sigma"] * size) * lung
  img = g["gain"] * (tissue + spine + ribs + organ + tex) + g["offset"]
  img = img + g["noise_sigma"] * pixel_noise
  return np.clip(np.rint(255.0 * img), 0, 255).astype(np.uint8)[..., None]


def _shapes(params: np.ndarray, size: int) -> dict[str, np.ndarray]:
  """Full (unoccluded) boolean shape of every organ."""
  x, y = _grid(size)
  return {o: _organ_shape(params, o, x, y) for o in _ORGANS}


def _fits_in_body(shape: np.ndarray, body: np.ndarray) -> bool:
  """Whether an organ is non-empty, inside the body and clear of the image border."""
  border = shape[0].any() or shape[-1].any() or shape[:, 0].any() or shape[:, -1].any()
  return bool(shape.any()) and not border and not bool((shape & ~body).any())


def render(render_params: np.ndarray, noise_seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Renders an example deterministically from its parameters.

  Args:
    render_params: float32 vector of length `NUM_RENDER_PARAMS` (see `RENDER_PARAM_NAMES`).
    noise_seed: seed of the pixel-noise and lung-texture fields.
    size: image side S.

  Returns:
    (image uint8 [S, S, 1], mask uint8 [S, S]).
  """
  params = np.asarray(render_params, dtype=np.float32).reshape(NUM_RENDER_PARAMS)
  mask = _labels(_shapes(params, size))
  return _compose(params, mask, noise_seed), mask


def _areas(mask: np.ndarray) -> dict[str, np.float32]:
  """Exact pixel count of each organ label."""
  counts = np.bincount(mask.ravel(), minlength=len(CLASS_NAMES))
  return {v: np.float32(counts[lab]) for v, lab in ORGAN_LABELS.items()}


def sample_example(rng: np.random.Generator, size: int = 64) -> dict:
  """Samples one phantom example.

  Args:
    rng: numpy Generator; the example is a deterministic function of its state.
    size: image side S (32 to 256).

  Returns:
    Dict with "image" uint8 [S, S, 1], "mask" uint8 [S, S], "sex" np.int64 (0 female, 1 male),
    "age" np.float32 (years), the three organ areas as np.float32 (exact pixel counts of their
    labels in "mask"), "render_params" float32 [NUM_RENDER_PARAMS] and "noise_seed" np.int64.
  """
  if not 8 <= size <= 1024:
    raise ValueError(f"size must be in [8, 1024] (32 to 256 recommended), got {size}")
  for _ in range(1000):  # Rejection keeps every organ inside the body; it virtually never triggers.
    sex, age, params, targets = _sample_params(rng)  # float32: render() reproduces it.
    shapes = _shapes(params, size)
    params = _fit_lungs(params, targets, shapes, size)
    body = _body_mask(params, size)
    if all(_fits_in_body(s, body) for s in shapes.values()):
      break
  else:
    raise RuntimeError(f"could not place the organs inside the body at size {size}")
  noise_seed = np.int64(rng.integers(0, 2 ** 62))
  mask = _labels(shapes)
  return {"image": _compose(params, mask, noise_seed), "mask": mask, "sex": np.int64(sex),
          "age": np.float32(age), **_areas(mask), "render_params": params,
          "noise_seed": noise_seed}


def _rescale(params: np.ndarray, organ: str, target: float, shapes: dict[str, np.ndarray],
             body: np.ndarray, variable: str) -> np.ndarray:
  """Bisection on the organ's scale factor s so that its visible pixel count is closest to target.

  The visible count is monotone in s (nested shapes; the heart and mediastinum only remove a
  fixed set), so bisection on the rasterised count converges to the closest reachable count.
  Updates `shapes[organ]` in place and returns the new float32 params.
  """
  x, y = _grid(body.shape[0])
  a0, c0 = float(params[_IX[f"{organ}_a"]]), float(params[_IX[f"{organ}_c"]])

  def trial(s: float) -> tuple[np.ndarray, np.ndarray, int]:
    p = _scaled(params, organ, a0, c0, s)
    shape = _organ_shape(p, organ, x, y)
    return p, shape, int(_visible(shape, organ, shapes["heart"]).sum())

  best = trial(1.0)
  if best[2] != target:
    lo, hi = 1.0, 1.0
    if best[2] < target:
      while trial(hi)[2] < target:
        lo, hi = hi, hi * 1.25
        if hi > 8.0:
          raise ValueError(f"{variable}={target:g} is unreachable: the organ would leave the body")
    else:
      while lo > 1e-3 and trial(lo)[2] >= target:
        lo, hi = lo * 0.8, lo
    while hi - lo > 1e-7 * hi:  # Invariant: count(lo) < target <= count(hi); ~float32 resolution.
      mid = 0.5 * (lo + hi)
      lo, hi = (lo, mid) if trial(mid)[2] >= target else (mid, hi)
    below, above = trial(lo), trial(hi)
    best = below if target - below[2] < above[2] - target else above
  if best[2] < 1:
    raise ValueError(f"{variable}={target:g} is unreachable: the organ would vanish")
  if not _fits_in_body(best[1], body):
    raise ValueError(f"{variable}={target:g} is unreachable: the organ would leave the body")
  shapes[organ] = best[1]
  return best[0]


def render_counterfactual(example: Mapping[str, Any], interventions: Mapping[str, float]) -> dict:
  """True counterfactual: re-renders `example` with the intervened organs rescaled.

  Noise seed, exposure, body and every other parameter stay fixed; each intervened organ is
  scaled about its centre (aspect, rotation and position kept) so that its visible mask pixel
  count is as close as possible to the target. The heart is fitted first, since it hides lung.
  A lung that is not intervened on keeps its visible area (its mechanism has no heart input,
  module docstring): under do(heart_area) it is rescaled back to its factual count, so its
  outline moves where the heart covers more or less of it.

  Args:
    example: dict as returned by `sample_example` (values may be numpy scalars, 0-d arrays or
      python numbers).
    interventions: {organ area variable: target pixel count}, variables from `ORGAN_LABELS`.

  Returns:
    Dict with the keys of `sample_example`; the areas are the new mask counts.

  Raises:
    ValueError: unknown variable, non-positive / non-finite target, or unreachable target
      (for a heart target: also when a lung could not keep its visible area).
  """
  choices, targets = tuple(ORGAN_LABELS), {}
  for var, target in interventions.items():
    if var not in ORGAN_LABELS:
      raise ValueError(f"cannot intervene on {var!r}; valid choices: {choices}")
    t = targets[var] = float(np.asarray(target))
    if not math.isfinite(t) or t <= 0:
      raise ValueError(f"target for {var!r} must be a finite positive pixel count, got {t}; "
                       f"valid choices: {choices}")
  size = int(np.asarray(example["image"]).shape[0])
  params = np.asarray(example["render_params"], dtype=np.float32).reshape(NUM_RENDER_PARAMS).copy()
  noise_seed = np.int64(np.asarray(example["noise_seed"]))
  shapes, body = _shapes(params, size), _body_mask(params, size)
  if "heart_area" in targets:  # The other lungs hold their factual visible counts.
    for var in ("left_lung_area", "right_lung_area"):
      targets.setdefault(var, float(np.asarray(example[var])))
  for var in sorted(targets, key=lambda v: v != "heart_area"):
    try:
      params = _rescale(params, _ORGAN_OF_VARIABLE[var], targets[var], shapes, body, var)
    except ValueError as e:
      if var in interventions:
        raise
      raise ValueError(f"heart_area={targets['heart_area']:g} is unreachable: {var} cannot keep "
                       f"its visible area ({e})") from None
  mask = _labels(shapes)
  sex, age = np.int64(np.asarray(example["sex"])), np.float32(np.asarray(example["age"]))
  return {"image": _compose(params, mask, noise_seed), "mask": mask, "sex": sex, "age": age,
          **_areas(mask), "render_params": params, "noise_seed": noise_seed}
