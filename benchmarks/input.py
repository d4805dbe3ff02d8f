"""Grain input-pipeline throughput (examples/s, one process) for a dataset config.

  python benchmarks/input.py --config=configs/synth_chest.py [--workdir=runs/synth_chest]
      [--batches=200] [--threads=2] [--set=data.manual_dir=DIR] [--out=FILE]

Builds the dataset if absent (in the workdir's data directory), then times the training
pipeline exactly as the stages use it (TFDS array_record source -> shuffle -> decode ->
batch -> prefetching iterator), after a warm-up, and appends a JSON line to
benchmarks/results/<device>.jsonl. Input must never limit training: compare with the
img/s of the stages (`metrics.jsonl`).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import results_io  # pylint: disable=g-import-not-at-top,wrong-import-position
from segcft_jax import config_files  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = flags.DEFINE_string("config", "configs/synth_chest.py", "Config file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding data/ (default: the CLI's).")
_BATCHES = flags.DEFINE_integer("batches", 200, "Timed batches.")
_THREADS = flags.DEFINE_integer("threads", 2, "Grain read threads.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_OUT = flags.DEFINE_string("out", None, "Results file (default benchmarks/results/<device>.jsonl).")
_SET = flags.DEFINE_multi_string("set", [], "Config override a.b=value (repeatable), e.g. "
                                 "--set=data.manual_dir=/data/padchest.")


def main(argv):
  del argv
  from segcft_jax.data import datasets, pipeline  # pylint: disable=g-import-not-at-top
  from segcft_jax.stages import data as data_stage  # pylint: disable=g-import-not-at-top
  config = config_files.load(_CONFIG.value)
  with config.unlocked():
    for item in _SET.value:
      key, _, value = item.partition("=")
      node, *path = key.split(".")[::-1]
      parent = config
      for k in reversed(path):
        parent = parent[k]
      parent[node] = type(parent[node])(value)  # Unknown keys fail: the config is locked.
  workdir = _WORKDIR.value or config_files.default_workdir(config)
  builder = datasets.builder(config.data, workdir)
  if not builder.is_prepared():
    data_stage.run(config, workdir)
    builder = datasets.prepared_builder(config.data, workdir)  # Re-read the built splits.
  keys = datasets.spec(config.data).model_keys
  train = pipeline.train_dataset(datasets.open_split(builder, "train"), keys, _BATCH.value,
                                 seed=0)
  it = pipeline.to_iter(train, num_threads=_THREADS.value)
  for _ in range(10):  # Warm-up: thread start, file handles, first reads.
    next(it)
  t0 = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(it)
  seconds = time.perf_counter() - t0
  rate = _BATCHES.value * _BATCH.value / seconds
  record = dict(benchmark="input", config=_CONFIG.value, dataset=config.data.name,
                image_size=config.data.get("image_size"), batch_size=_BATCH.value,
                threads=_THREADS.value, batches=_BATCHES.value, examples_per_s=rate)
  path = results_io.append(record, _OUT.value)
  print(f"{config.data.name}: {rate:,.0f} examples/s ({_BATCHES.value} batches of "
        f"{_BATCH.value}, {_THREADS.value} threads) -> {path}")


if __name__ == "__main__":
  app.run(main)
