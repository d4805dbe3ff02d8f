"""Dataset registry: config `data` section -> prepared TFDS builder and its metadata.

A dataset is identified by `config.data.name`. Each entry knows how to make its builder
config from the `data` section, and which fields form the model inputs.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Callable

import ml_collections
import tensorflow_datasets as tfds


# name -> module defining CLASS_NAMES, MODEL_KEYS and make_builder(data_cfg, data_dir).
# Modules are imported on first use, so an unused dataset costs nothing.
_MODULES = {
    "synth_chest": "segcft_jax.data.synth_chest",
    "synth_vessel": "segcft_jax.data.synth_vessel",
    "morphomnist": "segcft_jax.data.morphomnist",
    "padchest": "segcft_jax.data.padchest",
    "folder": "segcft_jax.data.folder",
}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to build one dataset and what it contains.

  Attributes:
    make_builder: `(data config, data_dir) -> tfds builder`.
    class_names: segmentation classes (label = index).
    model_keys: fields fed to models (images are normalised to [-1, 1] on read).
    region_names: names of the labels 1..R of the `regions` map (empty: no region map).
  """
  make_builder: Callable[[ml_collections.ConfigDict, str], tfds.core.DatasetBuilder]
  class_names: tuple[str, ...]
  model_keys: tuple[str, ...]
  region_names: tuple[str, ...] = ()


def spec(data: str | ml_collections.ConfigDict) -> DatasetSpec:
  """The registry entry for the `data` config section (or a dataset's name), or a ValueError
  listing the known datasets.

  A dataset whose classes are configured (`folder`) describes itself from its section
  (`describe(cfg)`); the others from module constants.
  """
  name = data if isinstance(data, str) else data.name
  if name not in _MODULES:
    raise ValueError(f"Unknown dataset {name!r} in config.data.name; "
                     f"known datasets: {sorted(_MODULES)}.")
  module = importlib.import_module(_MODULES[name])
  if hasattr(module, "describe"):
    if isinstance(data, str):
      raise ValueError(f"Dataset {name!r} is described by its config section; pass "
                       f"config.data.")
    fields = module.describe(data)
  else:
    fields = dict(class_names=module.CLASS_NAMES, model_keys=module.MODEL_KEYS,
                  region_names=getattr(module, "REGION_NAMES", ()))
  return DatasetSpec(make_builder=module.make_builder,
                     **{k: tuple(v) for k, v in fields.items()})


def data_dir(cfg: ml_collections.ConfigDict, workdir: str) -> str:
  """Where the TFDS files live: `config.data.data_dir`, or `<workdir>/data`."""
  return cfg.data_dir or os.path.join(workdir, "data")


def builder(cfg: ml_collections.ConfigDict, workdir: str) -> tfds.core.DatasetBuilder:
  """The (possibly not yet prepared) builder for `config.data`."""
  return spec(cfg).make_builder(cfg, data_dir(cfg, workdir))


def open_split(b: tfds.core.DatasetBuilder, split: str):
  """Random-access source of one split, failing clearly on missing or unreadable files."""
  try:
    source = b.as_data_source(split)
    if len(source):
      source[0]  # Reads one record: catches truncated or corrupt files early.
    return source
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f"Split {split!r} of the dataset in {b.data_path} cannot be read "
        f"({type(e).__name__}: {str(e)[:200]}). Re-run the data stage (--stages=data): it "
        f"moves the damaged files aside and rebuilds the dataset.") from e


def damage(b: tfds.core.DatasetBuilder) -> str | None:
  """Why the prepared dataset of `b` cannot be read (a shard missing, truncated or corrupt),
  or None when the first and last example of every split read back."""
  try:
    for split in b.info.splits:
      source = b.as_data_source(split)
      if len(source) != b.info.splits[split].num_examples:
        return f"split {split!r} has {len(source)} of {b.info.splits[split].num_examples} examples"
      for i in {0, len(source) - 1} if len(source) else ():
        source[i]
  except Exception as e:  # pylint: disable=broad-except  (any unreadable file)
    return f"{type(e).__name__}: {str(e)[:200]}"
  return None


def prepared_builder(cfg: ml_collections.ConfigDict, workdir: str) -> tfds.core.DatasetBuilder:
  """The builder, failing clearly when the dataset has not been built yet."""
  b = builder(cfg, workdir)
  if not b.is_prepared():
    raise FileNotFoundError(
        f"Dataset {cfg.name!r} is not built in {b.data_path}. Run the data stage first "
        f"(--stages=data), or point config.data.data_dir at the directory holding it.")
  return b
