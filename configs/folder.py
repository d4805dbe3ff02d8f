"""folder: your own images, masks and variables table, every stage (segcft_jax/data/folder.py).

The template's fields are the folder's `directory`, the mask `classes` (first = background)
with their `labels`, optional `regions`, the `image_size`, the causal graph and the
intervenable variables. As shipped it declares a chest-radiograph folder (masks 0 background,
1 left lung, 2 right lung, 3 heart; columns `sex` 0/1 and `age`; the synth_chest graph):
  python -m segcft_jax.main --config=configs/folder.py --config.data.directory=DIR
  python -m segcft_jax.main --config=configs/folder.py:quick --config.data.directory=DIR
For any other folder, let the inspector write the config file (it measures what the graph
needs and declares the classes it finds):
  python -m segcft_jax.data.inspect DIR --classes=background,lumen,plaque \\
      --graph="sex,age -> lumen_area,plaque_area" --write=configs/my_data.py
  python -m segcft_jax.main --config=configs/my_data.py

Every continuous variable declared with `mean=None, std=None` is normalised by statistics the
data stage measures on the train split (`scm/measured.py`). `<class>_area` (and, with regions,
`<class>_area_<region>`) variables are computed from the masks; every other variable of the
graph is a column of `variables.csv`. An intervenable regional area selects the positional
setting: cft_pos_seg (Pos-Seg-CFT) joins cft_reg and cft_seg.

Variants (the argument after the colon): `default` (the CPU-sized synth_chest recipe at the
declared size) and `quick` (32x32, the phantom recipe's tiny networks and schedules; smoke
runs). Override any field with `--config.a.b=value`.
"""

from typing import Any, Mapping

import ml_collections

from segcft_jax.data import folder
from segcft_jax.evaluation.config import EVALUATE_QUICK, evaluate_config
from segcft_jax.train import defaults

VARIANTS = ("default", "quick")

# The shipped declaration: a chest-radiograph folder with the synth_chest graph.
DATA = dict(
    directory="",  # Required: --config.data.directory=DIR
    image_size=64,
    classes=("background", "left_lung", "right_lung", "heart"),
    labels=(),  # mask values of the classes; () = 0, 1, 2, ...
    regions=(),  # names of region labels 1..R in regions/ (positional setting)
    categories={},  # text columns: {column: (category 0, category 1, ...)}
    intensity_percentiles=(0.5, 99.5),  # () keeps 8-bit values as stored
)
_AREA = dict(type="continuous", parents=("sex", "age"), norm="log_standard", mean=None,
             std=None)
VARIABLES = {
    "sex": dict(type="binary", parents=()),
    "age": dict(type="continuous", parents=(), norm="standard", mean=None, std=None),
    "left_lung_area": _AREA, "right_lung_area": _AREA, "heart_area": _AREA,
}
INTERVENABLE = ("left_lung_area", "right_lung_area", "heart_area")


def _data_section(data: Mapping[str, Any], variables: Mapping[str, Any]
                  ) -> ml_collections.ConfigDict:
  fields = dict(name="folder", data_dir="", table="variables.csv", stem_column="stem",
                split_fractions=(0.8, 0.1, 0.1), max_skip_fraction=0.05, seed=None)
  fields.update({k: v for k, v in DATA.items()})
  fields.update(data)
  computed = set(folder.area_names(fields["classes"], fields["regions"]))
  fields["columns"] = tuple(v for v in variables if v not in computed)
  fields["categories"] = ml_collections.ConfigDict(
      {k: tuple(v) for k, v in dict(fields["categories"]).items()})
  return ml_collections.ConfigDict(fields)


def make_config(arg: str | None, *, data: Mapping[str, Any], variables: Mapping[str, Any],
                intervenable: tuple[str, ...], name: str = "folder"
                ) -> ml_collections.ConfigDict:
  """The locked config of variant `arg` for a folder dataset.

  Args:
    arg: one of VARIANTS (None = default).
    data: fields of the `data` section over the template's DATA (directory, classes, ...).
    variables: the graph, `{name: dict(type, parents, norm, ...)}` (scm.graph's format).
    intervenable: the variables fine-tuning and the evaluation intervene on.
    name: the config's name (the default workdir is runs/<name>[_<variant>]).
  """
  variables = {k: dict(v) for k, v in variables.items()}
  regional = [v for v in intervenable if any(v.endswith(f"_area_{r}")
                                             for r in data.get("regions", ()))]
  positional = bool(regional)
  cft_stages = ("cft_reg", "cft_seg") + (("cft_pos_seg",) if positional else ())
  c = defaults.new_config(name, arg, VARIANTS, stages=(
      "data", "segmentor", "oracle", "regressor", "pgm", "hvae", *cft_stages, "evaluate"))
  c.setting = "positional" if positional else "global"
  c.cft_variables = tuple(intervenable)
  c.data = _data_section(data, variables)
  c.segmentor, c.oracle = defaults.segmentor_pair(
      num_steps=400, widths=(8, 16, 32), oracle_widths=(12, 24, 48), batch_size=16,
      log_every=50, eval_batch_size=32)
  c.scm = ml_collections.ConfigDict(dict(variables=variables, intervenable=tuple(intervenable)))
  c.regressor = defaults.regressor_section(tuple(intervenable))
  c.pgm = defaults.pgm_section()
  c.hvae = defaults.hvae_section(parents=tuple(variables), num_steps=1000)
  # An area that can be 0 (a plaque absent from a region) needs the relative-L1 floor; the
  # positional setting balances its structures' gradients (as configs/synth_vessel.py).
  zeros = any(variables[v].get("norm") == "log1p_standard" for v in intervenable)
  for stage in cft_stages:
    c[stage] = defaults.cft_section(distance_floor=5.0 if zeros else 1.0,
                                    balance="structure" if positional else "")
  c.evaluate = evaluate_config(area_error="mae" if zeros else "mape")
  quick = None
  if c.variant == "quick":
    quick = {**{k: v for k, v in defaults.phantom_quick(cft_stages).items()
                if not k.startswith("data.num_")}, **EVALUATE_QUICK}
  return defaults.finish(c, quick)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  return make_config(arg, data=DATA, variables=VARIABLES, intervenable=INTERVENABLE)
