"""The synth_chest TFDS build.

Stored areas, split determinism, confounding and true counterfactuals.
"""

import ml_collections
import numpy as np
import pytest

from segcft_jax.data import datasets, phantom_chest

ORGANS = {"left_lung_area": 1, "right_lung_area": 2, "heart_area": 3}


def _data_cfg(**kw):
  base = dict(name="synth_chest", data_dir="", seed=0, image_size=32, num_train=300,
              num_validation=20, num_test=20)
  base.update(kw)
  return ml_collections.ConfigDict(base)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("work"))
  b = datasets.builder(_data_cfg(), work)
  b.download_and_prepare(file_format="array_record")
  return b


def _records(builder, split):
  src = builder.as_data_source(split)
  return [src[i] for i in range(len(src))]


def test_split_sizes_and_areas_equal_mask_counts(built):
  assert {s: len(built.as_data_source(s)) for s in ("train", "validation", "test")} == {
      "train": 300, "validation": 20, "test": 20}
  for r in _records(built, "validation"):
    assert r["image"].shape == (32, 32, 1) and r["image"].dtype == np.uint8
    for name, label in ORGANS.items():
      assert float(r[name]) == float(np.sum(r["mask"] == label))
    assert set(np.unique(r["mask"])) <= {0, 1, 2, 3}


def test_brightness_confounds_every_area_on_train_split(built):
  recs = _records(built, "train")
  brightness = np.array([r["image"].mean() for r in recs])
  for name in ORGANS:
    area = np.array([float(r[name]) for r in recs])
    assert abs(np.corrcoef(brightness, area)[0, 1]) >= 0.5, name
    assert area.std() / area.mean() >= 0.15, name


def test_splits_are_deterministic_and_disjoint(built, tmp_path):
  again = datasets.builder(_data_cfg(), str(tmp_path))
  again.download_and_prepare(file_format="array_record")
  a, b = _records(built, "test"), _records(again, "test")
  key = lambda r: int(r["index"])
  for x, y in zip(sorted(a, key=key), sorted(b, key=key)):
    np.testing.assert_array_equal(x["image"], y["image"])
    assert float(x["age"]) == float(y["age"])
  seeds = lambda s: {int(r["noise_seed"]) for r in _records(built, s)}
  assert not seeds("test") & seeds("validation")
  other = datasets.builder(_data_cfg(seed=1), str(tmp_path))
  other.download_and_prepare(file_format="array_record")
  assert seeds("test") != {int(r["noise_seed"]) for r in _records(other, "test")}


def test_stored_render_parameters_reproduce_and_counterfactual(built):
  r = _records(built, "test")[0]
  image, mask = phantom_chest.render(r["render_params"], int(r["noise_seed"]), 32)
  np.testing.assert_array_equal(image, r["image"])
  np.testing.assert_array_equal(mask, r["mask"])
  target = 0.85 * float(r["left_lung_area"])
  cf = phantom_chest.render_counterfactual(r, {"left_lung_area": target})
  assert abs(cf["left_lung_area"] - target) <= 0.02 * target


def test_prepared_builder_names_the_missing_dataset(tmp_path):
  with pytest.raises(FileNotFoundError, match="--stages=data"):
    datasets.prepared_builder(_data_cfg(), str(tmp_path))
  b = datasets.builder(_data_cfg(num_train=8, num_validation=4, num_test=4), str(tmp_path))
  b.download_and_prepare(file_format="array_record")
  for f in b.data_path.glob("*test.array_record*"):
    f.write_bytes(f.read_bytes()[:40])  # truncated
  with pytest.raises(FileNotFoundError, match="cannot be read.*rebuilds the dataset"):
    datasets.open_split(b, "test")
  assert datasets.damage(b) is not None  # the data stage rebuilds it (tests/test_failures.py)
  with pytest.raises(ValueError, match="known datasets"):
    datasets.spec("chest_xray_9000")
