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
(2 for unknown flags), before any model is loaded (a relative target outside the support,
known only once the oracle has measured the factual area, fails after). Python API:
`segcft_jax.evaluation.user_cf.counterfactual_of_image`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from segcft_jax.evaluation import user_cf

# Problems with the user's input or workdir: printed as one line.
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


def parser() -> argparse.ArgumentParser:
  """The command's flags (argparse, so `main` can be called in-process by tests)."""
  p = argparse.ArgumentParser(prog="python -m segcft_jax.counterfactual",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="trained workdir (runs/<config>)")
  p.add_argument("--method", default="seg",
                 help="no | reg | seg | pos_seg (or no_cft, reg_cft, ...); default seg")
  p.add_argument("--input", required=True, help="single-channel 8-bit PNG of the model's size")
  p.add_argument("--do", action="append", default=[], metavar="VARIABLE=VALUE",
                 help="intervention, e.g. left_lung_area=-15%% or heart_area=250 (repeatable)")
  p.add_argument("--parents", help="CSV: header of variable names, one row of factual values")
  p.add_argument("--age", help="factual age (years)")
  p.add_argument("--sex", help="factual sex: 0/F/female or 1/M/male")
  p.add_argument("--regions", help="region map PNG (labels 1..3; positional setting only)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--seed", type=int, default=0, help="key of the posterior sample")
  p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
  return p


def run(args: argparse.Namespace) -> list[str]:
  """Validates everything, then loads the model and writes the outputs; returns their paths."""
  method = user_cf.method_key(args.method)
  config = user_cf.load_config(args.workdir, method)
  interventions = user_cf.parse_do(args.do)
  parents = user_cf.read_parents_csv(args.parents) if args.parents else {}
  for name in ("age", "sex"):
    if getattr(args, name) is not None:
      if name in parents:
        raise ValueError(f"{name} is given both in {args.parents} and as --{name}.")
      parents[name] = getattr(args, name)
  request = user_cf.check_request(config, args.input, interventions, parents, args.regions)
  user_cf.check_outputs(args.out, args.overwrite)
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_threefry_partitionable", bool(config.threefry_partitionable))
  model = user_cf.CounterfactualModel.load(args.workdir, method, config)
  return user_cf.write_outputs(model.run(request, args.seed), args.out, args.overwrite)


def main(argv: list[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input; argparse exits 2)."""
  args = parser().parse_args(argv)
  logging.getLogger("absl").setLevel(logging.WARNING)
  try:
    paths = run(args)
  except _USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print("\n".join(paths))
  return 0


if __name__ == "__main__":
  sys.exit(main())
