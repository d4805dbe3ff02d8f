"""Makes the counterfactual of your own image with a trained workdir: "what would this image
look like if the heart were 10 % larger and nothing else changed?"

Example, one command (with a workdir trained by `python -m segcft_jax.main
--config=configs/synth_chest.py`):

  python -m segcft_jax.counterfactual --workdir=runs/synth_chest --method=seg
      --input=img.png --do left_lung_area=-15% --do heart_area=+10% --age=54 --sex=M
      --out=out_dir

It writes into --out: counterfactual.png (the image under the intervention), difference.png
(counterfactual minus input) and result.json (the parents before and after, where each
factual value came from, the oracle's areas of both images, any warnings).

* --input: a grey PNG (8- or 16-bit), .npy, DICOM or NIfTI image of any size, mapped to the
  model's size as the dataset's images are; --output_size=input maps the counterfactual
  back to the input's size and bit depth.
* --do VARIABLE=VALUE (repeatable): an absolute value in data units (heart_area=250, in
  pixels) or a change relative to the factual value (left_lung_area=-15%).
* --age and --sex (0/F/female or 1/M/male), or --parents=file.csv (a header of variable
  names, one row of values): what the image cannot show. Areas not given are measured by
  the oracle segmentor.
* --method: no, reg, seg or pos_seg, whichever the workdir has trained; a positional model
  (pos_seg) also needs --regions=map.png (labels 1..3).

Existing outputs are kept unless --overwrite. A bad input is answered with one line
`error: ...` and exit status 1 (2 for a bad flag), checked before any model loads (only a
relative target outside its support is known after the oracle has measured the image);
inputs far from the training data get a `warning: ...` line. Python API:
segcft_jax.inference.
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
  flags.DEFINE_string("workdir", None, "workdir trained by segcft_jax.main (e.g. "
                      "runs/synth_chest)", flag_values=fv)
  flags.DEFINE_string("method", "seg", "the model: no | reg | seg | pos_seg (no_cft, reg_cft, ...)",
                      flag_values=fv)
  flags.DEFINE_string("input", None, "grey image: PNG (8/16-bit), .npy, .dcm or .nii[.gz], any "
                      "size", flag_values=fv)
  flags.DEFINE_enum("output_size", "model", ["model", "input"], "counterfactual.png at the "
                    "model's size, or mapped back to the input's size and bit depth",
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
  flags.DEFINE_integer("seed", 0, "seed of the posterior sample (another plausible "
                       "counterfactual)", flag_values=fv)
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
  origins = {n: fv.parents for n in parents}
  for name in ("age", "sex"):
    if fv[name].value is not None:
      if name in parents:
        raise ValueError(f"{name} is given both in {fv.parents} and as --{name}.")
      parents[name], origins[name] = fv[name].value, f"--{name}"
  request = inference.check_request(config, fv.input, interventions, parents, fv.regions,
                                    origins)
  inference.check_outputs(fv.out, fv.overwrite)
  for line in request.warnings:
    print(f"warning: {line}", file=sys.stderr)
  entry.setup_jax(config.threefry_partitionable)
  model = inference.CounterfactualModel.load(fv.workdir, method, config)
  result = model.run(request, fv.seed)
  for line in result.warnings[len(request.warnings):]:
    print(f"warning: {line}", file=sys.stderr)
  paths = inference.write_outputs(result, fv.out, fv.overwrite, fv.output_size)
  print("\n".join(paths))
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
  return entry.run_command(define_flags, lambda fv: 0 if run(fv) else 1, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
