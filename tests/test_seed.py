"""`config.seed` moves every stage: each stage's seed is config.seed + its offset, and the
quick pipeline trained with --config.seed=1 differs from seed 0 in every stage's result."""

import json
import os

import pytest

from segcft_jax import config_files
from segcft_jax.stages import evaluate
from segcft_jax.train import defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(spec="synth_chest.py:quick"):
  return config_files.load(os.path.join(ROOT, "configs", spec))


@pytest.mark.parametrize("spec", ["synth_chest.py:quick", "synth_vessel.py:positional",
                                  "morphomnist.py", "padchest.py:quick", "chest192.py"])
def test_stage_seeds_are_config_seed_plus_offset(spec):
  config = _config(spec)
  sections = [s for s in defaults.SEED_OFFSETS if s in config]
  assert {s: config[s].seed for s in sections} == {s: defaults.SEED_OFFSETS[s]
                                                   for s in sections}
  config.seed = 7
  assert {s: config[s].seed for s in sections} == {s: 7 + defaults.SEED_OFFSETS[s]
                                                   for s in sections}
  config.oracle.seed = 40  # A stage's own seed detaches it alone.
  assert config.oracle.seed == 40 and config.segmentor.seed == 8 and config.seed == 7


def _summary(work, stage):
  with open(os.path.join(work, stage, "summary.json")) as f:
    return json.load(f)


STAGES = ("data", "segmentor", "oracle", "regressor", "pgm", "hvae", "cft_reg", "cft_seg")


def test_seed_1_changes_every_stage(quick_chest_workdir, quick_chest_seed1_workdir, tmp_path):
  for stage in STAGES:
    a, b = (_summary(w, stage) for w in (quick_chest_workdir, quick_chest_seed1_workdir))
    key = "train" if stage == "data" else "test"  # the built data's statistics
    assert a[key] != b[key], stage
    with open(os.path.join(quick_chest_seed1_workdir, stage, "config.json")) as f:
      config = json.load(f)
    assert config[stage]["seed"] == 1 + defaults.SEED_OFFSETS[stage]
  # The evaluation draws its interventions and posterior samples from its seed: seed 1's,
  # and for comparison the same workdir evaluated with seed 0's evaluation seed.
  metrics = []
  for own in (None, 0):
    config = _config()
    with config.unlocked():
      config.seed = 1
      config.evaluate.update(num_examples=8, batch_size=8, composition_examples=8,
                             figure_examples=1)
      if own is not None:
        config.evaluate.seed = own
    out = str(tmp_path / f"eval_{own}")
    evaluate.evaluate(config, quick_chest_seed1_workdir, out)
    with open(os.path.join(out, "metrics.json")) as f:
      metrics.append(json.load(f))
  assert [m["conventions"]["seed"] for m in metrics] == [1, 0]
  assert metrics[0]["methods"] != metrics[1]["methods"]
