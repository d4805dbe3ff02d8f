"""Tests for segcft_jax.models.segmentation_loss."""

import contextlib

import jax
import jax.experimental
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax.models.segmentation_loss import (cross_entropy, hard_dice,
                                                 soft_dice_loss)


def _x64():
  """Context manager enabling float64, or None if unavailable."""
  exp = getattr(jax.experimental, "enable_x64", None)
  if exp is not None:
    return exp()
  state = getattr(jax, "enable_x64", None)
  if state is not None:
    return state(True)
  return None


# ----------------------------------------------------------------- cross-entropy


def test_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 5, 6)).astype(np.float32) * 3.0
  labels = rng.integers(0, 6, size=(3, 4, 5))
  got = np.asarray(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))

  z = logits.astype(np.float64)
  m = z.max(-1, keepdims=True)
  logp = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  want = nll.mean(axis=(1, 2))
  assert got.shape == (3,)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cross_entropy_confident_correct_is_zero():
  labels = np.random.default_rng(1).integers(0, 3, size=(2, 4, 4))
  logits = 100.0 * np.eye(3, dtype=np.float32)[labels]
  got = cross_entropy(logits, labels)
  np.testing.assert_allclose(np.asarray(got), 0.0, atol=1e-6)
  # and large for confident wrong logits
  wrong = 100.0 * np.eye(3, dtype=np.float32)[(labels + 1) % 3]
  assert np.all(np.asarray(cross_entropy(wrong, labels)) > 99.0)


def test_cross_entropy_per_example():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=(2, 3, 3))
  both = cross_entropy(logits, labels)
  first = cross_entropy(logits[:1], labels[:1])
  np.testing.assert_allclose(np.asarray(both[:1]), np.asarray(first),
                             rtol=1e-6)


def test_cross_entropy_shape_mismatch():
  with pytest.raises(ValueError):
    cross_entropy(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 5), np.int32))


# ----------------------------------------------------------------- soft Dice


@pytest.mark.parametrize("include_background", [False, True])
def test_soft_dice_perfect_is_zero(include_background):
  labels = np.random.default_rng(3).integers(0, 3, size=(2, 6, 6))
  labels[:, 0, :3] = np.arange(3)  # every class present in every example
  logits = 100.0 * np.eye(3, dtype=np.float32)[labels]
  loss = soft_dice_loss(logits, labels, 3, include_background=include_background,
                        eps=1e-8)
  assert loss.shape == (2,)
  np.testing.assert_allclose(np.asarray(loss), 0.0, atol=1e-6)


def test_soft_dice_analytic_uniform_probabilities():
  # 4 pixels, labels [1, 1, 1, 0]; logits 0 -> p = 1/2 everywhere.
  # class 1: 2*(3 * 1/2) / (2 + 3) = 3/5;  class 0: 2*(1/2) / (2 + 1) = 1/3.
  labels = np.asarray([[[1, 1], [1, 0]]])
  logits = np.zeros((1, 2, 2, 2), np.float32)
  fg = soft_dice_loss(logits, labels, 2, include_background=False, eps=0.0)
  allc = soft_dice_loss(logits, labels, 2, include_background=True, eps=0.0)
  np.testing.assert_allclose(np.asarray(fg), [1.0 - 3.0 / 5.0], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(allc),
                             [1.0 - (3.0 / 5.0 + 1.0 / 3.0) / 2.0], rtol=1e-6)


def test_soft_dice_analytic_half_overlap():
  # Hard prediction covering half of the true foreground plus as many false
  # positives: |P| = |Y| = 4, |P ∩ Y| = 2 -> Dice_fg = 2*2/8 = 1/2.
  # Background (16 pixels): |P0| = |Y0| = 12, |P0 ∩ Y0| = 10 -> 20/24 = 5/6.
  truth = np.zeros((1, 4, 4), np.int32)
  truth[0, 0, :4] = 1
  pred = np.zeros((1, 4, 4), np.int32)
  pred[0, 0, :2] = 1
  pred[0, 1, :2] = 1
  logits = 100.0 * np.eye(2, dtype=np.float32)[pred]
  eps = 1e-8
  fg = soft_dice_loss(logits, jnp.asarray(truth), 2, eps=eps)
  allc = soft_dice_loss(logits, jnp.asarray(truth), 2, include_background=True,
                        eps=eps)
  np.testing.assert_allclose(np.asarray(fg), [0.5], atol=1e-6)
  np.testing.assert_allclose(np.asarray(allc), [1 - (0.5 + 5 / 6) / 2],
                             atol=1e-6)


def test_soft_dice_include_background_selects_classes():
  rng = np.random.default_rng(4)
  k = 3
  logits = rng.normal(size=(2, 5, 5, k))
  labels = rng.integers(0, k, size=(2, 5, 5))
  eps = 1.0
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  y = np.eye(k)[labels]
  d = (2 * (p * y).sum((1, 2)) + eps) / (p.sum((1, 2)) + y.sum((1, 2)) + eps)
  fg = soft_dice_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(labels), k)
  allc = soft_dice_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(labels),
                        k, include_background=True)
  np.testing.assert_allclose(np.asarray(fg), 1 - d[:, 1:].mean(-1), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(allc), 1 - d.mean(-1), rtol=1e-5)
  assert not np.allclose(np.asarray(fg), np.asarray(allc))


def test_soft_dice_errors():
  with pytest.raises(ValueError):
    soft_dice_loss(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2), np.int32), 4)
  with pytest.raises(ValueError):  # no foreground classes to average
    soft_dice_loss(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2), np.int32), 1)


def test_soft_dice_gradient_matches_finite_differences():
  ctx = _x64()
  rng = np.random.default_rng(5)
  logits_np = rng.normal(size=(2, 3, 3, 3))
  labels_np = rng.integers(0, 3, size=(2, 3, 3))
  idx = (1, 2, 0, 1)
  with (ctx if ctx is not None else contextlib.nullcontext()):
    dtype = jnp.float64 if ctx is not None else jnp.float32
    h, rtol = (1e-6, 1e-6) if ctx is not None else (1e-2, 2e-2)
    logits = jnp.asarray(logits_np, dtype)
    labels = jnp.asarray(labels_np)
    f = lambda z: jnp.sum(soft_dice_loss(z, labels, 3, eps=1.0))
    g = jax.jit(jax.grad(f))(logits)
    assert g.dtype == dtype
    assert np.all(np.isfinite(np.asarray(g)))
    plus = f(logits.at[idx].add(h))
    minus = f(logits.at[idx].add(-h))
    fd = float((plus - minus) / (2 * h))
    assert abs(fd) > 1e-4  # the coordinate actually matters
    np.testing.assert_allclose(float(g[idx]), fd, rtol=rtol)


# ----------------------------------------------------------------- hard Dice


def test_hard_dice_two_squares():
  # 8x8 image; truth square rows/cols 0:4 (16 px), prediction rows/cols 2:6
  # (16 px), overlap 2x2 = 4 px.  Foreground Dice = 2*4/32 = 1/4.
  # Background: 48 px each, overlap 64 - |union| = 64 - 28 = 36 -> 72/96 = 3/4.
  # Class 2 absent from both -> 1.
  truth = np.zeros((2, 8, 8), np.int32)
  pred = np.zeros((2, 8, 8), np.int32)
  truth[0, 0:4, 0:4] = 1
  pred[0, 2:6, 2:6] = 1
  # example 1: class 1 in the truth only, class 2 in the prediction only
  truth[1, 0:2, 0:2] = 1
  pred[1, 6:8, 6:8] = 2
  d = np.asarray(hard_dice(jnp.asarray(pred), jnp.asarray(truth), 3))
  assert d.shape == (2, 3)
  assert d.dtype == np.float32
  np.testing.assert_allclose(d[0], [0.75, 0.25, 1.0], rtol=1e-6)
  # example 1 background: 60 px each, overlap 56 -> 112/120
  np.testing.assert_allclose(d[1], [112 / 120, 0.0, 0.0], rtol=1e-6)


def test_hard_dice_absent_class_is_one_and_perfect_is_one():
  labels = np.zeros((1, 4, 4), np.int32)
  labels[0, :2] = 1
  d = np.asarray(hard_dice(labels, labels, 4))
  np.testing.assert_allclose(d, np.ones((1, 4)))
