"""The HVAE task of the quick chest config: one step on 8 devices equals the 1-device step."""

import os

import jax
import numpy as np

from segcft_jax import config_files
from segcft_jax.data import pipeline
from segcft_jax.stages import hvae as hvae_stage
from segcft_jax.train import sharding
from segcft_jax.train.loop import fit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hvae_step_on_8_devices_equals_1_device(tmp_path, chest_records):
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with config.unlocked():  # A tiny HVAE: the stage's sharding, not its capacity.
    config.hvae.num_steps = 1
    config.hvae.model.update(widths=(4, 8, 16), enc_arch="32b1d4,8b1d8,1b1",
                             dec_arch="1b1,8b1,32b1", z_dim=4, z_max_res=8, bias_max_res=8)
  keys = ("image", *config.hvae.parents)
  task = hvae_stage.hvae_task(config)
  states = []
  for n in (1, 8):
    mesh = sharding.make_mesh(n)
    data = pipeline.train_dataset(chest_records(32), keys, config.hvae.batch_size, seed=0)
    states.append(fit(task, config.hvae, str(tmp_path / str(n)), mesh, data).state)
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params)))
  assert diff <= 1e-5
  assert int(states[1].skipped) == 0
