"""TFDS builder shared by the procedural phantom datasets (synth_chest, synth_vessel).

Examples come from the phantom module's `sample_example`; each split is generated from its
own seed sequence `(seed, split index, example index)`, so a split is a deterministic function
of the config and independent of generation order. Every example stores the image, its label
maps, the scalar variables (areas are exact pixel counts), and the render parameters + noise
seed from which the phantom's `render_counterfactual` renders true counterfactuals. Stored
with array_record for random access.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(kw_only=True)
class PhantomConfig(tfds.core.BuilderConfig):
  """Size and seed of a phantom build; the name encodes them so builds never collide."""
  image_size: int = 64
  num_train: int = 4000
  num_validation: int = 500
  num_test: int = 500
  seed: int = 0

  @classmethod
  def make(cls, cfg: ml_collections.ConfigDict) -> "PhantomConfig":
    """From the `data` config section (image_size, num_train/validation/test, seed)."""
    name = (f"s{cfg.image_size}_n{cfg.num_train}-{cfg.num_validation}-{cfg.num_test}"
            f"_seed{cfg.seed}")
    return cls(name=name, image_size=cfg.image_size, num_train=cfg.num_train,
               num_validation=cfg.num_validation, num_test=cfg.num_test, seed=cfg.seed)

  def split_sizes(self) -> dict[str, int]:
    return dict(train=self.num_train, validation=self.num_validation, test=self.num_test)


class PhantomBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder; subclasses set PHANTOM, MAPS, SCALARS and DESCRIPTION.

  Attributes:
    PHANTOM: module with `sample_example(rng, size)` and `NUM_RENDER_PARAMS`.
    MAPS: per-pixel uint8 label maps stored besides the image (e.g. mask, regions).
    SCALARS: float variables stored per example (sex is stored as an integer).
  """

  VERSION = tfds.core.Version("1.0.0")
  # Builds are always requested with a `PhantomConfig.make(...)` instance, whose name encodes
  # sizes and seed; TFDS needs one registered config, named so it never collides.
  BUILDER_CONFIGS = [PhantomConfig(name="default")]
  PHANTOM: ModuleType
  MAPS: tuple[str, ...] = ("mask",)
  SCALARS: tuple[str, ...] = ()
  DESCRIPTION = ""

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    zlib = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding="zlib")
    features = {
        "image": zlib((s, s, 1)),
        "sex": tfds.features.Scalar(dtype=np.int64),
        "render_params": tfds.features.Tensor(shape=(self.PHANTOM.NUM_RENDER_PARAMS,),
                                              dtype=np.float32),
        "noise_seed": tfds.features.Scalar(dtype=np.int64),
        "index": tfds.features.Scalar(dtype=np.int64),
    }
    features.update({k: zlib((s, s)) for k in self.MAPS})
    features.update({k: tfds.features.Scalar(dtype=np.float32) for k in self.SCALARS})
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is generated locally.
    sizes = self.builder_config.split_sizes()
    return {split: self._generate_examples(split, sizes[split]) for split in SPLITS}

  def _generate_examples(self, split: str, num: int):
    cfg = self.builder_config
    for i in range(num):
      rng = np.random.default_rng([cfg.seed, SPLITS.index(split), i])
      ex = self.PHANTOM.sample_example(rng, cfg.image_size)
      record = {k: ex[k] for k in ("image", "render_params", "noise_seed", *self.MAPS,
                                   *self.SCALARS)}
      record["sex"] = int(ex["sex"])
      record["index"] = i
      yield i, record

  @classmethod
  def for_config(cls, cfg: ml_collections.ConfigDict, data_dir: str) -> "PhantomBuilder":
    """The builder for the `data` config section."""
    return cls(config=PhantomConfig.make(cfg), data_dir=data_dir, file_format="array_record")
