"""TFDS builder of the synth_vessel phantom dataset (SPEC §2).

Examples come from `phantom_vessel.sample_example`; each split is generated from its own seed
sequence `(seed, split index, example index)`, so a split is a deterministic function of the
config and independent of generation order. Every example stores the image, the label mask,
the region map (1..3 = proximal / mid / distal), age, sex, the 3 global and 9 regional
structure areas (exact pixel counts), and the render parameters + noise seed from which
`phantom_vessel.render_counterfactual` renders true counterfactuals. Stored with array_record
for random access.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segcft_jax.data import phantom_vessel

SPLITS = ("train", "validation", "test")
GLOBAL_AREAS = phantom_vessel.GLOBAL_VARIABLES
REGIONAL_AREAS = phantom_vessel.REGIONAL_VARIABLES
SCALARS = ("age", *GLOBAL_AREAS, *REGIONAL_AREAS)
CLASS_NAMES = phantom_vessel.CLASS_NAMES
REGION_NAMES = phantom_vessel.REGION_NAMES
MODEL_KEYS = ("image", "mask", "regions", "sex", *SCALARS)


@dataclasses.dataclass(kw_only=True)
class SynthVesselConfig(tfds.core.BuilderConfig):
  """Size and seed of a synth_vessel build; the name encodes them so builds never collide."""
  image_size: int = 64
  num_train: int = 4000
  num_validation: int = 500
  num_test: int = 500
  seed: int = 0

  @classmethod
  def make(cls, image_size: int, num_train: int, num_validation: int, num_test: int,
           seed: int) -> "SynthVesselConfig":
    name = f"s{image_size}_n{num_train}-{num_validation}-{num_test}_seed{seed}"
    return cls(name=name, image_size=image_size, num_train=num_train,
               num_validation=num_validation, num_test=num_test, seed=seed)

  def split_sizes(self) -> dict[str, int]:
    return dict(train=self.num_train, validation=self.num_validation, test=self.num_test)


class SynthVessel(tfds.core.GeneratorBasedBuilder):
  """Procedural straightened coronary vessel with masks, regions, areas and render params."""

  VERSION = tfds.core.Version("1.0.0")
  # Builds are always requested with a `SynthVesselConfig.make(...)` instance, whose name
  # encodes sizes and seed; TFDS needs one registered config, named so it never collides.
  BUILDER_CONFIGS = [SynthVesselConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    features = {
        "image": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8, encoding="zlib"),
        "mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8, encoding="zlib"),
        "regions": tfds.features.Tensor(shape=(s, s), dtype=np.uint8, encoding="zlib"),
        "sex": tfds.features.Scalar(dtype=np.int64),
        "render_params": tfds.features.Tensor(
            shape=(phantom_vessel.NUM_RENDER_PARAMS,), dtype=np.float32),
        "noise_seed": tfds.features.Scalar(dtype=np.int64),
        "index": tfds.features.Scalar(dtype=np.int64),
    }
    features.update({k: tfds.features.Scalar(dtype=np.float32) for k in SCALARS})
    return tfds.core.DatasetInfo(
        builder=self,
        description="Procedural straightened coronary vessel (segcft-jax, SPEC §2 synth_vessel).",
        features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is generated locally.
    sizes = self.builder_config.split_sizes()
    return {split: self._generate_examples(split, sizes[split]) for split in SPLITS}

  def _generate_examples(self, split: str, num: int):
    cfg = self.builder_config
    for i in range(num):
      rng = np.random.default_rng([cfg.seed, SPLITS.index(split), i])
      ex = phantom_vessel.sample_example(rng, cfg.image_size)
      record = {k: ex[k] for k in ("image", "mask", "regions", "render_params", "noise_seed",
                                   *SCALARS)}
      record["sex"] = int(ex["sex"])
      record["index"] = i
      yield i, record


def make_builder(cfg: ml_collections.ConfigDict, data_dir: str) -> SynthVessel:
  """The builder for the `data` config section (image_size, num_*, seed)."""
  config = SynthVesselConfig.make(cfg.image_size, cfg.num_train, cfg.num_validation,
                                  cfg.num_test, cfg.seed)
  return SynthVessel(config=config, data_dir=data_dir, file_format="array_record")
