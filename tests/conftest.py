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
