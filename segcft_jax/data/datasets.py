"""Dataset registry: config `data` section -> prepared TFDS builder and its metadata.

A dataset is identified by `config.data.name`. Each entry knows how to make its builder
config from the `data` section, and which fields form the model inputs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import ml_collections
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to build one dataset and what it contains.

  Attributes:
    make_builder: `(data config, data_dir) -> tfds builder`.
    class_names: segmentation classes (label = index).
    model_keys: fields fed to models (images are normalised to [-1, 1] on read).
  """
  make_builder: Callable[[ml_collections.ConfigDict, str], tfds.core.DatasetBuilder]
  class_names: tuple[str, ...]
  model_keys: tuple[str, ...]


def _synth_chest_builder(cfg: ml_collections.ConfigDict, data_dir: str):
  from segcft_jax.data import synth_chest  # pylint: disable=g-import-not-at-top
  config = synth_chest.SynthChestConfig.make(cfg.image_size, cfg.num_train,
                                             cfg.num_validation, cfg.num_test, cfg.seed)
  return synth_chest.SynthChest(config=config, data_dir=data_dir, file_format="array_record")


_REGISTRY = {
    "synth_chest": DatasetSpec(
        make_builder=_synth_chest_builder,
        class_names=("background", "left_lung", "right_lung", "heart"),
        model_keys=("image", "mask", "sex", "age", "left_lung_area", "right_lung_area",
                    "heart_area")),
}


def spec(name: str) -> DatasetSpec:
  """The registry entry for `name`, or a ValueError listing the known datasets."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown dataset {name!r} in config.data.name; "
                     f"known datasets: {sorted(_REGISTRY)}.")
  return _REGISTRY[name]


def data_dir(cfg: ml_collections.ConfigDict, workdir: str) -> str:
  """Where the TFDS files live: `config.data.data_dir`, or `<workdir>/data`."""
  return cfg.data_dir or os.path.join(workdir, "data")


def builder(cfg: ml_collections.ConfigDict, workdir: str) -> tfds.core.DatasetBuilder:
  """The (possibly not yet prepared) builder for `config.data`."""
  return spec(cfg.name).make_builder(cfg, data_dir(cfg, workdir))


def prepared_builder(cfg: ml_collections.ConfigDict, workdir: str) -> tfds.core.DatasetBuilder:
  """The builder, failing clearly when the dataset has not been built yet."""
  b = builder(cfg, workdir)
  if not b.is_prepared():
    raise FileNotFoundError(
        f"Dataset {cfg.name!r} is not built in {b.data_path}. Run the data stage first "
        f"(--stages=data), or point config.data.data_dir at the directory holding it.")
  return b
