"""The package's imports run one way (SPEC §6): parsed from the source with `ast`.

    data, models, scm, train               import nothing above them
    workdir, builders                      the workdir's layout; networks from config
    cft, evaluation, inference             never import stages (nor the entry points)
    stages                                 the pipeline
    entry points (main, counterfactual, export, inspect, entry)

`tools/` (research diagnostics) may import anything; nothing in the package imports it.
No function imports a module of the package: an import inside a function hides a cycle.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "segcft_jax")

# Each layer's units may import their own layer and the layers before it in this list.
LAYERS = (
    ("data", "models", "scm", "train", "config_files"),
    ("workdir",),
    ("builders",),
    ("cft",),
    ("evaluation",),
    ("inference",),
    ("stages",),
    ("entry", "main", "counterfactual", "export", "inspect", "generate"),
)
LEVEL = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _modules():
  """(unit, path, tree) of every module of the package (unit: its first name below it)."""
  for folder, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, PACKAGE)
        unit = rel.split(os.sep)[0].removesuffix(".py")
        if unit == "__init__":
          continue
        with open(path) as f:
          yield unit, rel, ast.parse(f.read())


def _imports(tree):
  """(imported module, inside a function?) for every import of the package or of tools."""
  inside = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      inside.update(id(n) for n in ast.walk(node) if n is not node)
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    for n in names:
      if n.split(".")[0] in ("segcft_jax", "tools"):
        yield n, id(node) in inside


def _target(name):
  """The unit `segcft_jax.cft.task` belongs to ('cft'); None for the package itself."""
  parts = name.split(".")
  if parts[0] == "tools":
    return "tools"
  return parts[1] if len(parts) > 1 else None


def test_every_unit_is_placed_in_a_layer():
  units = {unit for unit, _, _ in _modules()}
  assert units <= set(LEVEL), f"units not in LAYERS: {sorted(units - set(LEVEL))}"


def test_imports_run_one_way_and_never_from_inside_a_function():
  upward, local = [], []
  for unit, path, tree in _modules():
    for name, in_function in _imports(tree):
      target = _target(name)
      if in_function:
        local.append(f"{path}: {name}")
      if target == "tools" or (target in LEVEL and LEVEL[target] > LEVEL[unit]):
        upward.append(f"{path} ({unit}) imports {name}")
  assert not upward, "\n".join(upward)
  assert not local, "\n".join(local)


@pytest.mark.parametrize("lower", ["cft", "evaluation", "inference", "builders", "data",
                                   "models", "scm", "train"])
def test_no_library_layer_imports_the_stages(lower):
  offenders = [f"{path}: {name}" for unit, path, tree in _modules() if unit == lower
               for name, _ in _imports(tree) if _target(name) == "stages"]
  assert not offenders, offenders
