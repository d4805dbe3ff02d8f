"""Tests for segcft_jax.models.unet."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segcft_jax.models.segmentation_loss import (cross_entropy, hard_dice,
                                                 soft_dice_loss)
from segcft_jax.models.unet import UNet, num_groups_for


def _init(model, shape, seed=0):
  # The "rbg" PRNG compiles several times faster than threefry on CPU, which
  # keeps these tests quick; the initialisers' distributions are unchanged.
  x = jnp.zeros(shape, jnp.float32)
  key = jax.random.key(seed, impl="rbg")
  return jax.jit(model.init)(key, x)["params"]


def _count(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(tree))


def test_num_groups_for():
  assert num_groups_for(16, 8) == 8
  assert num_groups_for(4, 8) == 4
  assert num_groups_for(12, 8) == 6
  assert num_groups_for(10, 8) == 5
  assert num_groups_for(7, 8) == 7
  assert num_groups_for(7, 4) == 1


# One tiny configuration shared by most tests: initialising is the slow part
# of these tests on CPU, and parameters do not depend on H, W or the batch.
_TINY = dict(num_classes=2, widths=(8, 16), blocks_per_level=1, norm_groups=4)


@pytest.fixture(scope="module")
def tiny_params():
  return _init(UNet(**_TINY), (1, 16, 16, 1))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_shape_and_dtype(tiny_params, dtype):
  model = UNet(**_TINY, dtype=dtype)
  assert all(p.dtype == jnp.float32
             for p in jax.tree_util.tree_leaves(tiny_params))
  x = np.random.default_rng(1).uniform(-1, 1, (3, 16, 8, 1)).astype(np.float32)
  y = jax.jit(model.apply)({"params": tiny_params}, x)
  assert y.shape == (3, 16, 8, 2)
  assert y.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(y)))


def test_output_shape_three_levels_three_classes():
  model = UNet(num_classes=3, widths=(4, 8, 8), blocks_per_level=1,
               norm_groups=4)
  x = jnp.zeros((2, 8, 12, 1))
  y = jax.eval_shape(lambda k, x: model.init_with_output(k, x)[0],
                     jax.random.PRNGKey(0), x)
  assert y.shape == (2, 8, 12, 3)
  assert y.dtype == jnp.float32


def test_parameter_count_matches_hand_count():
  c_in, k, widths, n = 2, 3, (4, 8, 12), 2
  model = UNet(num_classes=k, widths=widths, blocks_per_level=n, norm_groups=8)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8, 8, c_in)))["params"]

  conv = lambda ks, a, b: ks * ks * a * b + b   # kernel + bias
  gn = lambda c: 2 * c                          # scale + bias

  def res(a, b):
    return (conv(3, a, b) + gn(b) + conv(3, b, b) + gn(b)
            + (conv(1, a, b) if a != b else 0))

  total = conv(3, c_in, widths[0])                       # stem
  prev = widths[0]
  for w in widths:                                       # encoder
    for _ in range(n):
      total += res(prev, w)
      prev = w
  for level in range(len(widths) - 2, -1, -1):           # decoder
    w = widths[level]
    total += conv(3, prev, w)                            # up conv
    prev = 2 * w                                         # after concat
    for _ in range(n):
      total += res(prev, w)
      prev = w
  total += conv(1, widths[0], k)                         # head
  assert _count(params) == total

  # and spot-check a few shapes of the layers that enter the count
  assert params["stem"]["kernel"].shape == (3, 3, c_in, 4)
  assert params["dec_1_0"]["proj"]["kernel"].shape == (1, 1, 16, 8)
  assert params["dec_1_0"]["norm_0"]["scale"].shape == (8,)
  assert "proj" not in params["enc_2_1"]
  assert params["head"]["kernel"].shape == (1, 1, 4, k)


def test_indivisible_input_raises():
  model = UNet(num_classes=2, widths=(4, 8, 8), blocks_per_level=1)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8, 8, 1)))["params"]
  with pytest.raises(ValueError, match=r"\(18, 16\).*divisible by 4"):
    model.apply({"params": params}, jnp.zeros((1, 18, 16, 1)))
  with pytest.raises(ValueError, match="divisible by 4"):
    model.apply({"params": params}, jnp.zeros((1, 16, 10, 1)))
  with pytest.raises(ValueError):
    model.apply({"params": params}, jnp.zeros((16, 16, 1)))


def test_per_example_independence(tiny_params):
  model, params = UNet(**_TINY), tiny_params
  x0, x1, x1b = np.random.default_rng(2).uniform(
      -1, 1, (3, 1, 8, 8, 1)).astype(np.float32)
  fwd = jax.jit(lambda x: model.apply({"params": params}, x))
  a = np.asarray(fwd(np.concatenate([x0, x1])))
  b = np.asarray(fwd(np.concatenate([x0, x1b])))
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
  assert not np.allclose(a[1], b[1])  # example 1 itself did change


def test_jit_grad_finite(tiny_params):
  model, params = UNet(**_TINY), tiny_params
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 2, (2, 8, 8))

  @jax.jit
  def loss_and_grad(p):
    def f(p):
      return jnp.mean(cross_entropy(model.apply({"params": p}, x), labels))
    return jax.value_and_grad(f)(p)

  loss, grads = loss_and_grad(params)
  assert np.isfinite(float(loss))
  leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(np.abs(g).sum()) for g in leaves) > 0


def _disc_batch(n=4, size=16, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  masks, images = [], []
  for _ in range(n):
    cy, cx = rng.uniform(5, size - 5, size=2)
    r = rng.uniform(2.5, 4.5)
    m = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2).astype(np.int32)
    img = np.where(m == 1, 0.5, -0.5) + 0.6 * rng.normal(size=m.shape)
    masks.append(m)
    images.append(np.clip(img, -1, 1)[..., None])
  return (jnp.asarray(np.stack(images), jnp.float32),
          jnp.asarray(np.stack(masks)))


def test_tiny_unet_overfits_discs(tiny_params):
  x, labels = _disc_batch()
  model, params = UNet(**_TINY), tiny_params
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  def loss_fn(p):
    logits = model.apply({"params": p}, x)
    return jnp.mean(cross_entropy(logits, labels)
                    + soft_dice_loss(logits, labels, 2))

  @jax.jit
  def train(params, opt_state):
    def step(carry, _):
      p, s = carry
      loss, g = jax.value_and_grad(loss_fn)(p)
      updates, s = tx.update(g, s, p)
      return (optax.apply_updates(p, updates), s), loss
    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), None, length=200)
    return params, losses

  params, losses = train(params, opt_state)
  assert float(losses[-1]) < 0.5 * float(losses[0])
  pred = np.argmax(np.asarray(jax.jit(model.apply)({"params": params}, x)), -1)
  dice = np.asarray(hard_dice(pred, labels, 2))
  assert dice.shape == (4, 2)
  assert np.all(dice[:, 1] > 0.9), dice
