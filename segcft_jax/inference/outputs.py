"""Writing a counterfactual to disk: the image, its difference map and a JSON record."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np
from PIL import Image

from segcft_jax.data import images
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
  existing = [f for f in (*OUTPUTS, "counterfactual.npy")
              if os.path.exists(os.path.join(out_dir, f))]
  if existing and not overwrite:
    raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}; pass --overwrite "
                          f"(overwrite=True) to replace them.")


def write_outputs(result: Result, out_dir: str, overwrite: bool = False,
                  output_size: str = "model") -> list[str]:
  """counterfactual.png, difference.png (x* - x, diverging colour map, symmetric range,
  colour bar) and result.json in `out_dir`; returns their paths.

  `output_size="model"`: counterfactual.png is the model's uint8 image. `"input"`: it is
  mapped back to the input's size and type (`data.images.from_model_image`): an 8- or 16-bit
  PNG like an 8- or 16-bit input; for other types an 8-bit PNG plus counterfactual.npy with
  the values in the input's units and dtype.
  """
  if output_size not in ("model", "input"):
    raise ValueError(f"output_size={output_size!r}: use 'model' or 'input'.")
  check_outputs(out_dir, overwrite)
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f) for f in OUTPUTS]
  image = result.counterfactual
  if output_size == "input" and result.geometry is not None:
    image = images.from_model_image(image, result.geometry)
    if image.dtype not in (np.uint8, np.uint16):
      paths.append(os.path.join(out_dir, "counterfactual.npy"))
      np.save(paths[-1], image)
      image = images.from_model_image(result.counterfactual, dataclasses.replace(
          result.geometry, dtype="uint8", lo=0.0, hi=255.0))
  Image.fromarray(image).save(paths[0])
  title = ", ".join(f"do({n} = {d['value']})" for n, d in result.interventions.items())
  figures.difference_map(paths[1], result.difference, f"{result.method}: {title}")
  with open(paths[2], "w") as f:
    json.dump(result.to_json(), f, indent=1)
    f.write("\n")
  return paths
