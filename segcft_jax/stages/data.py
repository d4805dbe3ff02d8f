"""`data` stage: build the configured TFDS dataset if absent and summarise it."""

from __future__ import annotations

import logging
import time

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segcft_jax.data import datasets
from segcft_jax.train import distributed

log = logging.getLogger(__name__)


def _split_stats(source, keys) -> dict:
  """Mean/CV of each scalar and Pearson r(mean image intensity, scalar) over a split."""
  n = len(source)
  records = [source[i] for i in range(n)]
  brightness = np.array([r["image"].mean() for r in records])
  stats = {"num_examples": n}
  for k in keys:
    v = np.array([float(r[k]) for r in records])
    stats[k] = dict(mean=v.mean(), cv=v.std() / abs(v.mean()) if v.mean() else None,
                    r_with_brightness=float(np.corrcoef(brightness, v)[0, 1]))
  return stats


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Builds `config.data` under `<workdir>/data` (or `config.data.data_dir`)."""
  builder = datasets.builder(config.data, workdir)
  t0 = time.perf_counter()
  if builder.is_prepared():
    log.info("[data] %s already built at %s", config.data.name, builder.data_path)
  elif jax.process_index() == 0:  # One writer; the other processes wait at the barrier.
    log.info("[data] building %s at %s", config.data.name, builder.data_path)
    tfds.disable_progress_bar()
    builder.download_and_prepare(file_format="array_record")
  distributed.barrier("data_built")
  builder = datasets.prepared_builder(config.data, workdir)
  seconds = time.perf_counter() - t0
  scalars = [k for k in datasets.spec(config.data.name).model_keys
             if k not in ("image", "mask", "regions")]
  return dict(dataset=config.data.name, path=str(builder.data_path), build_seconds=seconds,
              splits={s: len(builder.as_data_source(s)) for s in builder.info.splits},
              train=_split_stats(builder.as_data_source("train"), scalars))
