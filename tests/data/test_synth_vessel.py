"""The synth_vessel TFDS build and config: stored fields, split determinism, confounding,
true counterfactuals from stored records, and the Seg-CFT / Pos-Seg-CFT config variants."""

import os

import ml_collections
import numpy as np
import pytest

from segcft_jax import config_files
from segcft_jax.data import datasets, phantom_vessel, pipeline, synth_vessel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = {"lumen": 1, "calcified": 2, "noncalcified": 3}
REGIONAL = tuple(f"{s}_area_{r}" for s in LABELS for r in ("proximal", "mid", "distal"))
GLOBAL = ("lumen_area", "calcified_area", "noncalcified_area")


def _data_cfg(**kw):
  base = dict(name="synth_vessel", data_dir="", seed=0, image_size=32, num_train=300,
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


def test_module_constants_and_registry():
  assert synth_vessel.CLASS_NAMES == ("background", "lumen", "calcified_plaque",
                                      "noncalcified_plaque")
  assert synth_vessel.REGION_NAMES == ("proximal", "mid", "distal")
  assert synth_vessel.MODEL_KEYS == ("image", "mask", "regions", "sex", "age", *GLOBAL,
                                     *REGIONAL)
  spec = datasets.spec("synth_vessel")
  assert spec.class_names == synth_vessel.CLASS_NAMES
  assert spec.model_keys == synth_vessel.MODEL_KEYS
  assert spec.make_builder is synth_vessel.make_builder


def test_split_sizes_fields_and_areas_equal_mask_counts(built):
  assert {s: len(built.as_data_source(s)) for s in ("train", "validation", "test")} == {
      "train": 300, "validation": 20, "test": 20}
  for r in _records(built, "validation"):
    assert r["image"].shape == (32, 32, 1) and r["image"].dtype == np.uint8
    assert r["mask"].shape == r["regions"].shape == (32, 32)
    assert set(np.unique(r["mask"])) <= {0, 1, 2, 3}
    assert set(np.unique(r["regions"])) == {1, 2, 3}
    assert r["render_params"].shape == (phantom_vessel.NUM_RENDER_PARAMS,)
    for s, label in LABELS.items():
      total = 0.0
      for i, region in enumerate(("proximal", "mid", "distal"), start=1):
        area = float(r[f"{s}_area_{region}"])
        assert area == float(np.sum((r["mask"] == label) & (r["regions"] == i)))
        total += area
      assert float(r[f"{s}_area"]) == total == float(np.sum(r["mask"] == label))


def test_pipeline_decodes_regions_and_every_model_key(built):
  source = built.as_data_source("test")
  batch = next(pipeline.eval_batches(source, synth_vessel.MODEL_KEYS, 8))
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (8, 32, 32, 1)
  assert batch["mask"].dtype == batch["regions"].dtype == np.int32
  assert all(batch[k].shape == (8,) for k in synth_vessel.MODEL_KEYS[3:])


def test_lumen_contrast_confounds_plaque_on_train_split(built):
  recs = _records(built, "train")
  intensity = np.array([r["image"][..., 0][r["mask"] == 1].mean() for r in recs])
  plaque = np.array([float(r["calcified_area"]) + float(r["noncalcified_area"]) for r in recs])
  assert np.corrcoef(intensity, plaque)[0, 1] <= -0.5  # measured about -0.8
  for name in ("calcified_area", "noncalcified_area"):
    area = np.array([float(r[name]) for r in recs])
    assert area.std() / area.mean() >= 0.5, name


def test_splits_are_deterministic_and_disjoint(built, tmp_path):
  again = datasets.builder(_data_cfg(), str(tmp_path))
  again.download_and_prepare(file_format="array_record")
  a, b = _records(built, "test"), _records(again, "test")
  key = lambda r: int(r["index"])
  for x, y in zip(sorted(a, key=key), sorted(b, key=key)):
    for k in ("image", "mask", "regions", "render_params"):
      np.testing.assert_array_equal(x[k], y[k])
    assert float(x["age"]) == float(y["age"])
  seeds = lambda s: {int(r["noise_seed"]) for r in _records(built, s)}
  assert not seeds("test") & seeds("validation")
  other = datasets.builder(_data_cfg(seed=1, num_train=8, num_validation=4, num_test=20),
                           str(tmp_path))
  other.download_and_prepare(file_format="array_record")
  assert other.data_path != again.data_path
  assert seeds("test") != {int(r["noise_seed"]) for r in _records(other, "test")}
  # Example i of a split is the phantom sample of rng [seed, split index, i].
  ex = phantom_vessel.sample_example(np.random.default_rng([0, 2, 3]), 32)
  np.testing.assert_array_equal(next(r for r in a if int(r["index"]) == 3)["image"],
                                ex["image"])


def test_stored_render_parameters_reproduce_and_counterfactual(built):
  r = next(r for r in _records(built, "test") if float(r["noncalcified_area_mid"]) > 0)
  image, mask, regions = phantom_vessel.render(r["render_params"], int(r["noise_seed"]), 32)
  np.testing.assert_array_equal(image, r["image"])
  np.testing.assert_array_equal(mask, r["mask"])
  np.testing.assert_array_equal(regions, r["regions"])
  target = float(r["lumen_area_distal"]) * 0.8
  cf = phantom_vessel.render_counterfactual(r, {"lumen_area_distal": target})
  assert abs(cf["lumen_area_distal"] - target) <= max(0.02 * target, 0.5)
  np.testing.assert_array_equal(cf["regions"], r["regions"])
  assert all(cf[k] == float(r[k]) for k in REGIONAL if not k.endswith("distal"))


def test_prepared_builder_names_the_missing_dataset(tmp_path):
  with pytest.raises(FileNotFoundError, match="--stages=data"):
    datasets.prepared_builder(_data_cfg(), str(tmp_path))


@pytest.mark.parametrize("variant,setting,size", [
    (None, "global", 64), ("quick", "global", 32), ("positional", "positional", 64),
    ("positional_quick", "positional", 32)])
def test_config_variants(variant, setting, size):
  spec = "configs/synth_vessel.py" + (f":{variant}" if variant else "")
  c = config_files.load(os.path.join(ROOT, spec))
  assert c.name == "synth_vessel" and c.variant == (variant or "default")
  assert c.setting == setting and c.data.image_size == size and c.data.name == "synth_vessel"
  assert tuple(c.cft_variables) == (REGIONAL if setting == "positional" else GLOBAL)
  cft = ("cft_reg", "cft_seg") + (("cft_pos_seg",) if setting == "positional" else ())
  assert tuple(c.stages) == ("data", "segmentor", "oracle", "regressor", "pgm", "hvae", *cft,
                             "evaluate")
  assert all(stage in c for stage in cft) and ("cft_pos_seg" in c) == (setting == "positional")
  assert tuple(c.hvae.parents) == ("sex", "age", *c.cft_variables)
  assert c.threefry_partitionable is False and c.mesh.num_devices == -1
  assert set(c.cft_variables) <= set(synth_vessel.MODEL_KEYS)
  assert tuple(c.scm.intervenable) == tuple(c.cft_variables)
  assert tuple(c.regressor.variables) == tuple(c.cft_variables)
  assert set(c.scm.variables) == {"sex", "age", *c.cft_variables}
  for name in c.cft_variables:
    assert set(c.scm.variables[name].parents) <= set(c.scm.variables)
  assert c.segmentor.seed != c.oracle.seed
  assert tuple(c.segmentor.model.widths) != tuple(c.oracle.model.widths)
  with pytest.raises(AttributeError):  # Locked.
    c.new_field = 1


def test_config_unknown_variant():
  with pytest.raises(ValueError, match="valid variants: default, quick, positional"):
    config_files.load(os.path.join(ROOT, "configs/synth_vessel.py:positonal"))
