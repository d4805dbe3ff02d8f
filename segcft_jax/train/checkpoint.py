"""Orbax checkpoints of the train state and the data-iterator position.

Each checkpoint step holds three items: `state` (the `TrainState`, sharded as in memory),
`data` (the Grain iterator state of this process) and `meta` (JSON: step and the task's
architecture fingerprint). Restoring checks the fingerprint first, so a checkpoint written
for another architecture fails with a message instead of a shape error deep inside Orbax.
A failed restore never deletes or rewrites anything on disk.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Mapping

import grain
import jax
import orbax.checkpoint as ocp

from segcft_jax.train import metrics_log


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be used; the message says why and what to do."""


class Checkpointer:
  """Saves and restores `(state, data iterator)` under one directory.

  Args:
    directory: e.g. `<workdir>/segmentor/checkpoints`.
    fingerprint: JSON-able architecture description stored with every step.
    max_to_keep: number of most recent steps kept on disk.
  """

  def __init__(self, directory: str, fingerprint: Mapping[str, Any], max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.fingerprint = metrics_log.canonical(fingerprint)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iter: Any = None,
           meta: Mapping[str, Any] | None = None) -> None:
    """Saves `state`, this process's `data_iter` position and JSON `meta` at `step`."""
    meta = dict(meta or {}, step=int(step), fingerprint=self.fingerprint,
                process_count=jax.process_count())
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    self._manager.save(int(step), args=ocp.args.Composite(**items), force=True)

  def _fail(self, step: int, problem: str) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {self.directory}/{step} {problem} The checkpoints were left as they "
        f"are. To start this stage afresh, use another --workdir or move "
        f"{os.path.dirname(self.directory)} aside; to go back to an earlier checkpoint, move "
        f"the step directory {step} aside.")

  def read_meta(self, step: int) -> dict:
    """The JSON metadata saved with `step`."""
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # pylint: disable=broad-except
      raise self._fail(step, f"has no readable metadata ({type(e).__name__}: {e}).") from e
    return meta if isinstance(meta, dict) else {}

  def check_fingerprint(self, step: int) -> None:
    old = self.read_meta(step).get("fingerprint", {})
    if old != self.fingerprint:
      diff = "; ".join(metrics_log.differences(old, self.fingerprint)) or "unknown"
      raise self._fail(step, f"was written for a different model or stage ({diff}).")

  def restore(self, abstract_state: Any, data_iter: Any = None, step: int | None = None) -> Any:
    """Restores the latest (or given) step into the shapes/shardings of `abstract_state`.

    Args:
      abstract_state: pytree of `jax.ShapeDtypeStruct` (with shardings) or arrays.
      data_iter: a fresh Grain iterator whose position is restored in place.
      step: the step to restore (default: latest).

    Returns:
      The restored state.

    Raises:
      CheckpointError: architecture mismatch or unreadable / corrupt files.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    self.check_fingerprint(step)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    items = dict(state=ocp.args.StandardRestore(target))
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      raise self._fail(step, f"could not be read: it is corrupt or incompatible "
                             f"({type(e).__name__}: {str(e)[:300]}).") from e
    return restored.state

  def remove_incomplete(self) -> list[str]:
    """Removes the temporary directories of saves that never finished (an interrupted run;
    Orbax renames a save to its step only once it is complete); returns their names."""
    removed = []
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return removed
    for name in os.listdir(self.directory):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        removed.append(name)
    return removed

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
