"""Makes a counterfactual dataset from a split of a trained workdir's dataset.

  python -m segcft_jax.generate --workdir=runs/synth_chest --method=seg --split=test \\
      --do heart_area=-15% --do left_lung_area=-30%:+30%:15 --per_image=4 --out=cf_test

Every example of the split gets every `--do` rule (a value, a relative change, or a sweep
FROM%:TO%:STEP) and `--per_image` random ones; its factual parents are the dataset's own.
`--input_dir=DIR --parents=table.csv` takes one's own images instead (any size and format;
the table's `file` column names them; areas not given are measured by the oracle).
Writes `<out>/images/*.png` and `<out>/counterfactuals.csv` (file, rule, every variable
before / after, the oracle's areas of x and x*) shard by shard: an interrupted run re-run
with the same command continues where it stopped, and the files depend only on the flags.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import jax
import numpy as np
from absl import flags

from segcft_jax import entry, inference
from segcft_jax.cft import methods
from segcft_jax.data import datasets
from segcft_jax.evaluation.interventions import in_support
from segcft_jax.inference import batched, folder_inputs, generation
from segcft_jax.scm.graph import Graph


def define_flags(argv: Sequence[str]) -> flags.FlagValues:
  """The command's flags."""
  fv = entry.new_flags(argv)
  flags.DEFINE_string("workdir", None, "trained workdir (runs/<config>)", flag_values=fv)
  flags.DEFINE_string("method", "seg", "no | reg | seg | pos_seg", flag_values=fv)
  flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "the dataset's split",
                    flag_values=fv)
  flags.DEFINE_multi_string("do", [], "rule VARIABLE=VALUE: 250, -15% or -30%:+30%:15 "
                            "(repeatable)", flag_values=fv)
  flags.DEFINE_integer("per_image", 0, "random interventions per example (a variable and a "
                       "change of config.evaluate.relative_changes)", flag_values=fv)
  flags.DEFINE_integer("num_examples", 0, "the split's first N examples (0: all)",
                       flag_values=fv)
  flags.DEFINE_string("out", None, "output directory", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "seed of the random rules and of the posterior samples",
                       flag_values=fv)
  flags.DEFINE_integer("shard_size", 256, "examples per shard (the unit of resumption)",
                       flag_values=fv)
  flags.DEFINE_integer("batch_size", 0, "images per step (0: config.evaluate.batch_size)",
                       flag_values=fv)
  flags.DEFINE_string("input_dir", None, "a folder of one's own images (PNG 8/16-bit, .npy, "
                      "DICOM, NIfTI, any size) instead of --split", flag_values=fv)
  flags.DEFINE_string("parents", None, "with --input_dir: CSV with a 'file' column and the "
                      "variables an image cannot show (e.g. age, sex)", flag_values=fv)
  flags.DEFINE_float("max_skip_fraction", 0.1, "with --input_dir: share of unreadable images "
                     "that are skipped before the run stops", flag_values=fv)
  flags.DEFINE_boolean("overwrite", False, "write into an --out of another run",
                       flag_values=fv)
  for name in ("workdir", "out"):
    flags.mark_flag_as_required(name, flag_values=fv)
  return fv


def _split(config, workdir: str, split: str, num_examples: int, variables: Sequence[str],
           with_regions: bool):
  """(images uint8 [N, S, S], {variable: [N]}, regions [N, S, S] or None) of the split."""
  source = datasets.open_split(datasets.prepared_builder(config.data, workdir), split)
  n = len(source) if not num_examples else min(num_examples, len(source))
  records = [source[i] for i in range(n)]
  if not records:
    return np.zeros((0, 1, 1), np.uint8), {}, None
  images = np.stack([r["image"][..., 0] for r in records])
  parents = {v: np.array([float(r[v]) for r in records]) for v in variables}
  regions = np.stack([r["regions"] for r in records]) if with_regions else None
  return images, parents, regions


def _folder(fv: flags.FlagValues, config, model: batched.Model):
  """(images, {variable: [N]}, None) of `--input_dir`: given parents from `--parents`, the
  areas not given measured by the oracle; `<out>/inputs.csv` maps examples to files."""
  if model.trained.uses_regions:
    raise ValueError("--input_dir needs region maps for a positional model; use --split.")
  graph = model.trained.graph
  names, images, given, skipped = folder_inputs.load(
      fv.input_dir, model.size, graph, tuple(model.trained.structures), fv.parents,
      tuple(config.data.get("intensity_percentiles", None) or ()), fv.max_skip_fraction)
  for line in skipped[:10]:
    print(f"warning: skipping {line}", file=sys.stderr)
  if len(skipped) > 10:
    print(f"warning: ... and {len(skipped) - 10} more unreadable images", file=sys.stderr)
  if fv.num_examples:
    names, images = names[:fv.num_examples], images[:fv.num_examples]
    given = {v: a[:fv.num_examples] for v, a in given.items()}
  measured = model.measure(images)
  parents = {v: given[v] if v in given else measured[v] for v in graph.order}
  os.makedirs(fv.out, exist_ok=True)
  with open(os.path.join(fv.out, "inputs.csv"), "w") as f:
    f.write("example,file\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
  return images, parents, None


def run(fv: flags.FlagValues) -> None:
  """Validates the flags and the workdir, then writes the counterfactuals (prints the CSV's
  path)."""
  method = methods.method_key(fv.method)
  config = inference.load_config(fv.workdir, method)
  intervenable = tuple(config.scm.intervenable)
  rules = generation.parse_rules(fv.do, intervenable)
  if not rules and fv.per_image <= 0:
    raise ValueError("No intervention: give --do rules and/or --per_image=K.")
  if fv.shard_size < 1 or fv.per_image < 0 or fv.num_examples < 0:
    raise ValueError("--shard_size must be >= 1, --per_image and --num_examples >= 0.")
  graph = Graph.from_config(config.scm)
  for rule in (r for r in rules if not r.relative):
    if not in_support(graph[rule.variable], np.array([rule.value]))[0]:
      raise ValueError(f"--do {rule.variable}={rule.text} is outside the support of "
                       f"{rule.variable}.")
  entry.setup_jax(config.threefry_partitionable)
  # The noise depends on the global batch (a multiple of the devices): part of the settings.
  wanted = fv.batch_size or int(config.evaluate.batch_size)
  batch = -(-wanted // jax.device_count()) * jax.device_count()
  source = (dict(input_dir=os.path.abspath(fv.input_dir), parents=fv.parents)
            if fv.input_dir else dict(split=fv.split))
  settings = dict(workdir=fv.workdir, method=method, **source, do=list(fv.do),
                  per_image=fv.per_image, num_examples=fv.num_examples, seed=fv.seed,
                  shard_size=fv.shard_size, batch_size=batch)
  generation.check_out_dir(fv.out, settings, fv.overwrite)
  model = batched.load(fv.workdir, method, batch)
  if fv.input_dir:
    images, parents, regions = _folder(fv, config, model)
  else:
    images, parents, regions = _split(config, fv.workdir, fv.split, fv.num_examples,
                                      model.trained.graph.order, model.trained.uses_regions)
  if not len(images):
    raise ValueError(f"The {fv.split} split of {fv.workdir}'s dataset is empty.")
  items = generation.plan(len(images), rules, fv.per_image, intervenable,
                          tuple(config.evaluate.relative_changes), fv.seed)
  print(generation.Generator(model, fv.out, settings, fv.shard_size).run(
      items, images, parents, regions))


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
  return entry.run_command(define_flags, run, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
