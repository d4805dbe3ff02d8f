"""Command line: the counterfactual of one's own image with a trained workdir.

  python -m segcft_jax.counterfactual --workdir=runs/synth_chest --method=seg \
      --input=img.png --do left_lung_area=-15% --do heart_area=+10% --age=54 --sex=M \
      --out=out_dir

`--do VARIABLE=VALUE` (repeatable): VALUE absolute in data units (heart_area=250) or relative
to the factual value (left_lung_area=-15%). Factual parents come from `--parents=file.csv`
(header of variable names, one row of values) and/or `--age`/`--sex`; area variables not
given are measured by the oracle segmentor on the image; age and sex cannot be, so they are
required. Writes counterfactual.png, difference.png and result.json (parents before/after,
where each factual parent came from, oracle-measured areas of x and x*) into --out, and never
replaces them without --overwrite. Bad input stops with one line `error: ...` and exit code 1
(2 for unknown or missing flags), before any model is loaded (a relative target outside the
support, known only once the oracle has measured the factual area, fails after). Python API:
`segcft_jax.inference`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from segcft_jax import entry, inference
from segcft_jax.cft import methods
from segcft_jax.inference import requests


def define_flags(argv: Sequence[str]) -> flags.FlagValues:
  """The command's flags."""
  fv = entry.new_flags(argv)
  flags.DEFINE_string("workdir", None, "trained workdir (runs/<config>)", flag_values=fv)
  flags.DEFINE_string("method", "seg", "no | reg | seg | pos_seg (or no_cft, reg_cft, ...)",
                      flag_values=fv)
  flags.DEFINE_string("input", None, "single-channel 8-bit PNG of the model's size",
                      flag_values=fv)
  flags.DEFINE_multi_string("do", [], "intervention VARIABLE=VALUE, e.g. left_lung_area=-15% "
                            "or heart_area=250 (repeatable)", flag_values=fv)
  flags.DEFINE_string("parents", None, "CSV: header of variable names, one row of factual "
                      "values", flag_values=fv)
  flags.DEFINE_string("age", None, "factual age (years)", flag_values=fv)
  flags.DEFINE_string("sex", None, "factual sex: 0/F/female or 1/M/male", flag_values=fv)
  flags.DEFINE_string("regions", None, "region map PNG (labels 1..3; positional setting only)",
                      flag_values=fv)
  flags.DEFINE_string("out", None, "output directory", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "key of the posterior sample", flag_values=fv)
  flags.DEFINE_boolean("overwrite", False, "replace existing outputs", flag_values=fv)
  for name in ("workdir", "input", "out"):
    flags.mark_flag_as_required(name, flag_values=fv)
  return fv


def run(fv: flags.FlagValues) -> list[str]:
  """Validates everything, then loads the model and writes the outputs; returns their paths."""
  method = methods.method_key(fv.method)
  config = inference.load_config(fv.workdir, method)
  interventions = requests.parse_do(fv.do)
  parents = requests.read_parents_csv(fv.parents) if fv.parents else {}
  for name in ("age", "sex"):
    if fv[name].value is not None:
      if name in parents:
        raise ValueError(f"{name} is given both in {fv.parents} and as --{name}.")
      parents[name] = fv[name].value
  request = inference.check_request(config, fv.input, interventions, parents, fv.regions)
  inference.check_outputs(fv.out, fv.overwrite)
  entry.setup_jax(config.threefry_partitionable)
  model = inference.CounterfactualModel.load(fv.workdir, method, config)
  paths = inference.write_outputs(model.run(request, fv.seed), fv.out, fv.overwrite)
  print("\n".join(paths))
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
  return entry.run_command(define_flags, lambda fv: 0 if run(fv) else 1, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
