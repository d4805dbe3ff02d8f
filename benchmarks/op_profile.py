"""Where a hot step spends its time: XLA ops of one step, grouped by kind, from a profiler trace.

  python benchmarks/op_profile.py --config=morphomnist --step=train [--steps=5] [--top=25]
      [--trace_dir=<temp dir>/segcft_profile]

Builds the step exactly as `benchmarks/steps.py` does (random parameters, one random batch),
compiles it, runs 3 untimed steps, then traces `--steps` steps with `jax.profiler.trace`
(Perfetto JSON). On CPU it sets `--xla_cpu_enable_xprof_traceme=true` so that every XLA
thunk (fusion, convolution, dot, copy, ...) appears as an event. Events are grouped by name
without the trailing `.N` (`ynn_fusion.566` -> `ynn_fusion`: YNNPACK convolutions / matmuls;
`multiply_erf_fusion`: the GELU; `transpose_copy_fusion`: layout changes; ...) and printed as
ms per step, share of the op time and count per step. Op times of concurrent threads add up,
so the total can exceed the wall time of a step. The trace stays in `--trace_dir` for
Perfetto / TensorBoard.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

if "--xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_enable_xprof_traceme=true").strip()

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

from benchmarks import steps as bench_steps
from segcft_jax.train import sharding
# pylint: enable=g-import-not-at-top,wrong-import-position

_HOST_EVENTS = ("ThunkExecutor", "$", "Pjit", "Common", "SlinkyThreadPool")


def op_times(trace_file: str) -> tuple[collections.Counter, collections.Counter]:
  """Total microseconds and counts of XLA op events per kind in a Perfetto trace."""
  with gzip.open(trace_file) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(_HOST_EVENTS):
      kind = re.sub(r"\.\d+$", "", e["name"])
      total[kind] += e.get("dur", 0)
      count[kind] += 1
  return total, count


def main(argv):
  del argv
  f = flags.FLAGS
  bench_steps.configure_jax(False, "")
  mesh = sharding.make_mesh(1)
  config = bench_steps.bench_config(f.config, f.step)
  if config is None:
    raise app.UsageError(f"{f.step} does not apply to {f.config}")
  batch = bench_steps.default_batch(config, f.step)
  bench = bench_steps.build(config, f.step, bench_steps.synthetic_batch(config, batch), mesh)
  compiled = bench.jitted.lower(*bench.args).compile()
  args, bench.args = bench.args, None
  run = lambda args, i: bench.next_args(args, jax.block_until_ready(compiled(*args)), i)
  for i in range(3):
    args = run(args, i)
  start = time.perf_counter()
  with jax.profiler.trace(f.trace_dir, create_perfetto_trace=True):
    for i in range(f.steps):
      args = run(args, i)
  wall = (time.perf_counter() - start) / f.steps
  trace = sorted(glob.glob(os.path.join(f.trace_dir, "**", "*.trace.json.gz"), recursive=True),
                 key=os.path.getmtime)[-1]
  total, count = op_times(trace)
  op_total = sum(total.values())
  print(f"{f.config} {f.step} (batch {batch}): {1e3 * wall:.0f} ms/step wall under the "
        f"profiler; XLA op time {op_total / f.steps / 1e3:.0f} ms/step; trace {trace}")
  for kind, us in total.most_common(f.top):
    print(f"{us / f.steps / 1e3:9.2f} ms/step {100 * us / op_total:5.1f} % "
          f"{count[kind] // f.steps:6d}x  {kind}")


if __name__ == "__main__":
  flags.DEFINE_enum("config", "morphomnist", bench_steps.CONFIGS, "Benchmark configuration.")
  flags.DEFINE_enum("step", "train", bench_steps.STEPS, "Step to profile.")
  flags.DEFINE_integer("steps", 5, "Traced steps.")
  flags.DEFINE_integer("top", 25, "Op kinds to print.")
  flags.DEFINE_string("trace_dir", os.path.join(tempfile.gettempdir(), "segcft_profile"),
                      "Where the trace is written.")
  app.run(main)
