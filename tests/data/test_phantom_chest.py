"""Tests of the synth_chest phantom: generative-model properties and true counterfactuals."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from segcft_jax.data import phantom_chest as pc

AREAS = tuple(pc.ORGAN_LABELS)
KEYS = {"image", "mask", "sex", "age", *AREAS, "render_params", "noise_seed"}
SHAPE_NAMES = ("cx", "cy", "a", "c", "theta", "p", "k")
ORGAN_PREFIX = {"left_lung_area": "left_lung", "right_lung_area": "right_lung",
                "heart_area": "heart"}


def _sample(n: int, size: int, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [pc.sample_example(rng, size) for _ in range(n)]


@pytest.fixture(scope="module")
def examples64() -> list[dict]:
  return _sample(600, 64, 0)


@pytest.fixture(scope="module")
def examples32() -> list[dict]:
  return _sample(300, 32, 1)


def _stats(examples: list[dict]) -> dict[str, np.ndarray]:
  out = {k: np.array([e[k] for e in examples], dtype=np.float64) for k in ("sex", "age", *AREAS)}
  out["brightness"] = np.array([e["image"].mean() for e in examples])
  return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.corrcoef(a, b)[0, 1])


def _outside_union(old_mask, new_mask, labels) -> np.ndarray:
  union = np.isin(old_mask, labels) | np.isin(new_mask, labels)
  return ~ndimage.binary_dilation(union, structure=np.ones((3, 3), bool), iterations=2)


def _moved(var: str) -> tuple[str, ...]:
  """Organ variables whose shape a true do(var) may rescale: under do(heart) the lungs refit."""
  return tuple(AREAS) if var == "heart_area" else (var,)


def test_constants():
  assert pc.CLASS_NAMES == ("background", "left_lung", "right_lung", "heart")
  assert pc.ORGAN_LABELS == {"left_lung_area": 1, "right_lung_area": 2, "heart_area": 3}
  assert pc.VARIABLES == ("sex", "age", "left_lung_area", "right_lung_area", "heart_area")
  assert pc.NUM_RENDER_PARAMS == len(pc.RENDER_PARAM_NAMES) == len(set(pc.RENDER_PARAM_NAMES))


@pytest.mark.parametrize("size", [32, 64, 100])
def test_types_shapes_and_exact_areas(size):
  for ex in _sample(5, size, 2):
    assert set(ex) == KEYS
    assert ex["image"].shape == (size, size, 1) and ex["image"].dtype == np.uint8
    assert ex["mask"].shape == (size, size) and ex["mask"].dtype == np.uint8
    assert ex["render_params"].shape == (pc.NUM_RENDER_PARAMS,)
    assert ex["render_params"].dtype == np.float32
    assert isinstance(ex["sex"], np.int64) and int(ex["sex"]) in (0, 1)
    assert isinstance(ex["noise_seed"], np.int64)
    assert isinstance(ex["age"], np.float32) and 20 <= ex["age"] <= 85
    assert set(np.unique(ex["mask"])) == {0, 1, 2, 3}
    for var, label in pc.ORGAN_LABELS.items():
      assert isinstance(ex[var], np.float32)
      assert ex[var] == np.count_nonzero(ex["mask"] == label)


def test_anatomy(examples64):
  size = 64
  cols = np.arange(size)
  for ex in examples64[:100]:
    mask, img = ex["mask"], ex["image"][..., 0].astype(np.float64)
    cx = {v: (cols[None, :] * (mask == lab)).sum() / (mask == lab).sum()
          for v, lab in pc.ORGAN_LABELS.items()}
    cy = {v: (cols[:, None] * (mask == lab)).sum() / (mask == lab).sum()
          for v, lab in pc.ORGAN_LABELS.items()}
    # Radiological convention: the patient's left lung is on the image's right.
    assert cx["left_lung_area"] > size / 2 + 5 and cx["right_lung_area"] < size / 2 - 5
    assert not ((mask == 1)[:, : size // 2 - 2].any() or (mask == 2)[:, size // 2 + 2:].any())
    assert cx["heart_area"] > size / 2 and cy["heart_area"] > size / 2
    assert cy["heart_area"] > max(cy["left_lung_area"], cy["right_lung_area"])
    lung, heart = img[(mask == 1) | (mask == 2)].mean(), img[mask == 3].mean()
    body = pc._body_mask(ex["render_params"], size)
    tissue = img[body & (mask == 0)].mean()
    assert lung < tissue < heart
    assert img[~body].mean() < lung  # Dark background outside the body.
    assert not (mask.astype(bool) & ~body).any()  # Organs inside the body.


def test_variable_distributions(examples64):
  st = _stats(examples64)
  assert 0.42 < st["sex"].mean() < 0.58
  assert st["age"].min() >= 20 and st["age"].max() <= 85 and st["age"].std() > 15
  male = st["sex"] == 1
  for var in AREAS:
    a = st[var]
    assert a.std() / a.mean() >= 0.18, var  # measured ~0.25-0.27
    assert (a[male].mean() - a[~male].mean()) / a.mean() >= 0.07, var  # measured ~0.13-0.18
    r_age = _corr(st["age"], a)
    assert (r_age >= 0.2) if var == "heart_area" else (r_age <= -0.2), (var, r_age)  # ~0.25-0.38


@pytest.mark.parametrize("fixture,threshold", [("examples64", 0.65), ("examples32", 0.6)])
def test_brightness_confounds_every_area(request, fixture, threshold):
  st = _stats(request.getfixturevalue(fixture))
  for var in AREAS:
    r = _corr(st["brightness"], st[var])
    assert r <= -threshold, (var, r)  # measured -0.79 to -0.84


def test_small_size_properties(examples32):
  st = _stats(examples32)
  for var, label in pc.ORGAN_LABELS.items():
    assert st[var].std() / st[var].mean() >= 0.18
    assert all(e[var] == np.count_nonzero(e["mask"] == label) for e in examples32[:50])
  for ex in examples32[:20]:
    image, mask = pc.render(ex["render_params"], ex["noise_seed"], 32)
    np.testing.assert_array_equal(image, ex["image"])
    np.testing.assert_array_equal(mask, ex["mask"])


def test_render_reproduces_examples(examples64):
  for ex in examples64[:30]:
    image, mask = pc.render(ex["render_params"], ex["noise_seed"], 64)
    np.testing.assert_array_equal(image, ex["image"])
    np.testing.assert_array_equal(mask, ex["mask"])


def test_noise_comes_from_seed(examples64):
  ex = examples64[0]
  image, mask = pc.render(ex["render_params"], int(ex["noise_seed"]) + 1, 64)
  np.testing.assert_array_equal(mask, ex["mask"])
  assert (image != ex["image"]).mean() > 0.3


def test_determinism():
  a = pc.sample_example(np.random.default_rng(3))
  b = pc.sample_example(np.random.default_rng(3))
  c = pc.sample_example(np.random.default_rng(4))
  for k in KEYS:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["image"], c["image"])
  assert not np.array_equal(a["render_params"], c["render_params"])



def _check_counterfactual(ex, cf, var, target, size):
  moved = _moved(var)
  assert set(cf) == KEYS
  assert abs(cf[var] - target) <= 0.02 * target + 1e-6, (var, cf[var], target)
  for v, lab in pc.ORGAN_LABELS.items():
    assert cf[v] == np.count_nonzero(cf["mask"] == lab)
    if v != var:  # The graph has no edge between organ areas: the others keep their counts.
      assert abs(cf[v] - ex[v]) <= 1, (var, v, cf[v], ex[v])
  outside = _outside_union(ex["mask"], cf["mask"], [pc.ORGAN_LABELS[v] for v in moved])
  np.testing.assert_array_equal(cf["image"][..., 0][outside], ex["image"][..., 0][outside])
  np.testing.assert_array_equal(cf["mask"][outside], ex["mask"][outside])
  # Only the size parameters of the intervened organ (and, under do(heart), the lungs) change.
  changed = {pc.RENDER_PARAM_NAMES[i] for i in np.flatnonzero(cf["render_params"]
                                                               != ex["render_params"])}
  assert changed <= {f"{ORGAN_PREFIX[v]}_{f}" for v in moved for f in ("a", "c")}
  assert cf["noise_seed"] == ex["noise_seed"] and cf["sex"] == ex["sex"] and cf["age"] == ex["age"]
  image, mask = pc.render(cf["render_params"], cf["noise_seed"], size)
  np.testing.assert_array_equal(image, cf["image"])
  np.testing.assert_array_equal(mask, cf["mask"])


@pytest.mark.parametrize("var", AREAS)
def test_counterfactual_relative_changes(examples64, var):
  for ex in examples64[:50]:
    for rel in (-0.30, -0.15, 0.15, 0.30):
      target = float(ex[var]) * (1.0 + rel)
      _check_counterfactual(ex, pc.render_counterfactual(ex, {var: target}), var, target, 64)


@pytest.mark.parametrize("var", AREAS)
def test_counterfactual_targets_from_other_examples(examples64, var):
  for ex, other in zip(examples64[100:150], examples64[150:200]):
    target = float(other[var])
    _check_counterfactual(ex, pc.render_counterfactual(ex, {var: target}), var, target, 64)


def test_counterfactual_small_size(examples32):
  for ex in examples32[:15]:
    for var in AREAS:
      for rel in (-0.3, 0.3):
        target = float(ex[var]) * (1.0 + rel)
        cf = pc.render_counterfactual(ex, {var: target})
        assert abs(cf[var] - target) <= max(0.03 * target, 1.0)
        outside = _outside_union(ex["mask"], cf["mask"],
                                 [pc.ORGAN_LABELS[v] for v in _moved(var)])
        np.testing.assert_array_equal(cf["image"][..., 0][outside], ex["image"][..., 0][outside])


def test_null_intervention_is_identity(examples64):
  for ex in examples64[:20]:
    for var in AREAS:
      cf = pc.render_counterfactual(ex, {var: ex[var]})
      for k in KEYS:
        np.testing.assert_array_equal(cf[k], ex[k])


def test_counterfactual_accepts_reader_values(examples64):
  ex = examples64[3]
  loose = {k: (np.asarray(v) if k in ("image", "mask", "render_params") else np.asarray(v)[()])
           for k, v in ex.items()}
  loose["noise_seed"] = np.array(ex["noise_seed"])  # 0-d array.
  loose["age"], loose["sex"] = float(ex["age"]), int(ex["sex"])
  target = float(ex["heart_area"]) * 1.2
  a = pc.render_counterfactual(loose, {"heart_area": np.float32(target)})
  b = pc.render_counterfactual(ex, {"heart_area": target})
  for k in KEYS:
    np.testing.assert_array_equal(a[k], b[k])
  assert isinstance(a["sex"], np.int64) and isinstance(a["age"], np.float32)


def test_joint_intervention(examples64):
  ex = examples64[4]
  targets = {"left_lung_area": float(ex["left_lung_area"]) * 0.8,
             "heart_area": float(ex["heart_area"]) * 1.2}
  cf = pc.render_counterfactual(ex, targets)
  for var, target in targets.items():
    assert abs(cf[var] - target) <= 0.02 * target
  assert abs(cf["right_lung_area"] - ex["right_lung_area"]) <= 1


@pytest.mark.parametrize("rel", [-0.3, 0.3])
def test_heart_intervention_keeps_visible_lung_areas(examples64, rel):
  """The heart hides lung, so a lung holding its visible count grows / shrinks its outline."""
  grown = 0
  for ex in examples64[:40]:
    cf = pc.render_counterfactual(ex, {"heart_area": float(ex["heart_area"]) * (1 + rel)})
    ia = pc.RENDER_PARAM_NAMES.index("left_lung_a")
    scale = cf["render_params"][ia] / ex["render_params"][ia]
    covered = lambda e: np.count_nonzero((e["mask"] == 3) & pc._shapes(
        e["render_params"], 64)["left_lung"])
    for v in ("left_lung_area", "right_lung_area"):
      assert abs(cf[v] - ex[v]) <= 1, (v, cf[v], ex[v])
    if covered(cf) != covered(ex):  # the heart covers more / less of the left lung
      assert (scale > 1) == (covered(cf) > covered(ex)), (scale, covered(cf), covered(ex))
      grown += 1
  assert grown >= 20  # the heart overlaps the left lung in most examples


@pytest.mark.parametrize("interventions,match", [
    ({"lung_area": 100.0}, "lung_area.*valid choices"),
    ({"age": 50.0}, "age.*valid choices"),
    ({"heart_area": -5.0}, "heart_area.*positive"),
    ({"heart_area": 0.0}, "heart_area.*positive"),
    ({"left_lung_area": float("nan")}, "left_lung_area.*finite"),
    ({"right_lung_area": float("inf")}, "right_lung_area.*finite"),
    ({"heart_area": 4000.0}, "heart_area.*unreachable"),
    ({"left_lung_area": 0.2}, "left_lung_area.*unreachable"),
])
def test_bad_interventions(examples64, interventions, match):
  with pytest.raises(ValueError, match=match):
    pc.render_counterfactual(examples64[0], interventions)
