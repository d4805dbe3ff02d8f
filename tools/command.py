"""The frame the research commands share: their flags, run, print, write JSON.

A command (`shift_decomposition`, `gradient_conflict`) supplies the definitions of its own
flags, a `run(flags) -> result` and the printed lines of a result; the frame adds `--out`
(JSON of the result) and answers bad input in one `error:` line (`segcft_jax.entry`).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from absl import flags

from segcft_jax import entry


def run_command(define: Callable[[flags.FlagValues], None],
                run: Callable[[flags.FlagValues], Any],
                lines: Callable[[flags.FlagValues, Any], list[str]], doc: str,
                argv: Sequence[str] | None = None) -> int:
  """Runs a command; returns the exit status (0 ok, 1 bad input, 2 bad flags).

  Args:
    define: adds the command's flags to a `FlagValues`.
    run: the command, given the parsed flags.
    lines: the printed lines of its result.
    doc: the text `--help` prints.
    argv: the arguments without the program name.
  """

  def define_all(argv):
    fv = entry.new_flags(argv)
    define(fv)
    flags.DEFINE_string("out", None, "write the results as JSON to this path", flag_values=fv)
    return fv

  def body(fv):
    result = run(fv)
    print("\n".join(lines(fv, result)))
    if fv.out:
      with open(fv.out, "w") as fh:
        json.dump(result, fh, indent=1)

  return entry.run_command(define_all, body, doc, argv)
