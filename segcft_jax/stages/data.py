"""`data` stage: build the configured TFDS dataset if absent and summarise it (split sizes,
scalar statistics, the normalisation statistics the SCM may take from it: `scm.measured`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segcft_jax.data import datasets
from segcft_jax.scm import measured
from segcft_jax.train import distributed

log = logging.getLogger(__name__)


def _split_columns(source, keys) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(mean image intensity, {scalar: values}) over every example of a split."""
  records = [source[i] for i in range(len(source))]
  brightness = np.array([r["image"].mean() for r in records])
  return brightness, {k: np.array([float(r[k]) for r in records]) for k in keys}


def _split_stats(brightness: np.ndarray, columns: dict[str, np.ndarray]) -> dict:
  """Mean/CV of each scalar and Pearson r(mean image intensity, scalar) over a split."""
  stats = {"num_examples": len(brightness)}
  for k, v in columns.items():
    stats[k] = dict(mean=v.mean(), cv=v.std() / abs(v.mean()) if v.mean() else None,
                    r_with_brightness=float(np.corrcoef(brightness, v)[0, 1]))
  return stats


def damage(config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """Why the built dataset of `config.data` cannot be read, or None (also when unbuilt)."""
  builder = datasets.builder(config.data, workdir)
  if not builder.is_prepared():
    return f"it is not built in {builder.data_path}"
  return datasets.damage(builder)


def _move_aside(path: str) -> str:
  """Renames the directory `path` to `<path>.damaged-<time>` (kept, never deleted)."""
  target = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
  os.replace(path, target)
  return target


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Builds `config.data` under `<workdir>/data` (or `config.data.data_dir`); a built
  dataset that does not read back is moved aside and built again."""
  builder = datasets.builder(config.data, workdir)
  t0 = time.perf_counter()
  problem = datasets.damage(builder) if builder.is_prepared() else None
  distributed.barrier("data_checked")  # every process judged the files before any move
  if problem:
    if jax.process_index() == 0:
      moved = _move_aside(str(builder.data_path))
      log.warning("[data] the dataset at %s cannot be read (%s): moved it to %s, rebuilding",
                  builder.data_path, problem, moved)
    distributed.barrier("data_moved")
    builder = datasets.builder(config.data, workdir)
  if builder.is_prepared():
    log.info("[data] %s already built at %s", config.data.name, builder.data_path)
  elif jax.process_index() == 0:  # One writer; the other processes wait at the barrier.
    log.info("[data] building %s at %s", config.data.name, builder.data_path)
    tfds.disable_progress_bar()
    # TFDS prints "Downloading and preparing ..." for data made here; our lines say it.
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(file_format="array_record")
  distributed.barrier("data_built")
  builder = datasets.prepared_builder(config.data, workdir)
  seconds = time.perf_counter() - t0
  scalars = [k for k in datasets.spec(config.data).model_keys
             if k not in ("image", "mask", "regions")]
  brightness, columns = _split_columns(builder.as_data_source("train"), scalars)
  # The train split's statistics of every measurable variable; the stages after this one
  # take those the config leaves None (scm.measured).
  return dict(dataset=config.data.name, path=str(builder.data_path), build_seconds=seconds,
              splits={s: len(builder.as_data_source(s)) for s in builder.info.splits},
              train=_split_stats(brightness, columns),
              normalisation=measured.statistics(config.scm, columns) if "scm" in config else {})
