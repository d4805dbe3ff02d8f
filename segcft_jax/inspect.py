"""Command line: check a folder of images, masks and a table, and write the config declaring it.

  python -m segcft_jax.inspect --dir=DIR [--classes=background,lumen,plaque] [--labels=0,1,2]
      [--regions=proximal,mid,distal] [--graph="sex,age -> lumen_area,plaque_area"]
      [--intervene=lumen_area,plaque_area] [--image_size=64] [--write=configs/my_data.py]

Prints what the folder holds (counts, image sizes and bit depths, mask values and the classes
they name, each table column's statistics, each area at `--image_size`, the normalisation
every continuous variable gets, measured) and a config file over configs/folder.py for the
declared graph (`--write` saves it instead of printing it). Without `--graph` the table's
variables are roots and every area is a child of all of them. Then:
  python -m segcft_jax.main --config=configs/my_data.py
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Sequence

from absl import flags

from segcft_jax import entry
from segcft_jax.data import inspection


_ECHOED = ("dir", "image_size", "classes", "labels", "regions", "graph", "intervene", "name",
           "table")


def define_flags(argv: Sequence[str]) -> flags.FlagValues:
  fv = entry.new_flags(argv)
  flags.DEFINE_string("dir", None, "the folder (images/, masks/, [regions/], variables.csv)",
                      flag_values=fv)
  flags.DEFINE_integer("image_size", 64, "the model resolution the areas are measured at",
                       flag_values=fv)
  flags.DEFINE_list("classes", [], "class names of the mask values, background first "
                    "(default: class_<value>)", flag_values=fv)
  flags.DEFINE_list("labels", [], "mask value of each class (default: the values found)",
                    flag_values=fv)
  flags.DEFINE_list("regions", [], "names of the region labels 1..R of regions/",
                    flag_values=fv)
  flags.DEFINE_string("graph", "", "causal graph: 'parent, ... -> child, ...; ...'",
                      flag_values=fv)
  flags.DEFINE_list("intervene", [], "intervenable variables (default: the graph's areas)",
                    flag_values=fv)
  flags.DEFINE_string("name", "", "the config's name (default: the folder's name)",
                      flag_values=fv)
  flags.DEFINE_string("table", "variables.csv", "the variables table under --dir",
                      flag_values=fv)
  flags.DEFINE_string("write", "", "write the config file here instead of printing it",
                      flag_values=fv)
  flags.mark_flag_as_required("dir", flag_values=fv)
  return fv


def run(fv: flags.FlagValues) -> None:
  """Inspects the folder, prints the report and the config (or writes it)."""
  try:
    labels = tuple(int(v) for v in fv.labels)
  except ValueError:
    raise ValueError(f"--labels={','.join(fv.labels)}: integers, one per class.") from None
  found = inspection.inspect_folder(
      fv.dir, image_size=fv.image_size, classes=tuple(fv.classes), labels=labels,
      regions=tuple(fv.regions), table=fv.table,
      progress=lambda m: print(f"[inspect] {m}", file=sys.stderr))
  graph = inspection.parse_graph(fv.graph) if fv.graph else None
  variables, categories = inspection.declare(found, graph)
  intervenable = tuple(fv.intervene) or inspection.default_intervenable(found, variables)
  missing = [v for v in intervenable if v not in variables]
  if missing:
    raise ValueError(f"--intervene names {missing}, not in the graph ({list(variables)}).")
  name = fv.name or re.sub(r"[^A-Za-z0-9_]+", "_", os.path.basename(
      os.path.abspath(fv.dir))).strip("_") or "folder"
  given = [f"--{k}={','.join(v) if isinstance(v, list) else v}" for k in _ECHOED
           if (v := fv[k].value) not in ("", [], None) and fv[k].present]
  command = " ".join(["python -m segcft_jax.inspect", *map(shlex.quote, given)])
  text = inspection.config_file(found, variables, categories, intervenable,
                                image_size=fv.image_size, name=name, command=command)
  print(inspection.report(found, variables))
  if fv.write:
    with open(fv.write, "w") as f:
      f.write(text)
    print(f"wrote {fv.write}; run: python -m segcft_jax.main --config={fv.write}")
  else:
    print(f"\n# --- config file (save as configs/{name}.py) ---\n{text}")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
  return entry.run_command(define_flags, run, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
