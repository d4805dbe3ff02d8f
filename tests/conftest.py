"""Test setup: 8 fake CPU devices (before jax is imported) and parsed absl flags."""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

# As in the configs (see configs/synth_chest.py): the non-partitionable threefry compiles
# ~8x faster on CPU.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
# Tests compile the same small steps many times (fresh closures, identical HLO): reuse them.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache", "tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

from absl import flags  # pylint: disable=g-import-not-at-top

# Grain's multiprocessing reads absl flags (google/grain#1355); mark them parsed for pytest.
flags.FLAGS.mark_as_parsed()


import subprocess  # pylint: disable=g-import-not-at-top,g-bad-import-order
import sys  # pylint: disable=g-import-not-at-top,g-bad-import-order

import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Stages of the shared quick workdir and their (shortened) step counts.
QUICK_CHEST_STAGES = ("data", "segmentor", "oracle", "regressor", "pgm", "hvae", "cft_reg",
                      "cft_seg")
QUICK_CHEST_OVERRIDES = ("--config.segmentor.num_steps=30", "--config.oracle.num_steps=30",
                         "--config.regressor.num_steps=30", "--config.pgm.num_steps=100",
                         "--config.hvae.num_steps=40", "--config.cft_reg.num_steps=4",
                         "--config.cft_seg.num_steps=4")


def run_main(config: str, workdir, *args: str) -> subprocess.CompletedProcess:
  """`python -m segcft_jax.main --config=config --workdir=workdir *args` on one CPU device
  (the suite's 8 fake devices dropped), from the repository root."""
  env = dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"].replace(_FLAG, ""))
  return subprocess.run([sys.executable, "-m", "segcft_jax.main", f"--config={config}",
                         f"--workdir={workdir}", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)


def _train_quick_chest(tmp_path_factory, name: str, *extra: str) -> str:
  """A workdir of the quick chest config trained by the command line through every stage up
  to fine-tuning, on one CPU device, with shortened step counts (a smoke-sized model)."""
  work = str(tmp_path_factory.mktemp(name))
  r = run_main("configs/synth_chest.py:quick", work, f"--stages={','.join(QUICK_CHEST_STAGES)}",
               *QUICK_CHEST_OVERRIDES, *extra)
  assert r.returncode == 0, r.stderr[-3000:]
  return work


@pytest.fixture(scope="session")
def quick_chest_workdir(tmp_path_factory) -> str:
  """The quick chest workdir every test of a trained model shares (built once a session)."""
  return _train_quick_chest(tmp_path_factory, "quick_chest")


@pytest.fixture(scope="session")
def quick_chest_seed1_workdir(tmp_path_factory) -> str:
  """The same workdir trained with `--config.seed=1`."""
  return _train_quick_chest(tmp_path_factory, "quick_chest_seed1", "--config.seed=1")


@pytest.fixture(scope="session")
def chest_records():
  """`make(n, size)`: n random chest-like records (uint8 image, sex, age, organ areas)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  def make(n: int = 32, size: int = 32) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (size, size, 1), dtype=np.uint8),
             "sex": float(rng.integers(0, 2)), "age": float(rng.uniform(20, 80)),
             "left_lung_area": float(rng.uniform(50, 90)),
             "right_lung_area": float(rng.uniform(70, 120)),
             "heart_area": float(rng.uniform(40, 80))} for _ in range(n)]
  return make


# Under pytest-xdist (`-n 2 --dist loadgroup`, pyproject's addopts) the tests of the shared
# trained workdirs run on one worker, so each workdir is trained once per session.
_SHARED_WORKDIRS = {"quick_chest_workdir", "quick_chest_seed1_workdir"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if _SHARED_WORKDIRS & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.xdist_group("trained_workdirs"))
