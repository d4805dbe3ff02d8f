"""Grain input pipelines: TFDS array_record source -> per-process part -> batches.

Training: one global order for every process count — shuffle the whole split with the config
seed and repeat forever (reshuffling each epoch); global batch k is elements
[k B, (k + 1) B) of that order and process p reads only its slice [p b, (p + 1) b) of it
(b = B / processes). Concatenating the processes' batches therefore gives exactly the batch a
single process would see, so results do not depend on how many hosts run the job, and the data
position after k steps is recomputable from k alone. Evaluation: shard, decode, pad the last
batch and mark padding with `valid = 0`; every process yields the same number of batches so
collective steps stay in lock-step. Images become float32 in [-1, 1] = (uint8 - 127.5) / 127.5.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np


def rescale_exposure(x: jax.Array, gain: jax.Array | float) -> jax.Array:
  """Images `x` in [-1, 1] re-exposed by `gain` (broadcastable): with x01 = (x + 1) / 2 the
  image in [0, 1], x01' = clip(gain x01, 0, 1). Used by the segmentor's exposure augmentation
  and by the evaluation's exposure sensitivity of the predictors."""
  return jnp.clip((x + 1.0) * gain, 0.0, 2.0) - 1.0


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


class ProcessSlice(grain.MapDataset):
  """Process `index`'s part of every global batch: local element j is global element
  (j // b) * b * count + index * b + j % b, with b the per-process batch size."""

  def __init__(self, parent: grain.MapDataset, index: int, count: int, per_process: int):
    super().__init__(parent)
    self._index, self._count, self._b = index, count, per_process

  def __len__(self) -> int:
    return len(self._parent) // self._count

  def __getitem__(self, j):
    if isinstance(j, slice):
      return self.slice(j)
    q, r = divmod(j, self._b)
    return self._parent[(q * self._count + self._index) * self._b + r]


def in_memory(source, keys: Sequence[str]) -> list[dict[str, np.ndarray]]:
  """The `keys` fields of every record of `source`, read once into a list.

  For stages that train on a few scalars per record (the PGM): each step then indexes memory
  instead of deserialising whole records (images included) from array_record. Same records,
  same order, so batches are identical to those of `source`.
  """
  return [{k: np.asarray(record[k]) for k in keys}
          for record in (source[i] for i in range(len(source)))]


def _process_shard(source) -> grain.MapDataset:
  ds = grain.MapDataset.source(source)
  return ds[jax.process_index()::jax.process_count()]


def train_dataset(source, keys: Sequence[str], batch_size: int, seed: int) -> grain.MapDataset:
  """Infinite, shuffled batches of this process (`batch_size` = per-process batch).

  Returns a MapDataset: batch k is `ds[k]`, so `ds[k:]` resumes after k steps; turn it into a
  checkpointable iterator with `to_iter`.
  """
  count = jax.process_count()
  if len(source) < batch_size * count:
    raise ValueError(f"The training split has {len(source)} examples, fewer than one global "
                     f"batch ({batch_size * count}); lower the batch size or build more data.")
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat(None)
  if count > 1:
    ds = ProcessSlice(ds, jax.process_index(), count, batch_size)
  return ds.map(Decode(keys)).batch(batch_size, drop_remainder=True)


def to_iter(ds: grain.MapDataset, num_threads: int = 2) -> grain.DatasetIterator:
  """A prefetching iterator over `ds` whose state Orbax/Grain can checkpoint."""
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * max(num_threads, 1))
  return iter(ds.to_iter_dataset(read))


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
