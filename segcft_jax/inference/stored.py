"""What inference reads from a trained workdir — a stage's config and the exported weights of
the stages a counterfactual needs — checked before any model is loaded.

    <workdir>/<method stage>/config.json   the config every network is rebuilt from
    <workdir>/{pgm, oracle, <method stage>}/weights/   architecture.json + Orbax params

A damaged or edited workdir would otherwise surface deep inside Orbax or TensorStore (and a
failed asynchronous restore leaves its pending reads printing tracebacks at exit); each check
here fails instead with one sentence naming the file, the stage and what repairs it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import tensorstore as ts

from segcft_jax import builders
from segcft_jax import config_files
from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods as methods_lib
from segcft_jax.evaluation import trained as trained_lib
from segcft_jax.scm.graph import Graph
from segcft_jax.train import metrics_log, weights

# An Orbax item's JSON records (the tree, its save, the shardings) and the zarr files that
# mark one stored parameter array each (zarr v2, v3).
_TREE_FILE = "_METADATA"
_JSON_FILES = (_TREE_FILE, "_CHECKPOINT_METADATA", "_sharding")
_ARRAY_FILES = (".zarray", "zarr.json")


def _first_line(e: BaseException, limit: int = 240) -> str:
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  text = lines[0] if lines else type(e).__name__
  return text if len(text) <= limit else text[:limit] + "..."


def rerun_command(config: ml_collections.ConfigDict, workdir: str, stage: str) -> str:
  """The command that trains `stage` again, with the config file the workdir came from."""
  spec = "<its config file>"
  try:
    config_files.template(f"{config.name}.py")
    variant = config.get("variant")
    spec = f"configs/{config.name}.py" + (f":{variant}" if variant not in (None, "default")
                                          else "")
  except (FileNotFoundError, AttributeError, KeyError):
    pass  # A config file of the user's own: its name is not recorded.
  return f"python -m segcft_jax.main --config={spec} --workdir={workdir} --stages={stage}"


def _retrain(config, workdir: str, stage: str) -> str:
  return (f"move {workdir_lib.stage_dir(workdir, stage)} aside and re-run that stage: "
          f"{rerun_command(config, workdir, stage)}")


def load_config(workdir: str, method: str) -> ml_collections.ConfigDict:
  """The config saved by the stage of `method` (a `cft.methods` key), its `config.json`,
  checked to describe networks this package can build.

  Raises:
    FileNotFoundError: no such workdir, or the method's stage has not completed there.
    NotADirectoryError: `workdir` is a file.
    ValueError: the config.json is not valid JSON or not a config of this pipeline.
  """
  if not os.path.exists(workdir):
    raise FileNotFoundError(f"Workdir {workdir} does not exist.")
  if not os.path.isdir(workdir):
    raise NotADirectoryError(f"Workdir {workdir} is a file, not a directory; give the "
                             f"directory a training run wrote (e.g. runs/synth_chest).")
  stage = methods_lib.BY_KEY[method].stage
  if not workdir_lib.is_done(workdir, stage):
    trained = [m.key for m in methods_lib.METHODS if workdir_lib.is_done(workdir, m.stage)]
    raise FileNotFoundError(f"Method {method} (stage {stage}) has not been trained in "
                            f"{workdir}; trained there: {', '.join(trained) or 'none'}.")
  config = workdir_lib.read_config(workdir, stage)  # Invalid JSON: a message naming the file.
  try:
    Graph.from_config(config.scm)
    trained_lib.locate(config, tuple(config.scm.intervenable))
    int(config.data.image_size)
    builders.make_dscm(config)
    builders.make_unet(config, "oracle")
    _architectures(config, method)
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    raise ValueError(f"{workdir_lib.config_path(workdir, stage)} does not describe networks "
                     f"this package can build ({type(e).__name__}: {_first_line(e)}); restore "
                     f"it as the stage wrote it, or {_retrain(config, workdir, stage)}.") from e
  return config


def _architectures(config, method: str) -> dict[str, dict]:
  """{stage: the architecture `config` builds for it} of the weights a counterfactual of
  `method` loads: the PGM, the oracle and the method's HVAE."""
  return {"pgm": builders.pgm_architecture(config),
          "oracle": builders.unet_architecture(config, "oracle"),
          methods_lib.BY_KEY[method].stage: builders.hvae_architecture(config)}


def check_weights(config: ml_collections.ConfigDict, workdir: str, method: str) -> None:
  """Checks, without building a model, that every stage `method` needs has completed and
  that its weights fit `config` and read back (every array, decoded).

  Raises:
    FileNotFoundError: a stage has not completed, or has no exported weights.
    ValueError: weights of another architecture, or damaged files.
  """
  stage = methods_lib.BY_KEY[method].stage
  for needed in ("pgm", "hvae", "oracle"):
    if not workdir_lib.is_done(workdir, needed):
      raise FileNotFoundError(f"A counterfactual needs the {needed!r} stage, which has not "
                              f"completed in {workdir}; run it: "
                              f"{rerun_command(config, workdir, needed)}.")
  for name, expected in _architectures(config, method).items():
    _check_stage(config, workdir, name, expected, stage)


def _check_stage(config, workdir: str, stage: str, expected: dict, method_stage: str) -> None:
  stage_dir = workdir_lib.stage_dir(workdir, stage)
  if not weights.exists(stage_dir):
    raise FileNotFoundError(f"{stage_dir} has no exported weights ({weights.DIRECTORY}/"
                            f"{weights.ARCHITECTURE_FILE}); export them from its checkpoints: "
                            f"python -m segcft_jax.export --workdir={workdir}")
  path = os.path.join(weights.directory(stage_dir), weights.ARCHITECTURE_FILE)
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(damaged(config, workdir, stage, path, e)) from e
  diff = metrics_log.differences(saved, metrics_log.canonical(expected), new_keys_only=True)
  if diff:
    config_file = workdir_lib.config_path(workdir, method_stage)
    raise ValueError(
        f"The {stage} weights in {weights.directory(stage_dir)} were trained for another "
        f"architecture than {config_file} describes ({'; '.join(diff[:3])}"
        f"{f'; {len(diff) - 3} more' if len(diff) > 3 else ''}); restore that config.json as "
        f"the stage wrote it, or {_retrain(config, workdir, stage)}.")
  item = os.path.join(weights.directory(stage_dir), weights.ITEM)
  try:
    _read_item(item)
  except Exception as e:  # pylint: disable=broad-except  (TensorStore raises anything)
    raise ValueError(damaged(config, workdir, stage, item, e)) from e


def _read_item(item: str) -> None:
  """Reads an Orbax item as its restore would, but one file and one array at a time and
  synchronously: a truncated or corrupt file raises here, with nothing left pending."""
  if not os.path.isfile(os.path.join(item, _TREE_FILE)):
    raise ValueError(f"{_TREE_FILE} is missing")
  extra = os.path.join(item, "array_metadatas")
  names = [*_JSON_FILES, *(os.path.join("array_metadatas", n) for n in (
      sorted(os.listdir(extra)) if os.path.isdir(extra) else ()))]
  for name in names:
    if os.path.exists(os.path.join(item, name)):
      try:
        with open(os.path.join(item, name)) as f:
          json.load(f)
      except ValueError as e:
        raise ValueError(f"{name}: {e}") from e
  if not os.path.exists(os.path.join(item, "manifest.ocdbt")):
    return  # Not an OCDBT item: Orbax's own restore is the only reader of its arrays.
  kvstore: dict[str, Any] = {"driver": "ocdbt", "base": f"file://{os.path.abspath(item)}"}
  keys = ts.KvStore.open(kvstore).result().list().result()
  for key in sorted(k.decode() for k in keys):
    array, _, file = key.rpartition("/")
    if file in _ARRAY_FILES:
      driver = "zarr" if file == ".zarray" else "zarr3"
      try:
        store = ts.open({"driver": driver, "kvstore": dict(kvstore, path=f"{array}/")}).result()
        store.read().result()
      except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f"array {array}: {_first_line(e)}") from e


def damaged(config, workdir: str, stage: str, path: str, error: BaseException) -> str:
  """The one-line message for unreadable weights of `stage` at `path`."""
  checkpoints = os.path.join(workdir_lib.stage_dir(workdir, stage), "checkpoints")
  export = (f"export them again from the stage's checkpoints (python -m segcft_jax.export "
            f"--workdir={workdir} --overwrite), or " if os.path.isdir(checkpoints)
            and os.listdir(checkpoints) else "")
  return (f"The {stage} weights in {path} are damaged ({_first_line(error)}): {export}"
          f"{_retrain(config, workdir, stage)}.")


def stage_of(error: BaseException, workdir: str, method: str) -> str | None:
  """Which needed stage's weights an error names (by its weights directory), or None."""
  for stage in ("pgm", "oracle", methods_lib.BY_KEY[method].stage):
    if weights.directory(workdir_lib.stage_dir(workdir, stage)) in str(error):
      return stage
  return None
