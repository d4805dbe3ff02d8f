"""Grain input pipelines: TFDS array_record source -> per-process shard -> batches.

Training: shard by JAX process, shuffle with the config seed, repeat forever (reshuffling each
epoch), decode, batch with drop_remainder. Evaluation: shard, decode, pad the last batch and
mark padding with `valid = 0`; every process yields the same number of batches so collective
steps stay in lock-step. Images become float32 in [-1, 1] = (uint8 - 127.5) / 127.5.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import grain
import jax
import numpy as np


class Decode(grain.transforms.Map):
  """Record -> model inputs: image to [-1, 1] float32, masks to int32, scalars to float32."""

  def __init__(self, keys: Sequence[str]):
    self.keys = tuple(keys)

  def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k in self.keys:
      v = np.asarray(record[k])
      if k == "image":
        out[k] = (v.astype(np.float32) - 127.5) / 127.5
      elif k in ("mask", "regions"):
        out[k] = v.astype(np.int32)
      else:
        out[k] = v.astype(np.float32)
    return out


def _process_shard(source) -> grain.MapDataset:
  ds = grain.MapDataset.source(source)
  return ds[jax.process_index()::jax.process_count()]


def train_dataset(source, keys: Sequence[str], batch_size: int, seed: int,
                  num_threads: int = 2) -> grain.IterDataset:
  """Infinite, shuffled, batched training data of this process (checkpointable iterator)."""
  ds = _process_shard(source)
  if len(ds) < batch_size:
    raise ValueError(f"The training split has {len(ds)} examples for this process, fewer than "
                     f"one batch ({batch_size}); lower the batch size or build more data.")
  ds = ds.seed(seed).shuffle().repeat(None).map(Decode(keys)).batch(batch_size,
                                                                     drop_remainder=True)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                              prefetch_buffer_size=2 * max(num_threads, 1)))


def eval_batches(source, keys: Sequence[str], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """Padded batches covering this process's shard once, with a `valid` field."""
  per_process = math.ceil(len(source) / jax.process_count())
  num_batches = math.ceil(per_process / batch_size)
  ds = _process_shard(source).map(Decode(keys))
  n = len(ds)
  for b in range(num_batches):
    items = [ds[i] for i in range(b * batch_size, min((b + 1) * batch_size, n))]
    valid = np.zeros((batch_size,), np.float32)
    valid[:len(items)] = 1.0
    if not items:  # This process ran out; keep step count equal across processes.
      items = [ds[0]]
    pad = [items[-1]] * (batch_size - len(items))
    batch = {k: np.stack([it[k] for it in items + pad]) for k in items[0]}
    batch["valid"] = valid
    yield batch
