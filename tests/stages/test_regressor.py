"""The regressor stage on the quick config: standardisation stats, units, and resumption."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segcft_jax import builders, config_files, stages
from segcft_jax.models import regressor as regressor_model
from segcft_jax.stages import regressor, setup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
synth_chest = config_files.load_module(os.path.join(ROOT, "configs", "synth_chest.py"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("reg"))
  config = config_files.load(os.path.join(ROOT, "configs", "synth_chest.py:quick"))
  with config.unlocked():
    config.regressor.num_steps = 30
  stages.run_stages(config, work, ["data", "regressor"])
  return work, config


def test_summary_reports_errors_in_data_units(workdir):
  work, _ = workdir
  summary = json.load(open(os.path.join(work, "regressor", "summary.json")))
  for area in synth_chest.AREAS:
    assert 0.0 < summary["test"][f"{area}/mape"] < 100.0
    assert summary["test"][f"{area}/mae"] > 0.0
  stats = regressor.load_stats(work)
  assert set(stats) == set(synth_chest.AREAS)
  # Quick images are 32x32: organ areas are tens to hundreds of pixels.
  assert all(10.0 < m < 1024.0 and s > 0 for m, s in stats.values())


def test_unknown_or_discrete_variable_is_rejected(workdir):
  _, config = workdir
  with pytest.raises(ValueError, match="not a variable"):
    builders.regressor_types(config, ["lung_volume"])
  assert builders.regressor_types(config, ["sex"]) == {"sex": "binary"}
  np.testing.assert_equal(list(builders.regressor_types(config, synth_chest.AREAS).values()),
                          ["continuous"] * 3)


def test_gaussian_nll_is_the_training_loss_and_peaks_at_the_predicted_mean(workdir):
  # Reg-CFT's `nll` distance (the reference's -log q(pa* | x*)) on the trained regressor.
  work, config = workdir
  data = setup.prepare(config, work, "regressor", ("image", *synth_chest.AREAS))
  batch = next(iter(data.eval_batches("test")))
  model, params = builders.load_regressor(config, work)
  assert model.stats == regressor.load_stats(work)  # saved with the weights
  x = jnp.asarray(batch["image"])
  truth = {a: jnp.asarray(batch[a]) for a in synth_chest.AREAS}
  nll = model.nll(params, x, truth)
  task = regressor.regression_task(config.regressor, model.types, model.stats)
  _, terms = task.loss_fn(params, {"image": x, **truth}, None, None)
  for a in synth_chest.AREAS:
    np.testing.assert_allclose(float(nll[a].mean()), float(terms[f"loss_{a}"]), rtol=1e-5)
  mean = model.predict(params, x)
  at_mean = model.nll(params, x, mean)
  shifted = model.nll(params, x, {a: v * 1.2 for a, v in mean.items()})
  assert all(bool(jnp.all(at_mean[a] < shifted[a])) for a in synth_chest.AREAS)
  grad = jax.grad(lambda x: model.nll(params, x, truth)["heart_area"].sum())(x)
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).sum()) > 0
  with pytest.raises(ValueError, match="continuous variables only"):
    regressor_model.gaussian_nll(model.model, params, x, {"sex": "binary"}, {}, {"sex": truth[a]})
