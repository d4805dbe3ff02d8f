"""Writing a counterfactual to disk: the image, its difference map and a JSON record."""

from __future__ import annotations

import json
import os
import tempfile

from PIL import Image

from segcft_jax.evaluation import figures
from segcft_jax.inference.model import Result

OUTPUTS = ("counterfactual.png", "difference.png", "result.json")


def check_outputs(out_dir: str, overwrite: bool) -> None:
  """Refuses an output directory that cannot be written, and existing outputs unless
  `overwrite`; run before the model loads, so a bad --out costs nothing.

  Raises:
    NotADirectoryError: `out_dir` (or a directory above it) is a file.
    PermissionError: nothing can be created there (tried: a temporary file).
    FileExistsError: outputs exist and not `overwrite`.
  """
  parent = os.path.abspath(out_dir)
  while not os.path.exists(parent):  # The nearest existing directory is where it is created.
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    where = "is a file" if parent == os.path.abspath(out_dir) else f"lies under the file {parent}"
    raise NotADirectoryError(f"Output directory {out_dir} {where}; give a directory with --out.")
  try:
    with tempfile.NamedTemporaryFile(dir=parent, prefix=".write_test_"):
      pass
  except OSError as e:
    raise PermissionError(f"Output directory {out_dir} cannot be written ({e.strerror or e} in "
                          f"{parent}); choose a writable place with --out.") from e
  existing = [f for f in OUTPUTS if os.path.exists(os.path.join(out_dir, f))]
  if existing and not overwrite:
    raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}; pass --overwrite "
                          f"(overwrite=True) to replace them.")


def write_outputs(result: Result, out_dir: str, overwrite: bool = False) -> list[str]:
  """counterfactual.png (uint8 grayscale), difference.png (x* - x, diverging colour map,
  symmetric range, colour bar) and result.json in `out_dir`; returns their paths."""
  check_outputs(out_dir, overwrite)
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f) for f in OUTPUTS]
  Image.fromarray(result.counterfactual, mode="L").save(paths[0])
  title = ", ".join(f"do({n} = {d['value']})" for n, d in result.interventions.items())
  figures.difference_map(paths[1], result.difference, f"{result.method}: {title}")
  with open(paths[2], "w") as f:
    json.dump(result.to_json(), f, indent=1)
    f.write("\n")
  return paths
