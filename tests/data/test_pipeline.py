"""Grain pipelines: decoding, deterministic shuffling, padded evaluation batches."""

import numpy as np
import pytest

from segcft_jax.data import pipeline


def _source(n=10):
  return [{"image": np.full((4, 4, 1), i, np.uint8), "mask": np.full((4, 4), i % 3, np.uint8),
           "age": float(i)} for i in range(n)]


def _ids(batch):
  return batch["age"].astype(int).tolist()


def test_decode_normalises_images_to_unit_range():
  out = pipeline.Decode(("image", "mask", "age")).map(
      {"image": np.array([[[0]], [[255]]], np.uint8), "mask": np.zeros((2, 1), np.uint8),
       "age": 3.0})
  np.testing.assert_allclose(out["image"].ravel(), [-1.0, 1.0])
  assert out["mask"].dtype == np.int32 and out["age"].dtype == np.float32


def test_rescale_exposure_scales_the_unit_range_image_and_clips():
  x = np.array([-1.0, -0.5, 0.0, 0.6, 1.0], np.float32)  # x01 = 0, 0.25, 0.5, 0.8, 1
  np.testing.assert_allclose(pipeline.rescale_exposure(x, 1.0), x, atol=1e-7)
  np.testing.assert_allclose(pipeline.rescale_exposure(x, 1.5),
                             [-1.0, -0.25, 0.5, 1.0, 1.0], atol=1e-6)  # 0.375, 0.75, 1.2 -> 1
  np.testing.assert_allclose(pipeline.rescale_exposure(x, 0.5),
                             [-1.0, -0.75, -0.5, -0.2, 0.0], atol=1e-6)
  per_example = pipeline.rescale_exposure(np.zeros((2, 1, 1, 1), np.float32),
                                          np.array([0.5, 2.0]).reshape(2, 1, 1, 1))
  np.testing.assert_allclose(np.ravel(per_example), [-0.5, 1.0], atol=1e-6)


def test_train_dataset_is_deterministic_and_covers_each_epoch():
  keys = ("image", "age")
  take = lambda seed: [_ids(b) for b, _ in zip(
      pipeline.to_iter(pipeline.train_dataset(_source(), keys, 5, seed), num_threads=0),
      range(4))]
  a, b, c = take(0), take(0), take(1)
  assert a == b and a != c
  assert sorted(a[0] + a[1]) == list(range(10)) == sorted(a[2] + a[3])
  assert a[0] + a[1] != a[2] + a[3]  # reshuffled between epochs


def test_process_slices_concatenate_to_the_single_process_batch():
  base = pipeline.train_dataset(_source(12), ("age",), 4, seed=3)
  parts = [pipeline.ProcessSlice(
      pipeline.grain.MapDataset.source(_source(12)).seed(3).shuffle().repeat(None), p, 2, 2)
           for p in range(2)]
  for k in range(5):  # over an epoch boundary
    joined = [float(parts[p][k * 2 + i]["age"]) for p in range(2) for i in range(2)]
    assert joined == base[k]["age"].tolist()


def test_resuming_at_step_k_is_slicing():
  ds = pipeline.train_dataset(_source(), ("age",), 5, seed=0)
  it = pipeline.to_iter(ds[3:], num_threads=0)
  assert _ids(next(it)) == _ids(ds[3])


def test_train_dataset_rejects_a_split_smaller_than_a_batch():
  with pytest.raises(ValueError, match="fewer than one global batch"):
    pipeline.train_dataset(_source(3), ("age",), 4, 0)


def test_eval_batches_pad_and_mark_padding():
  batches = list(pipeline.eval_batches(_source(10), ("image", "age"), 4))
  assert len(batches) == 3
  assert [b["valid"].tolist() for b in batches][-1] == [1, 1, 0, 0]
  seen = [i for b in batches for i, v in zip(_ids(b), b["valid"]) if v]
  assert seen == list(range(10))
