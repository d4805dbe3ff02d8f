"""The generic loop: resume == uninterrupted, sharded == single device, checkpoint errors."""

import os
import time

import jax
import ml_collections
import numpy as np
import pytest

from segcft_jax.data import pipeline
from segcft_jax.stages.segmentor import segmentation_task
from segcft_jax.train import checkpoint as ckpt_lib
from segcft_jax.train import defaults, metrics_log, sharding
from segcft_jax.train.loop import TrainingDiverged, fit
from segcft_jax.train.task import Task

KEYS = ("image", "mask")


def _records(n=32, size=8, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    mask = np.zeros((size, size), np.uint8)
    r, c = rng.integers(0, size - 3, 2)
    mask[r:r + 3, c:c + 3] = 1
    image = (mask[..., None] * 150 + rng.integers(0, 60, (size, size, 1))).astype(np.uint8)
    out.append({"image": image, "mask": mask})
  return out


def _cfg(num_steps, ckpt_every=None, **kw):
  model = ml_collections.ConfigDict(dict(widths=(4, 8), blocks_per_level=1, norm_groups=2))
  return defaults.train_config(seed=3, batch_size=8, num_steps=num_steps, log_every=2,
                               ckpt_every=ckpt_every, model=model,
                               optim=defaults.optim_config(lr=1e-2, warmup_steps=2), **kw)


def _fit(stage_dir, cfg, mesh, task=None, **kw):
  task = task or segmentation_task("toyseg", cfg.model, ("bg", "fg"), 1.0)
  local = sharding.check_batch_size(cfg.batch_size, mesh)
  data = pipeline.train_dataset(_records(), KEYS, local, seed=cfg.seed)
  return fit(task, cfg, stage_dir, mesh, data, **kw)


def _max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_resume_equals_uninterrupted(tmp_path):
  mesh = sharding.make_mesh(1)
  full = _fit(str(tmp_path / "a"), _cfg(8), mesh).state
  _fit(str(tmp_path / "b"), _cfg(5), mesh)  # "interrupted" after 5 steps (checkpoint at 5)
  resumed = _fit(str(tmp_path / "b"), _cfg(8, ckpt_every=8), mesh)
  assert resumed.steps_run == 3
  assert int(resumed.state.step) == 8
  assert _max_diff((full.params, full.ema_params), (resumed.state.params,
                                                   resumed.state.ema_params)) <= 1e-6
  lines = open(tmp_path / "b" / "metrics.jsonl").read()
  assert '"event": "resume"' in lines


def test_step_on_8_devices_equals_1_device(tmp_path):
  assert jax.device_count() == 8
  one = _fit(str(tmp_path / "one"), _cfg(1), sharding.make_mesh(1)).state
  eight = _fit(str(tmp_path / "eight"), _cfg(1), sharding.make_mesh(8)).state
  assert all(len(x.sharding.device_set) == 8 for x in jax.tree.leaves(eight.params))
  assert _max_diff(one.params, eight.params) <= 1e-5
  assert _max_diff(one.opt_state, eight.opt_state) <= 1e-5


def test_fsdp_4_by_data_2_equals_data_8_and_shrinks_parameter_memory(tmp_path, capsys):
  cfg = _cfg(2)
  cfg.model.widths = (8, 16)
  dp = _fit(str(tmp_path / "dp"), cfg, sharding.make_mesh(8), fsdp_min_size=64).state
  fsdp = _fit(str(tmp_path / "fsdp"), cfg, sharding.make_mesh(8, fsdp=4), fsdp_min_size=64).state
  assert _max_diff((dp.params, dp.opt_state, dp.ema_params),
                   (fsdp.params, fsdp.opt_state, fsdp.ema_params)) <= 1e-5
  full, shard = sharding.bytes_per_device(dp.params), sharding.bytes_per_device(fsdp.params)
  with capsys.disabled():
    print(f"\nparameter bytes per device: data=8 {full}, fsdp=4 x data=2 {shard}")
  assert shard < 0.5 * full
  with pytest.raises(ValueError, match="must divide the 8 devices"):
    sharding.make_mesh(8, fsdp=3)


def test_architecture_change_is_refused_without_touching_files(tmp_path):
  mesh = sharding.make_mesh(1)
  _fit(str(tmp_path), _cfg(2), mesh)
  before = {p: os.path.getmtime(p) for p in _files(tmp_path)}
  cfg = _cfg(4)
  cfg.model.widths = (8, 16)
  with pytest.raises(ckpt_lib.CheckpointError, match=r"different model.*widths"):
    _fit(str(tmp_path), cfg, mesh)
  assert before == {p: os.path.getmtime(p) for p in _files(tmp_path)}


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
  mesh = sharding.make_mesh(1)
  _fit(str(tmp_path), _cfg(2), mesh)
  state_dir = tmp_path / "checkpoints" / "2" / "state"
  for p in _files(state_dir):
    if os.path.getsize(p) > 0 and "ocdbt" in p or p.endswith(".data") or "/d/" in p:
      with open(p, "r+b") as f:
        f.truncate(max(os.path.getsize(p) // 3, 1))
  with pytest.raises(ckpt_lib.CheckpointError, match="corrupt"):
    _fit(str(tmp_path), _cfg(4), mesh)
  assert (tmp_path / "checkpoints" / "2").exists()


def test_persistent_nan_loss_stops_with_message(tmp_path):
  cfg = _cfg(40)
  base = segmentation_task("toyseg", cfg.model, ("bg", "fg"), 1.0)

  def nan_loss(params, batch, rng, frozen):
    loss, m = base.loss_fn(params, batch, rng, frozen)
    return loss * np.nan, m

  task = Task("toyseg", base.init, nan_loss, base.eval_fn, base.fingerprint)
  with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
    _fit(str(tmp_path), cfg, sharding.make_mesh(1), task)


def _files(root):
  return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def test_progress_interval_reports_input_time():
  progress = metrics_log.Progress("x", total=10, start=0, batch_size=4)
  progress.add_input_time(0.002)
  progress.add_input_time(0.004)
  time.sleep(0.05)
  first = progress.interval(2)
  assert first["input_ms_per_step"] == pytest.approx(3.0)
  assert 0 < first["input_share"] < 0.006 / 0.05
  assert first["img_per_s"] < 8 / 0.05
  second = progress.interval(4)  # the accumulated input time starts again at 0
  assert second["input_ms_per_step"] == 0 and second["input_share"] == 0
  assert "input 0.0 %" in progress.line(4, dict(second, loss=1.0))
