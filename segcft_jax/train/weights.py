"""A trained stage's exported weights: its EMA parameters as a params-only Orbax item.

    <stage>/weights/params/             Orbax PyTree of the parameters (no optimiser state)
    <stage>/weights/architecture.json   the JSON description that rebuilds the network

Training checkpoints (`train.checkpoint`) hold the whole train state, so reading them needs
the task and its optimiser to rebuild the state's shapes. What later stages, the evaluation
and inference need is only a network, so every trained stage also writes this item; loading
it needs nothing but the shapes Orbax stored with it. The architecture is checked against the
one the caller expects, so a changed config fails with the fields that differ instead of a
shape error.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp

from segcft_jax.train import distributed, metrics_log

DIRECTORY = "weights"
ITEM = "params"
ARCHITECTURE_FILE = "architecture.json"


class WeightsError(ValueError):
  """Exported weights exist but do not fit; the message says which fields differ."""


def directory(stage_dir: str) -> str:
  return os.path.join(os.path.abspath(stage_dir), DIRECTORY)


def exists(stage_dir: str) -> bool:
  return os.path.exists(os.path.join(directory(stage_dir), ARCHITECTURE_FILE))


def save(stage_dir: str, params: Any, architecture: Mapping[str, Any]) -> str:
  """Writes `params` and `architecture` (collective: every process calls it); returns the
  directory. The architecture file is written last, so its presence marks a complete export."""
  path = directory(stage_dir)
  checkpointer = ocp.StandardCheckpointer()
  try:
    checkpointer.save(os.path.join(path, ITEM), params, force=True)
    checkpointer.wait_until_finished()
  finally:
    checkpointer.close()
  if jax.process_index() == 0:
    metrics_log.write_json(os.path.join(path, ARCHITECTURE_FILE),
                           metrics_log.canonical(architecture))
  distributed.barrier(f"weights_{path}")
  return path


def read_architecture(stage_dir: str) -> dict:
  """The saved architecture of the stage in `stage_dir`."""
  path = os.path.join(directory(stage_dir), ARCHITECTURE_FILE)
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise WeightsError(f"{path} cannot be read ({type(e).__name__}: {e}); export the stage's "
                       f"weights again (python -m segcft_jax.export --workdir=<workdir> "
                       f"--overwrite) or retrain the stage.") from e


def load(stage_dir: str, expected: Mapping[str, Any],
         sharding: jax.sharding.Sharding | None = None) -> tuple[Any, dict]:
  """`(params, saved architecture)` of the stage in `stage_dir`.

  Args:
    stage_dir: e.g. `<workdir>/segmentor`.
    expected: architecture fields the caller builds its network from; each must match the
      saved one (the saved file may hold more, e.g. a regressor's target statistics).
    sharding: where the arrays go (default: this process's first device).

  Raises:
    FileNotFoundError: no exported weights (a workdir written before they existed: the
      message gives the command that exports them).
    WeightsError: another architecture, or unreadable files.
  """
  if not exists(stage_dir):
    workdir = os.path.dirname(os.path.abspath(stage_dir))
    raise FileNotFoundError(
        f"{stage_dir} has no exported weights ({DIRECTORY}/{ARCHITECTURE_FILE}). A workdir "
        f"trained before weights were exported converts once with: python -m "
        f"segcft_jax.export --workdir={workdir}")
  saved = read_architecture(stage_dir)
  diff = metrics_log.differences(saved, metrics_log.canonical(expected), new_keys_only=True)
  if diff:
    raise WeightsError(f"The weights in {directory(stage_dir)} were trained for another "
                       f"architecture ({'; '.join(diff)}); use the config they were trained "
                       f"with or retrain the stage.")
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  item = os.path.join(directory(stage_dir), ITEM)
  checkpointer = ocp.StandardCheckpointer()
  try:
    shapes = checkpointer.metadata(item).item_metadata
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                          shapes)
    params = checkpointer.restore(item, target)
  except Exception as e:  # pylint: disable=broad-except
    raise WeightsError(f"The weights in {item} could not be read: they are corrupt or "
                       f"incomplete ({type(e).__name__}: {str(e)[:300]}). Export them again "
                       f"(python -m segcft_jax.export --workdir=<workdir> --overwrite) or "
                       f"retrain the stage.") from e
  finally:
    checkpointer.close()
  return params, saved
