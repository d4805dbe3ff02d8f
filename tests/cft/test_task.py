"""The CFT step: 8 devices == 1 device, frozen networks untouched, lambda >= 0, and the
predictor's gradient reaching the HVAE through the counterfactual image."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax import builders, config_files
from segcft_jax.cft import lagrangian, predictors
from segcft_jax.cft import task as task_lib
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.cft.task import cft_task
from segcft_jax.data import pipeline
from segcft_jax.train import sharding
from segcft_jax.train.loop import fit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = ("image", "sex", "age", "left_lung_area", "right_lung_area", "heart_area")


def _config(num_steps=2):
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with config.unlocked():  # A tiny HVAE and U-Net: the step's logic, not its capacity.
    config.hvae.model.update(widths=(4, 8, 16), enc_arch="32b1d4,8b1d8,1b1",
                             dec_arch="1b1,8b1,32b1", z_dim=4, z_max_res=8, bias_max_res=8)
    config.segmentor.model.widths = (4, 8)
    config.cft_seg.num_steps = num_steps
    config.cft_seg.batch_size = 8
  return config


def _predictor(config):
  """The global Seg-CFT predictor and its U-Net module."""
  unet = builders.make_unet(config, "segmentor")
  return predictors.make_predictor(config, "segmentor", unet), unet


def _setup(config, epsilon, records):
  dscm = builders.make_dscm(config)
  predictor, unet = _predictor(config)
  settings = CFTSettings.from_config(config, "cft_seg")
  batch = pipeline.train_dataset(records, KEYS, 8, seed=0)[0]
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  frozen = {"pgm": dscm.pgm.init(k1),
            "predictor": unet.init(k2, jnp.asarray(batch["image"][:1]))["params"]}
  shapes = cft_task(settings, config, dscm, predictor, epsilon)
  hvae_params = shapes.init(k3, batch)["hvae"]
  return cft_task(settings, config, dscm, predictor, epsilon, hvae_params), frozen, batch


def _fit(config, task, frozen, n_devices, workdir, records, fsdp=1, **kw):
  data = pipeline.train_dataset(records, KEYS, config.cft_seg.batch_size, seed=0)
  mesh = sharding.make_mesh(n_devices, fsdp=fsdp)
  return fit(task, config.cft_seg, workdir, mesh, data, frozen=frozen, **kw)


@pytest.fixture(scope="module")
def fits(tmp_path_factory, chest_records):
  """Two steps of the same CFT task on 1 device, on 8 (data) and on 8 (fsdp 4 x data 2)."""
  records = chest_records(16)
  config = _config()
  task, frozen, _ = _setup(config, epsilon=5.0, records=records)
  before = jax.tree.map(np.array, frozen)
  base = tmp_path_factory.mktemp("cft_fits")
  states = {name: _fit(config, task, frozen, n, str(base / name), records, fsdp=f,
                       fsdp_min_size=8).state
            for name, n, f in (("one", 1, 1), ("data8", 8, 1), ("fsdp", 8, 4))}
  return task, frozen, before, states


def test_cft_step_on_8_devices_equals_1_device_and_leaves_the_predictor_frozen(fits):
  task, frozen, before, states = fits
  one, eight = states["one"], states["data8"]
  assert set(one.params) == {"hvae", "lmbda"}  # The optimiser never sees the predictor.
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)
  assert int(eight.skipped) == 0 and float(eight.params["lmbda"]) >= 0.0
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(frozen)):
    np.testing.assert_array_equal(a, np.asarray(b))  # Bit-identical.
  moved = any(float(jnp.max(jnp.abs(a - b))) > 0 for a, b in zip(
      jax.tree.leaves(one.params["hvae"]), jax.tree.leaves(task.pretrained["hvae"])))
  assert moved


def test_cft_step_with_fsdp_4_by_data_2_equals_data_8_and_shards_the_hvae(fits, capsys):
  _, frozen, _, states = fits
  dp, fsdp = states["data8"], states["fsdp"]
  for a, b in zip(jax.tree.leaves((dp.params, dp.opt_state, dp.ema_params)),
                  jax.tree.leaves((fsdp.params, fsdp.opt_state, fsdp.ema_params))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)
  full, shard = (sharding.bytes_per_device(s.params["hvae"]) for s in (dp, fsdp))
  with capsys.disabled():
    print(f"\nCFT HVAE parameter bytes per device: data=8 {full}, fsdp=4 x data=2 {shard}")
  assert shard < 0.5 * full
  # `fit` places the frozen predictor and flows with `sharding.replicate`: whole on every
  # device of the fsdp mesh too.
  frozen_on_mesh = sharding.replicate(frozen, sharding.make_mesh(8, fsdp=4))
  assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(frozen_on_mesh))


def test_lambda_is_clamped_at_zero_when_the_constraint_holds(tmp_path, chest_records):
  # nelbo - epsilon < 0 at every step: the ascent pushes lambda down and the clamp holds it
  # at exactly 0 (growth while violated is checked on the optimiser in test_lagrangian).
  config = _config(num_steps=3)
  with config.unlocked():
    config.cft_seg.damping = 0.0  # Damping would pull nelbo up towards epsilon (huge grads).
  task, frozen, _ = _setup(config, epsilon=100.0, records=chest_records(16))
  state = _fit(config, task, frozen, 1, str(tmp_path), chest_records(16)).state
  assert float(state.params["lmbda"]) == 0.0 and int(state.skipped) == 0


def test_the_predictor_gradient_reaches_the_hvae_through_the_counterfactual(chest_records):
  config = _config()
  with config.unlocked():
    config.cft_seg.damping = 0.0  # lambda_0 = 0 and no damping: loss = aux exactly.
  task, frozen, batch = _setup(config, epsilon=0.0, records=chest_records(16))
  batch = jax.tree.map(jnp.asarray, batch)
  (loss, metrics), grads = jax.jit(jax.value_and_grad(task.loss_fn, has_aux=True))(
      task.pretrained, batch, jax.random.PRNGKey(1), frozen)
  assert float(loss) == pytest.approx(float(metrics["aux"]), rel=1e-6)
  decoder_norm = float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(
      grads["hvae"]["decoder"]))))
  assert decoder_norm > 0.0
  # distance_weights: heart's term counts three times in the auxiliary loss.
  with config.unlocked():
    config.cft_seg.distance_weights = "heart=3"
  weighted, _, _ = _setup(config, epsilon=0.0, records=chest_records(16))
  _, m = jax.jit(weighted.loss_fn)(task.pretrained, batch, jax.random.PRNGKey(1), frozen)
  d = {k: float(v) for k, v in m.items() if k.startswith("d_")}
  assert float(m["aux"]) == pytest.approx(sum(d.values()) + 2 * d["d_heart_area"], rel=1e-6)
  assert d == pytest.approx({k: float(v) for k, v in metrics.items() if k.startswith("d_")})


def test_reg_cft_nll_distance_is_the_regressors_likelihood(chest_records):
  config = _config()
  with config.unlocked():
    config.cft_reg.update(distance="nll", damping=0.0, batch_size=8)
  dscm = builders.make_dscm(config)
  model = builders.make_regressor(config, {v: (300.0, 60.0) for v in
                                           builders.regressor_types(config)})
  variables = predictors.measured_variables(config)
  predictor = predictors.make_predictor(config, "regressor", model)
  settings = CFTSettings.from_config(config, "cft_reg")
  batch = jax.tree.map(jnp.asarray, pipeline.train_dataset(chest_records(16), KEYS, 8, 0)[0])
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  frozen = {"pgm": dscm.pgm.init(k1), "predictor": model.model.init(k2, batch["image"][:1])[
      "params"]}
  hvae = cft_task(settings, config, dscm, predictor, 0.0).init(k3, batch)["hvae"]
  step = task_lib.CounterfactualStep(dscm, predictor, settings)
  task = cft_task(settings, config, dscm, predictor, 0.0, hvae)

  @jax.jit  # one program (eagerly the HVAE's passes take ~45 s)
  def run():
    out = step(hvae, frozen, batch, jax.random.PRNGKey(1))
    at_mean = model.nll(frozen["predictor"], out["x_cf"],
                        model.predict(frozen["predictor"], out["x_cf"]))
    (loss, m), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
        task.pretrained, batch, jax.random.PRNGKey(2), frozen)
    grad_norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads["hvae"])))
    return out["distances"], at_mean, loss, m["aux"], grad_norm

  distances, at_mean, loss, aux, grad_norm = run()
  # Each term is -log q(target | x*) of the Gaussian head: it sits above its minimum, the
  # value at the predicted mean (log sigma), for the counterfactual image actually made.
  for v in variables:
    assert distances[v].shape == (8,)
    assert bool(jnp.all(distances[v] >= at_mean[v] - 1e-5))
  assert float(loss) == pytest.approx(float(aux), rel=1e-6)
  assert float(grad_norm) > 0


def test_focus_curriculum_draws_only_the_focused_structure_first(tmp_path, chest_records):
  records = chest_records(16)
  config = _config(num_steps=2)
  with config.unlocked():
    config.cft_seg.update(focus="heart", focus_steps=1)
  task, frozen, batch = _setup(config, epsilon=5.0, records=records)
  assert task.step_aware
  cf_step = task_lib.CounterfactualStep(builders.make_dscm(config), _predictor(config)[0],
                                        CFTSettings.from_config(config, "cft_seg"))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  hits = {}
  for step in (0, 1):
    out = cf_step(task.pretrained["hvae"], frozen, batch, jax.random.PRNGKey(3),
                  step=jnp.asarray(step))
    hits[step] = {m: int(np.asarray(h).sum()) for m, h in out["intervened"].items()}
  assert hits[0]["heart_area"] == 8 and hits[0]["left_lung_area"] == 0 == hits[0]["right_lung_area"]
  assert hits[1]["heart_area"] < 8 and sum(hits[1].values()) == 8
  # The training step hands its counter to the loss: the curriculum runs through `fit`.
  state = _fit(config, task, frozen, 1, str(tmp_path), records).state
  assert int(state.step) == 2 and int(state.skipped) == 0


def test_balanced_step_is_the_gradient_of_the_loss_reweighted_per_structure(chest_records):
  """balance='structure' = the plain gradient with distance_weights s_k on structure k's
  measurements (the scales it reports; that they are n_bar / n_k: tests/cft/test_balance),
  the balanced step sharded over 8 devices, the plain one on 1."""
  config = _config()
  with config.unlocked():
    config.cft_seg.balance = "structure"
  task, frozen, batch = _setup(config, epsilon=5.0, records=chest_records(8))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  rng = jax.random.PRNGKey(4)
  # The balanced step runs with the batch sharded over 8 devices (params and frozen
  # replicated); the plain gradient it is compared with, on one device.
  mesh = sharding.make_mesh(8)
  (loss, metrics), grads = jax.jit(task.grad_fn)(
      sharding.replicate(task.pretrained, mesh),
      jax.device_put(batch, sharding.batch_sharding(mesh)), rng, sharding.replicate(frozen, mesh))
  scales = {s: float(metrics[f"balance_{s}"]) for s in ("left_lung", "right_lung", "heart")}
  assert max(scales.values()) / min(scales.values()) > 1.01
  assert sum(1 / s for s in scales.values()) == pytest.approx(3.0, rel=1e-5)  # sum n_k/n_bar
  with config.unlocked():
    config.cft_seg.update(balance="", distance_weights=",".join(
        f"{s}={w!r}" for s, w in scales.items()))
  plain, _, _ = _setup(config, epsilon=5.0, records=chest_records(8))
  assert plain.grad_fn is None
  weighted_loss, want = jax.jit(jax.value_and_grad(
      lambda p: plain.loss_fn(p, batch, rng, frozen)[0]))(task.pretrained)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
  # The reported loss is the unbalanced one: that of unit weights.
  plain_loss = lagrangian.lagrangian(metrics["aux"], metrics["nelbo"], metrics["lmbda"], 5.0,
                                     config.cft_seg.damping)
  assert float(loss) == pytest.approx(float(plain_loss), rel=1e-5)
  assert float(weighted_loss) != pytest.approx(float(loss), rel=1e-5)
  with config.unlocked():
    config.cft_seg.balance = "norm"
  with pytest.raises(ValueError, match="balance='norm' is not one of"):
    CFTSettings.from_config(config, "cft_seg")
