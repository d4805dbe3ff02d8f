"""Device mesh and shardings (SPEC §5).

All devices form a 2-D `Mesh` with axes (`data`, `fsdp`). Batches are split along their
leading dimension over both axes (every device gets distinct examples). Parameters, optimiser
state and EMA are replicated when `fsdp == 1`; otherwise each array of at least `min_size`
elements is split over `fsdp` along its largest dimension divisible by the axis size (FSDP /
ZeRO-3 style: XLA all-gathers weights where they are used and reduce-scatters gradients).
Per-process host batches become global arrays with `jax.make_array_from_process_local_data`,
so the same code runs on one CPU, eight fake CPU devices or several hosts.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
FSDP_MIN_SIZE = 2 ** 14  # smaller arrays stay replicated: sharding them saves little


def make_mesh(num_devices: int = -1, devices: Sequence[jax.Device] | None = None,
              fsdp: int = 1) -> Mesh:
  """A (data, fsdp) mesh over `num_devices` devices (-1: all), `fsdp` of them per group."""
  devices = list(jax.devices() if devices is None else devices)
  if num_devices > 0:
    if num_devices > len(devices):
      raise ValueError(
          f"config.mesh.num_devices={num_devices} but only {len(devices)} devices exist; "
          "set it to -1 (all devices) or a smaller number.")
    devices = devices[:num_devices]
  if fsdp < 1 or len(devices) % fsdp:
    divisors = [d for d in range(1, len(devices) + 1) if len(devices) % d == 0]
    raise ValueError(f"config.mesh.fsdp={fsdp} must divide the {len(devices)} devices; "
                     f"valid values: {divisors}.")
  return jax.make_mesh((len(devices) // fsdp, fsdp), BATCH_AXES,
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of an array copied on every device (parameters, frozen networks)."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch split along its leading axis over all devices."""
  return NamedSharding(mesh, P(BATCH_AXES))


def param_spec(shape: Sequence[int], fsdp: int, min_size: int = FSDP_MIN_SIZE) -> P:
  """`P()` or a spec splitting the largest dimension divisible by `fsdp` over `fsdp`."""
  if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  dims = [d for d in np.argsort(shape)[::-1] if shape[d] % fsdp == 0]
  if not dims:
    return P()
  spec = [None] * len(shape)
  spec[int(dims[0])] = FSDP_AXIS
  return P(*spec)


def state_shardings(abstract: Any, mesh: Mesh, min_size: int = FSDP_MIN_SIZE) -> Any:
  """NamedShardings for a state pytree of arrays/ShapeDtypeStructs by `param_spec`."""
  fsdp = mesh.shape[FSDP_AXIS]
  return jax.tree.map(lambda a: NamedSharding(mesh, param_spec(a.shape, fsdp, min_size)),
                      abstract)


def bytes_per_device(tree: Any) -> int:
  """Bytes of `tree`'s arrays held by the first local device."""
  device = jax.local_devices()[0]
  return int(sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards
                 if s.device == device))


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
