"""Command line: export the weights of a workdir trained before stages exported them.

  python -m segcft_jax.export --workdir=runs/synth_chest [--overwrite]

Every completed trained stage without `<stage>/weights/` gets them from its latest training
checkpoint, rebuilt with the config that stage ran with (`<stage>/config.json`); stages that
already have weights are left alone unless `--overwrite`. Nothing else in the workdir changes.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from segcft_jax import entry, workdir as workdir_lib
from segcft_jax.stages import legacy


def define_flags(argv: Sequence[str]) -> flags.FlagValues:
  fv = entry.new_flags(argv)
  flags.DEFINE_string("workdir", None, "the workdir to export", flag_values=fv)
  flags.DEFINE_boolean("overwrite", False, "export stages that already have weights again",
                       flag_values=fv)
  flags.mark_flag_as_required("workdir", flag_values=fv)
  return fv


def run(fv: flags.FlagValues) -> None:
  """Exports every stage that lacks weights, in pipeline order."""
  configs = [workdir_lib.read_config(fv.workdir, s) for s in legacy.TRAINED
             if workdir_lib.is_done(fv.workdir, s)]
  if configs:
    entry.setup_jax(configs[0].threefry_partitionable)
  done = legacy.export_workdir(fv.workdir, fv.overwrite)
  print(f"exported {', '.join(done)}" if done else f"nothing to export in {fv.workdir}")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
  return entry.run_command(define_flags, run, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
