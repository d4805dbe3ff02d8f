"""The Morpho-MNIST t10k build: IDX parsing, CSV alignment, splits, masks, padding, errors.

Uses the real files in ../shared/data/morphomnist (present wherever the tests run).
"""

import gzip
import os
import shutil

import ml_collections
import numpy as np
import pytest

from segcft_jax import config_files
from segcft_jax.data import datasets, morphomnist

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _data_cfg(**kw):
  base = dict(name="morphomnist", data_dir="", source_dir="", seed=0, num_train=120,
              num_validation=30, num_test=30)
  base.update(kw)
  return ml_collections.ConfigDict(base)


@pytest.fixture(scope="module")
def t10k():
  return morphomnist.load_t10k(morphomnist.resolve_source_dir())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  b = datasets.builder(_data_cfg(), str(tmp_path_factory.mktemp("work")))
  b.download_and_prepare(file_format="array_record")
  return b


def _records(builder, split):
  src = builder.as_data_source(split)
  return [src[i] for i in range(len(src))]


def test_t10k_counts_labels_and_csv_values(t10k):
  assert t10k["images"].shape == (10_000, 28, 28) and t10k["images"].dtype == np.uint8
  assert np.bincount(t10k["digit"], minlength=10).tolist() == MNIST_TEST_COUNTS
  assert t10k["images"].max() == 254
  # causal-gen spec §5: test thickness 0.908574..5.880797, intensity 67.86933..254.87321.
  np.testing.assert_allclose([t10k["thickness"].min(), t10k["thickness"].max()],
                             [0.908574, 5.880797], rtol=1e-5)
  np.testing.assert_allclose([t10k["intensity"].min(), t10k["intensity"].max()],
                             [67.86933, 254.87321], rtol=1e-6)
  assert np.corrcoef(t10k["thickness"], t10k["intensity"])[0, 1] > 0.85
  t_n = morphomnist.normalise(t10k["thickness"], morphomnist.THICKNESS_RANGE)
  assert -1.0 < t_n.min() < t_n.max() < 1.0


def test_splits_are_deterministic_disjoint_and_seeded():
  sizes = dict(train=8000, validation=1000, test=1000)
  a = morphomnist.split_indices(sizes, seed=0)
  assert {k: len(v) for k, v in a.items()} == sizes
  assert len(np.unique(np.concatenate(list(a.values())))) == 10_000
  b = morphomnist.split_indices(sizes, seed=0)
  assert all(np.array_equal(a[k], b[k]) for k in sizes)
  c = morphomnist.split_indices(sizes, seed=1)
  assert not np.array_equal(a["test"], c["test"])
  with pytest.raises(ValueError, match="at most 10000"):
    morphomnist.split_indices(dict(train=9000, validation=1000, test=1), seed=0)


def test_built_records_match_source_padding_masks_and_areas(built, t10k):
  sizes = {s: len(built.as_data_source(s)) for s in morphomnist.SPLITS}
  assert sizes == {"train": 120, "validation": 30, "test": 30}
  expected = morphomnist.split_indices(dict(train=120, validation=30, test=30), seed=0)
  for split in morphomnist.SPLITS:
    recs = _records(built, split)
    assert sorted(int(r["index"]) for r in recs) == sorted(expected[split].tolist())
  for r in _records(built, "validation"):
    i = int(r["index"])
    image, mask = r["image"][..., 0], r["mask"]
    assert r["image"].shape == (32, 32, 1) and mask.shape == (32, 32)
    np.testing.assert_array_equal(image[2:30, 2:30], t10k["images"][i])
    assert not image[:2].any() and not image[30:].any()
    assert not image[:, :2].any() and not image[:, 30:].any()
    assert set(np.unique(mask)) <= {0, 1} and not mask[:2].any() and not mask[:, 30:].any()
    np.testing.assert_array_equal(mask.astype(bool), image >= 0.5 * image.max())
    assert float(r["stroke_area"]) == float(mask.sum()) > 0
    assert int(r["digit"]) == t10k["digit"][i]
    assert float(r["thickness"]) == t10k["thickness"][i]
    assert float(r["intensity"]) == t10k["intensity"][i]


def test_stroke_area_grows_with_thickness(t10k):
  area = morphomnist.stroke_mask(t10k["images"]).reshape(10_000, -1).sum(axis=1)
  assert np.corrcoef(area, t10k["thickness"])[0, 1] > 0.6


def test_source_dir_resolution_order(monkeypatch, tmp_path):
  monkeypatch.delenv(morphomnist.ENV_VAR, raising=False)
  default = morphomnist.resolve_source_dir("")
  assert default == morphomnist.default_source_dir()
  assert default.parts[-3:] == ("shared", "data", "morphomnist")
  monkeypatch.setenv(morphomnist.ENV_VAR, str(tmp_path / "env"))
  assert morphomnist.resolve_source_dir("") == tmp_path / "env"
  assert morphomnist.resolve_source_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"


def test_missing_and_truncated_files_are_named(tmp_path):
  src = morphomnist.resolve_source_dir()
  with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\.gz not found.*"
                                              r"source_dir"):
    morphomnist.load_t10k(tmp_path)
  for name in (morphomnist.LABELS_FILE, morphomnist.MORPHO_FILE):
    shutil.copy(src / name, tmp_path / name)
  # A gzip stream cut short: decompression fails.
  cut = tmp_path / morphomnist.IMAGES_FILE
  cut.write_bytes((src / morphomnist.IMAGES_FILE).read_bytes()[:50_000])
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz cannot be decompressed"):
    morphomnist.load_t10k(tmp_path)
  # A complete gzip stream of a truncated IDX payload: the header's size check fails.
  with gzip.open(src / morphomnist.IMAGES_FILE) as f:
    raw = f.read()
  with gzip.open(cut, "wb") as f:
    f.write(raw[:16 + 28 * 28 * 10])
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is truncated.*"
                                       r"\(10000, 28, 28\)"):
    morphomnist.load_t10k(tmp_path)
  # Through the builder (what the data stage runs), with config.data.source_dir.
  b = datasets.builder(_data_cfg(source_dir=str(tmp_path)), str(tmp_path / "work"))
  with pytest.raises(ValueError, match="is truncated"):
    b.download_and_prepare(file_format="array_record")


def test_csv_rows_must_align_with_images(tmp_path):
  path = tmp_path / "m.csv"
  path.write_text("index,thickness,intensity\n0,1.0,100.0\n2,2.0,120.0\n")
  with pytest.raises(ValueError, match=r"m\.csv, data row 1: index is 2"):
    morphomnist.read_morpho_csv(path, 2)
  path.write_text("index,thickness\n0,1.0\n")
  with pytest.raises(ValueError, match=r"lacks the column\(s\) \['intensity'\]"):
    morphomnist.read_morpho_csv(path, 1)


@pytest.mark.parametrize("variant,sizes", [("default", (8000, 1000, 1000)),
                                           ("quick", (512, 64, 64))])
def test_configs_select_the_split_sizes(variant, sizes, tmp_path):
  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "morphomnist.py")
  config = config_files.load(f"{path}:{variant}")
  cfg = datasets.builder(config.data, str(tmp_path)).builder_config
  assert (cfg.num_train, cfg.num_validation, cfg.num_test) == sizes
  assert config.scm.variables.intensity.parents == ("thickness",)
  assert (config.scm.variables.thickness.low,
          config.scm.variables.thickness.high) == morphomnist.THICKNESS_RANGE
