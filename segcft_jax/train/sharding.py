"""Device mesh and shardings (SPEC §5).

All devices form a `Mesh` with a `data` axis; batches are split along their leading dimension
over that axis and parameters are replicated. Per-process host batches become global arrays
with `jax.make_array_from_process_local_data`, so the same code runs on one CPU, eight fake
CPU devices or several hosts.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int = -1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D data-parallel mesh over `num_devices` devices (-1: all)."""
  devices = list(jax.devices() if devices is None else devices)
  if num_devices > 0:
    if num_devices > len(devices):
      raise ValueError(
          f"config.mesh.num_devices={num_devices} but only {len(devices)} devices exist; "
          "set it to -1 (all devices) or a smaller number.")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of an array copied on every device (parameters, frozen networks)."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch split along its leading axis over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "batch_size") -> int:
  """Returns the per-process batch size, or fails naming sizes that would work."""
  n_dev, n_proc = mesh.size, jax.process_count()
  if global_batch % n_dev or global_batch % n_proc:
    lcm = int(np.lcm(n_dev, n_proc))
    ok = [lcm * k for k in range(1, 5)]
    raise ValueError(
        f"{what}={global_batch} does not divide evenly over {n_dev} devices / {n_proc} "
        f"processes; use a multiple of {lcm}, e.g. {ok}.")
  return global_batch // n_proc


def to_global(local_batch: Any, mesh: Mesh) -> Any:
  """Turns this process's host batch (numpy pytree) into globally sharded arrays."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                      local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a host or device pytree replicated on every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))
