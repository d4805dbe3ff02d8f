"""bfloat16 mixed precision of the HVAE (``HVAEConfig.compute_dtype``)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from segcft_jax.models.hvae import HVAE
from segcft_jax.models.hvae_arch import HVAEConfig, architecture_fields

F32 = HVAEConfig(input_res=8, input_channels=1, widths=(8, 16, 32),
                 enc_arch="8b1d2,4b0d4", dec_arch="1b1,4b1,8b1", context_dim=3, z_dim=4)
BF16 = dataclasses.replace(F32, compute_dtype="bfloat16")


def _batch(batch=8, seed=0):
  rng = np.random.default_rng(seed)
  # Smooth images: a learnable signal, so the -ELBO has somewhere to go.
  ramp = np.linspace(-0.8, 0.8, 8)[None, :, None, None] * rng.uniform(0.5, 1.0, (batch, 1, 1, 1))
  x = np.round((np.broadcast_to(ramp, (batch, 8, 8, 1)) + 1) * 127.5) / 127.5 - 1
  pa = rng.uniform(-1.0, 1.0, (batch, 3))
  return jnp.asarray(x, jnp.float32), jnp.asarray(pa, jnp.float32)


@pytest.fixture(scope="module")
def params():
  x, pa = _batch()
  key = jax.random.key(0)
  return jax.jit(HVAE(F32).init)({"params": key, "sample": key}, x, pa)["params"]


def test_parameters_do_not_depend_on_the_compute_dtype(params):
  x, pa = _batch()
  key = jax.random.key(0)
  low = jax.jit(HVAE(BF16).init)({"params": key, "sample": key}, x, pa)["params"]
  leaves = jax.tree_util.tree_leaves(low)
  assert all(p.dtype == jnp.float32 for p in leaves)
  for a, b in zip(jax.tree_util.tree_leaves(params), leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bfloat16_convolutions_with_float32_objective(params):
  x, pa = _batch()
  key = jax.random.key(1)

  def run(cfg):
    return HVAE(cfg).apply({"params": params}, x, pa, rngs={"sample": key}, return_latents=True)

  jaxpr = str(jax.make_jaxpr(lambda: run(BF16))())
  assert "conv_general_dilated" in jaxpr and "bf16[" in jaxpr
  assert "bf16[" not in str(jax.make_jaxpr(lambda: run(F32))())
  hi, lo = jax.jit(lambda: run(F32))(), jax.jit(lambda: run(BF16))()
  for k in ("nelbo", "nll", "kl"):
    assert lo[k].dtype == jnp.float32
  assert all(z.dtype == jnp.float32 for z in lo["latents"])
  # bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 per op): the objective moves by
  # well under a percent, but it does move.
  rel = np.abs(np.asarray(lo["nelbo"]) / np.asarray(hi["nelbo"]) - 1)
  assert 0 < rel.max() < 0.02, rel


def test_bfloat16_model_trains(params):
  x, pa = _batch()
  model, opt = HVAE(BF16), optax.adam(1e-2)

  def loss(p, key):
    return model.apply({"params": p}, x, pa, rngs={"sample": key})["nelbo"].mean()

  @jax.jit
  def step(p, state, key):
    value, grads = jax.value_and_grad(loss)(p, key)
    updates, state = opt.update(grads, state, p)
    return optax.apply_updates(p, updates), state, value, grads

  p, state = params, opt.init(params)
  p, state, first, grads = step(p, state, jax.random.key(0))
  assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))
  values = []
  for i in range(1, 100):
    p, state, value, _ = step(p, state, jax.random.key(i))
    values.append(float(value))
  final = float(np.mean(values[-5:]))  # the -ELBO is stochastic: average the last steps
  assert math.isfinite(float(first)) and final < 0.9 * float(first), (float(first), final)


def test_compute_dtype_is_validated_and_not_fingerprinted():
  with pytest.raises(ValueError, match="compute_dtype"):
    dataclasses.replace(F32, compute_dtype="float16")
  model = ml_collections.ConfigDict(dict(preset="chest64", compute_dtype="bfloat16"))
  assert architecture_fields(model) == {"preset": "chest64"}
  assert HVAEConfig.from_config(dict(model.to_dict(), context_dim=6)).compute_dtype == "bfloat16"
