"""Tests for segcft_jax.models.hvae, hvae_arch and hvae_blocks."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from segcft_jax.models import hvae_arch
from segcft_jax.models.hvae import HVAE, counterfactual_image
from segcft_jax.models.hvae_arch import HVAEConfig

# Res 8, three encoder blocks (8 -> 4 -> 1), three stochastic decoder blocks at
# resolutions 1, 4 and 8 (widths 32, 16, 8).
TINY = HVAEConfig(input_res=8, input_channels=1, widths=(8, 16, 32),
                  enc_arch="8b1d2,4b0d4", dec_arch="1b1,4b1,8b1", context_dim=3,
                  z_dim=4)


def _count(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(tree))


def _rngs(seed):
  key = jax.random.key(seed)
  return {"params": key, "sample": jax.random.fold_in(key, 1),
          "cond_dropout": jax.random.fold_in(key, 2)}


def _batch(cfg, batch, seed=0):
  rng = np.random.default_rng(seed)
  shape = (batch, cfg.input_res, cfg.input_res, cfg.input_channels)
  x = (rng.integers(0, 256, shape) - 127.5) / 127.5
  pa = rng.uniform(-1.0, 1.0, (batch, cfg.context_dim))
  return jnp.asarray(x, jnp.float32), jnp.asarray(pa, jnp.float32)


def _abstract_count(cfg):
  x = jnp.zeros((1, cfg.input_res, cfg.input_res, 1))
  pa = jnp.zeros((1, cfg.context_dim))
  return _count(jax.eval_shape(lambda: HVAE(cfg).init(_rngs(0), x, pa)))


# Compiling dominates on CPU: the tiny model is initialised once under jit (one program
# instead of one per parameter shape), and each test jits one function for all its calls.
@pytest.fixture(scope="module")
def tiny():
  model = HVAE(TINY)
  x, pa = _batch(TINY, 4)
  return model, jax.jit(model.init)(_rngs(0), x, pa), x, pa


# The morphomnist preset runs eagerly: its ~750 parameters make a jitted init compile for
# longer than the eager one (compiled once per distinct shape), and eager ops are reused by
# every later eager call with the same shapes.
@pytest.fixture(scope="module")
def morpho():
  cfg = hvae_arch.morphomnist()
  model = HVAE(cfg)
  x, pa = _batch(cfg, 8, seed=7)
  return model, model.init(_rngs(7), x, pa), x, pa


@pytest.mark.parametrize("cfg,expected", [
    (hvae_arch.morphomnist(), 2_047_074),
    (dataclasses.replace(hvae_arch.morphomnist(), cond_prior=False), 2_041_122),
    (hvae_arch.chest64(6), 7_245_522),
    (hvae_arch.chest192(6), 7_976_658),
], ids=["morphomnist", "morphomnist_exogenous", "chest64", "mimic192"])
def test_parameter_count_parity(cfg, expected):
  assert _abstract_count(cfg) == expected


def test_init_nelbo_on_uniform_pixels_matches_reference(morpho):
  # ERRATA: the freshly initialised reference morphomnist HVAE gives 5.92 nats/dim here.
  model, params, x, pa = morpho
  out = model.apply(params, x, pa, rngs=_rngs(8))
  assert out["nelbo"].shape == (8,)
  np.testing.assert_allclose(np.asarray(out["nelbo"]),
                             np.asarray(out["nll"] + out["kl"]), rtol=1e-6)
  assert abs(float(out["nelbo"].mean()) - 5.92) < 0.15
  # At init the prior is N(0, I) with zero features (prior last conv x 0).
  prior_last = params["params"]["decoder"]["block_0"]["prior"]["conv_3"]["kernel"]
  assert float(jnp.abs(prior_last).max()) == 0.0


def test_init_scalings_and_zero_biases(tiny):
  _, variables, _, _ = tiny
  p = variables["params"]
  biases = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(p)
            if "bias" in jax.tree_util.keystr(path)]
  assert all(float(jnp.abs(b).max()) == 0.0 for b in biases)  # also the bias maps
  # Encoder: 3 blocks -> last conv bound sqrt(1/3)/sqrt(fan_in); decoder: 3 blocks.
  enc_last = p["encoder"]["block_0"]["conv_3"]["kernel"]  # [1, 1, 2, 8]
  assert float(jnp.abs(enc_last).max()) <= math.sqrt(1 / 3) / math.sqrt(2)
  z_proj = p["decoder"]["block_2"]["z_proj"]["kernel"]  # [1, 1, 4 + 3, 8]
  assert float(jnp.abs(z_proj).max()) <= math.sqrt(1 / 3) / math.sqrt(7)
  assert float(jnp.abs(z_proj).max()) > 0.5 * math.sqrt(1 / 3) / math.sqrt(7)
  assert p["decoder"]["bias_8"].shape == (1, 8, 8, 8)


@pytest.mark.parametrize("enc,dec,widths,match", [
    ("8b1d2,4x1d4,1b1", "1b1,4b1,8b1", (8, 16, 32), "'4x1d4'"),
    ("8b1d2,4b1d4,1b1", "1b1,4b1d2,8b1", (8, 16, 32), "'4b1d2'"),
    ("8b1d2,4b1d4,1b1", "1b1,4b1,8b1", (8, 16), "'4b1d4'"),
    ("8b1d2,4b1d4,1b1", "2b1,4b1,8b1", (8, 16, 32), "resolution 1"),
    ("8b1d2,4b1d4,1b1", "1b1,3b1,8b1", (8, 16, 32), "'8b1'"),
])
def test_architecture_string_errors(enc, dec, widths, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(TINY, enc_arch=enc, dec_arch=dec, widths=widths)


def test_parsed_specs_and_from_config():
  enc = hvae_arch.parse_encoder(hvae_arch.morphomnist())
  assert len(enc) == 20 and enc[-1].res == 1 and enc[3].down_rate == 2
  dec = hvae_arch.parse_decoder(hvae_arch.chest192(6))
  assert len(dec) == 40 and sum(s.stochastic for s in dec) == 38
  cfg = HVAEConfig.from_config(ml_collections.ConfigDict(dict(preset="chest64", context_dim=5)))
  assert cfg == hvae_arch.chest64(5)
  assert HVAEConfig.from_config(dataclasses.asdict(TINY)) == TINY
  with pytest.raises(ValueError, match="z_dimm"):
    HVAEConfig.from_config(dict(preset="morphomnist", z_dimm=8))


def test_deterministic_for_fixed_rng(tiny):
  model, variables, x, pa = tiny
  apply = jax.jit(lambda key: model.apply(variables, x, pa, rngs={"sample": key}))
  a, b, c = apply(jax.random.key(3)), apply(jax.random.key(3)), apply(jax.random.key(4))
  for k in ("nelbo", "nll", "kl"):
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  assert not np.allclose(np.asarray(a["kl"]), np.asarray(c["kl"]))


def test_null_counterfactual_and_parent_effect(tiny):
  model, variables, x, pa = tiny
  pa_cf = pa.at[:, 0].set(-pa[:, 0])

  @jax.jit
  def run(key):
    zs = model.apply(variables, x, pa, method=HVAE.abduct, rngs={"sample": key})
    decode = lambda z, p: model.apply(variables, z, p, method=HVAE.decode)
    mu, sigma = decode(zs, pa)
    mu2, sigma2 = decode(zs, pa)  # the same latents and parents again
    # Doubled batch: factual and counterfactual parents in one pass.
    both, _ = decode([jnp.concatenate([z, z]) for z in zs], jnp.concatenate([pa, pa_cf]))
    mu_cf, _ = decode(zs, pa_cf)
    return zs, counterfactual_image(x, mu, sigma, mu2, sigma2), mu, mu_cf, both

  zs, x_cf, mu, mu_cf, both = run(jax.random.key(1))
  assert [z.shape for z in zs] == [(4, 1, 1, 4), (4, 4, 4, 4), (4, 8, 8, 4)]
  assert float(jnp.abs(x_cf - x).max()) <= 1e-6
  assert float(mu.min()) >= -1.0 and float(mu.max()) <= 1.0
  np.testing.assert_allclose(np.asarray(both), np.concatenate([mu, mu_cf]), atol=1e-6)
  assert float(jnp.abs(mu_cf - mu).max()) > 1e-4  # parents act through z_proj


def test_abduction_pass_output_is_the_factual_decode(tiny):
  """The posterior pass's likelihood == decode(its samples, pa): what lets a counterfactual
  decode only pa* (also at a posterior temperature, and from the ELBO pass)."""
  model, variables, x, pa = tiny

  @jax.jit
  def run(key):
    zs, (mu_a, sigma_a) = model.apply(variables, x, pa, 0.6, with_factual=True,
                                      method=HVAE.abduct, rngs={"sample": key})
    mu, sigma = model.apply(variables, zs, pa, method=HVAE.decode)
    out = model.apply(variables, x, pa, return_latents=True, rngs={"sample": key})
    mu_e, sigma_e = model.apply(variables, out["latents"], pa, method=HVAE.decode)
    return (mu_a, sigma_a, mu, sigma), (*out["factual"], mu_e, sigma_e)

  for a_mu, a_sigma, b_mu, b_sigma in run(jax.random.key(5)):
    np.testing.assert_allclose(np.asarray(a_mu), np.asarray(b_mu), atol=1e-6)
    np.testing.assert_allclose(np.asarray(a_sigma), np.asarray(b_sigma), rtol=1e-6)
    assert float(jnp.abs(a_mu).max()) > 0.0 and float(a_sigma.min()) > 0.0


def test_no_factual_from_an_elbo_pass_with_prior_dropout():
  cfg = dataclasses.replace(TINY, cond_prior=True, prior_dropout_channels=(1, 3))
  model = HVAE(cfg)
  x, pa = _batch(cfg, 2)
  variables = model.init(_rngs(0), x, pa)
  train = model.apply(variables, x, pa, return_latents=True, rngs=_rngs(1))
  evals = model.apply(variables, x, pa, training=False, return_latents=True, rngs=_rngs(1))
  assert "factual" not in train and "latents" in train  # The prior may have seen zeros.
  mu, sigma = model.apply(variables, evals["latents"], pa, method=HVAE.decode)
  np.testing.assert_allclose(np.asarray(evals["factual"][0]), np.asarray(mu), atol=1e-6)
  np.testing.assert_allclose(np.asarray(evals["factual"][1]), np.asarray(sigma), rtol=1e-6)


def test_decode_with_missing_latents_and_sample(tiny):
  model, variables, _, pa = tiny

  @jax.jit
  def run(key, t):
    rngs = {"sample": key}
    mu = model.apply(variables, pa, t, method=HVAE.sample, rngs=rngs)
    mu_none, _ = model.apply(variables, [None, None, None], pa, t, method=HVAE.decode,
                             rngs=rngs)
    return mu, mu_none

  mu, mu_none = run(jax.random.key(2), 1.0)
  assert mu.shape == (4, 8, 8, 1) and float(jnp.abs(mu).max()) <= 1.0
  # All-None latents = prior sampling with the same draws.
  np.testing.assert_allclose(np.asarray(mu_none), np.asarray(mu), atol=1e-6)
  # Temperature ~0 gives the (deterministic) prior-mean chain: rng-independent.
  cold_a, _ = run(jax.random.key(2), 1e-12)
  cold_b, _ = run(jax.random.key(9), 1e-12)
  np.testing.assert_allclose(np.asarray(cold_a), np.asarray(cold_b), atol=1e-5)
  assert float(jnp.abs(cold_a - mu).max()) > 1e-4


def test_free_bits_batch_level(tiny):
  _, variables, x, pa = tiny
  model = HVAE(dataclasses.replace(TINY, kl_free_bits=1e3))  # same parameters
  out = jax.jit(lambda: model.apply(variables, x, pa, rngs=_rngs(1)))()
  # KL per latent channel is far below the floor: 3 layers x 4 channels x 1e3 nats / 64 dims.
  np.testing.assert_allclose(np.asarray(out["kl"]), 3 * 4 * 1e3 / 64, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(out["nelbo"] - out["nll"]), 3 * 4 * 1e3 / 64,
                             rtol=1e-5)


def test_cond_prior_dropout_only_when_training(morpho):
  model, variables, x, pa = morpho  # morphomnist: cond_prior, digit channels [2, 12)
  prior_parents = lambda mdl, p, training: mdl._prior_parents(p, training)
  dropped = {}
  for s in range(12):  # cheap: the per-batch choice alone, without the network
    out = model.apply(variables, pa, True, method=prior_parents,
                      rngs={"cond_dropout": jax.random.key(s)})
    np.testing.assert_array_equal(np.asarray(out[:, :2]), np.asarray(pa[:, :2]))
    is_dropped = bool(jnp.all(out[:, 2:] == 0))
    assert is_dropped or bool(jnp.all(out == pa))
    dropped.setdefault(is_dropped, s)
  assert set(dropped) == {True, False}  # 1/3 dropped, 2/3 kept
  np.testing.assert_array_equal(
      np.asarray(model.apply(variables, pa, False, method=prior_parents)), np.asarray(pa))

  # The full model: the same keys drop / keep the digit in the prior's input only. The
  # prior's last conv is zero at init (it ignores pa); perturb it so that this shows.
  def perturb(path, v):
    name = jax.tree_util.keystr(path)
    return v + 0.02 if "prior" in name and "conv_3" in name else v
  variables = jax.tree_util.tree_map_with_path(perturb, variables)
  kl = lambda s, training=True: float(model.apply(
      variables, x, pa, training=training,
      rngs={"sample": jax.random.key(0), "cond_dropout": jax.random.key(s)})["kl"].mean())
  kept = kl(dropped[False])
  assert kl(dropped[True]) != kept
  assert kl(dropped[True], training=False) == kept  # evaluation never drops


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_jit_grad_finite_and_training_lowers_nelbo(tiny, dtype):
  # bfloat16: mixed precision (hvae_arch.HVAEConfig.compute_dtype), float32 parameters.
  _, variables, x, pa = tiny
  model = HVAE(dataclasses.replace(TINY, compute_dtype=dtype))
  params = variables["params"]
  opt = optax.adam(1e-2)

  def loss(p, key):
    return model.apply({"params": p}, x, pa, rngs={"sample": key})["nelbo"].mean()

  @jax.jit
  def step(p, state, key):
    value, grads = jax.value_and_grad(loss)(p, key)
    updates, state = opt.update(grads, state, p)
    return optax.apply_updates(p, updates), state, value, grads

  state = opt.init(params)
  p, state, first, grads = step(params, state, jax.random.key(0))
  assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))
  values = []
  for i in range(1, 100):
    p, state, value, _ = step(p, state, jax.random.key(i))
    values.append(float(value))
  final = float(np.mean(values[-5:]))  # nelbo is stochastic: average the last steps
  assert math.isfinite(float(first)) and final < 0.9 * float(first), (float(first), final)


def test_counterfactual_image_formula():
  x = jnp.array([0.5, -1.0, 0.9])
  mu, sigma = jnp.array([0.3, -0.8, 0.0]), jnp.array([0.1, 0.0, 0.5])
  mu_cf, sigma_cf = jnp.array([0.0, 0.0, 0.8]), jnp.array([0.2, 1.0, 1.0])
  # u = (2, -0.2e12 -> huge, 1.8); x* = (0.4, clip(-2e11) = -1, clip(2.6) = 1)
  np.testing.assert_allclose(np.asarray(counterfactual_image(x, mu, sigma, mu_cf, sigma_cf)),
                             [0.4, -1.0, 1.0], rtol=1e-6)
