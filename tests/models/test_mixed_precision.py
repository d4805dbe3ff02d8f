"""bfloat16 mixed precision of the HVAE (``HVAEConfig.compute_dtype``).

That it trains (the -ELBO falls, float32 gradients): test_hvae.py,
``test_jit_grad_finite_and_training_lowers_nelbo[bfloat16]``.
"""

import dataclasses
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segcft_jax.models.hvae import HVAE
from segcft_jax.models.hvae_arch import HVAEConfig, architecture_fields

F32 = HVAEConfig(input_res=8, input_channels=1, widths=(8, 16, 32),
                 enc_arch="8b1d2,4b0d4", dec_arch="1b1,4b1,8b1", context_dim=3, z_dim=4)
BF16 = dataclasses.replace(F32, compute_dtype="bfloat16")


def _batch(batch=8, seed=0):
  rng = np.random.default_rng(seed)
  # Smooth 8-bit ramps (each example its own slope).
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
  assert jax.tree_util.tree_structure(low) == jax.tree_util.tree_structure(params)
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


def test_compute_dtype_is_validated_and_not_fingerprinted():
  with pytest.raises(ValueError, match="compute_dtype"):
    dataclasses.replace(F32, compute_dtype="float16")
  model = ml_collections.ConfigDict(dict(preset="chest64", compute_dtype="bfloat16"))
  assert architecture_fields(model) == {"preset": "chest64"}
  assert HVAEConfig.from_config(dict(model.to_dict(), context_dim=6)).compute_dtype == "bfloat16"
