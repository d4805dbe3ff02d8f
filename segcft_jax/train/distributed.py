"""Multi-process start-up on JAX's own distributed runtime (SPEC §5, multi-host).

`initialize` calls `jax.distributed.initialize` when the run is multi-process: explicit flags
(`--coordinator_address`, `--num_processes`, `--process_id`), or a cluster JAX detects by
itself (a SLURM job with several tasks, a multi-host TPU slice). `check_same_config` makes
every process prove it runs the same config as process 0, and `barrier` lines them up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


def cluster_detected(environ=os.environ) -> bool:
  """True inside a multi-task SLURM job or on a multi-host TPU slice."""
  slurm = int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in environ
  tpu_hosts = environ.get("TPU_WORKER_HOSTNAMES", "")
  return slurm or "," in tpu_hosts


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, environ=os.environ) -> bool:
  """Initialises the distributed runtime if this is a multi-process run; returns whether it did.

  Args:
    coordinator_address: `host:port` of process 0 (None: auto-detect from the cluster).
    num_processes: total number of processes (None: auto-detect).
    process_id: this process's index (None: auto-detect).
    environ: environment to inspect (for tests).
  """
  explicit = coordinator_address is not None or (num_processes or 1) > 1
  if not explicit and not cluster_detected(environ):
    return False
  if explicit and (coordinator_address is None or num_processes is None or process_id is None):
    raise ValueError("A multi-process run needs --coordinator_address, --num_processes and "
                     "--process_id together (or none of them inside SLURM / a TPU slice).")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def config_digest(config: ml_collections.ConfigDict) -> str:
  """SHA-256 of the config's canonical JSON."""
  text = json.dumps(json.loads(config.to_json_best_effort()), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(config: ml_collections.ConfigDict) -> None:
  """Fails on every process when any process's config differs from the others'."""
  if jax.process_count() == 1:
    return
  mine = np.frombuffer(bytes.fromhex(config_digest(config)), np.uint8).astype(np.int32)
  every = np.asarray(multihost_utils.process_allgather(mine))  # [processes, 32]
  differing = [i for i in range(every.shape[0]) if not np.array_equal(every[i], every[0])]
  if differing:
    raise ValueError(
        f"Process(es) {differing} run a different config than process 0 (this is process "
        f"{jax.process_index()}, digest {config_digest(config)[:12]}...). Start every process "
        f"with the same --config and overrides.")


def fail(message: str) -> None:
  """Exits this process with `message`; in a multi-process run, without waiting for peers.

  A normal exit runs JAX's distributed shutdown, a barrier the peers may never reach (they
  may be waiting at another one), so the job would hang instead of failing.
  """
  print(f"error: {message}", file=sys.stderr, flush=True)
  if jax.process_count() > 1:
    logging.shutdown()
    os._exit(1)  # pylint: disable=protected-access
  sys.exit(1)


def barrier(name: str) -> None:
  """Waits until every process reaches `name` (no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process (collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.asarray(multihost_utils.process_allgather(np.array([flag]))).any())
