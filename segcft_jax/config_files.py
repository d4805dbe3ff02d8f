"""Loading `configs/<name>.py[:variant]` files from Python (the CLI uses config_flags)."""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def load_module(path: str):
  """Imports a config file by path (it need not be on `sys.path`)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Config file {path} does not exist.")
  spec = importlib.util.spec_from_file_location(
      f"_segcft_config_{os.path.splitext(os.path.basename(path))[0]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shipped() -> dict[str, tuple[str, ...]]:
  """{`configs/<name>.py`: its variants} of the config files in the repository."""
  directory = os.path.join(_repo_root(), "configs")
  out = {}
  for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
    if name.endswith(".py") and not name.startswith("_"):
      try:
        out[f"configs/{name}"] = tuple(load_module(os.path.join(directory, name)).VARIANTS)
      except Exception:  # pylint: disable=broad-except  (help text only)
        continue
  return out


def template(name: str) -> str:
  """The path of `configs/<name>` in the repository holding this package (an editable
  install), for config files written elsewhere that build on a shipped one."""
  path = os.path.join(_repo_root(), "configs", name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: config templates are read from the "
                            f"repository; install it with pip install -e.")
  return path


def resolve(spec: str) -> str:
  """`path[:variant]` with a relative path found from the current directory or, failing
  that, from the repository root (so `configs/x.py` works from anywhere)."""
  path, sep, arg = spec.partition(":")
  if os.path.exists(path) or os.path.isabs(path):
    found = path
  else:
    root = _repo_root()
    found = os.path.join(root, path)
    if not os.path.exists(found):
      raise FileNotFoundError(f"Config file {path} not found: looked in {os.getcwd()} and in "
                              f"{root}. Give its path, e.g. --config=configs/synth_chest.py.")
  if not os.path.exists(found):
    raise FileNotFoundError(f"Config file {path} does not exist.")
  return found + sep + arg


def load(spec: str) -> ml_collections.ConfigDict:
  """`load("configs/synth_chest.py:quick")` -> the locked config of that variant."""
  path, _, arg = spec.partition(":")
  return load_module(path).get_config(arg or None)


def default_workdir(config: ml_collections.ConfigDict) -> str:
  """`runs/<name>` for the default variant, `runs/<name>_<variant>` otherwise."""
  suffix = "" if config.variant == "default" else f"_{config.variant}"
  return os.path.join("runs", f"{config.name}{suffix}")
