"""The frame the evaluation commands share: parse flags, run, print, write JSON.

A command (`shift_decomposition`, `gradient_conflict`) supplies its argparse parser (with an
`--out` flag), a `run(args) -> result` and the printed lines of a result; bad input raised
as ValueError or FileNotFoundError ends in one `error:` line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence


def run_command(p: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Any],
                lines: Callable[[argparse.Namespace, Any], list[str]],
                argv: Sequence[str] | None = None) -> int:
  """Runs a command; returns the exit status (0 ok, 1 bad input; argparse exits 2)."""
  args = p.parse_args(argv)
  logging.getLogger("absl").setLevel(logging.WARNING)
  try:
    result = run(args)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print("\n".join(lines(args, result)))
  if args.out:
    with open(args.out, "w") as fh:
      json.dump(result, fh, indent=1)
  return 0
