"""Writing a counterfactual to disk: the image, its difference map and a JSON record."""

from __future__ import annotations

import json
import os

from PIL import Image

from segcft_jax.evaluation import figures
from segcft_jax.inference.model import Result

OUTPUTS = ("counterfactual.png", "difference.png", "result.json")


def check_outputs(out_dir: str, overwrite: bool) -> None:
  """Refuses to replace existing outputs unless `overwrite`."""
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
