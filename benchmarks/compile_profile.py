"""Where a hot step's XLA compile time goes: HLO passes, thunk emission and LLVM codegen.

  python benchmarks/compile_profile.py --config=chest64 --step=train [--top=20] [--out=FILE]

Builds the step exactly as `benchmarks/steps.py` does, lowers it, and compiles it once (cold:
the persistent cache is off) in a child process whose XLA logging is turned up
(`TF_CPP_MIN_LOG_LEVEL=0`, `TF_CPP_VMODULE=hlo_pass_pipeline=1,cpu_compiler=1,ir_compiler=1`).
From the child's log after it starts compiling the step it adds up, for the step's module:

* `hlo_passes_s`: `cpu_compiler`'s "Running HLO passes" (the whole optimisation pipeline);
* `backend_s`: "Compiling [...] for CPU using JIT" (thunk emission + LLVM + linking);
* `llvm_modules` / `llvm_s`: the kernel modules LLVM compiled and their summed time (they
  compile on a thread pool, so the sum can exceed their share of the wall time);
* the `--top` LLVM kernel modules by time (one giant fusion shows up here);
* the `--top` HLO passes by summed time (a pass that runs many times, e.g. inside a fixed-point
  pipeline, is summed over its runs; nested pipelines are listed too, so do not add the rows).

`compile_s` is the child's wall time of `.compile()`. One JSON line
(`benchmark="compile_profile"`) is appended to benchmarks/results/<device>.jsonl or `--out`.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import results_io
from benchmarks import steps as bench_steps
from segcft_jax.train import sharding
# pylint: enable=g-import-not-at-top,wrong-import-position

_VMODULE = "hlo_pass_pipeline=1,cpu_compiler=1,ir_compiler=1"
_US = r"\((\d+) us\)"
_PASS = re.compile(r"HLO pass: (\S+) time: \S+ \S+ " + _US)
_HLO = re.compile(r"Running HLO passes on \[(\S+)\] for CPU time: \S+ \S+ " + _US)
_JIT = re.compile(r"Compiling \[(\S+)\] for CPU using JIT time: \S+ \S+ " + _US)
_LLVM = re.compile(r"Compiled LLVM module: (\S+) time: \S+ \S+ " + _US)
_MODULE = re.compile(r"Running HLO pass pipeline on module (\S+):")
_BEGIN = re.compile(r"\] Compiling: (\S+)")
_MARK = "COMPILE_PROFILE "
_START = "COMPILE_PROFILE_START"  # on stderr just before `.compile()`


def step_log(stderr: str) -> str:
  """The child's log after its `_START` line: the step's compile only.

  Building the benchmark compiles other programs first (parameter and state
  initialisation, casts); they are cut off here.
  """
  _, start, tail = stderr.rpartition(_START)
  if not start:
    raise ValueError(f"no {_START} line in the compile child's log")
  return tail


def parse_log(log: str) -> dict:
  """Compile-time breakdown of the module that took longest to compile in `log`.

  Jax may compile tiny helper jits (casts, broadcasts) next to the step; they are left out
  by keeping only the module with the largest JIT (backend) time.

  Args:
    log: XLA's stderr with the passes, HLO pipeline and JIT timings of every module.

  Returns:
    Dict with module, hlo_passes_s, backend_s, llvm_s, llvm_modules, passes and kernels
    (HLO pass / LLVM kernel module name -> seconds).
  """
  per = collections.defaultdict(lambda: dict(hlo_passes_s=0.0, backend_s=0.0, llvm_s=0.0,
                                             llvm_modules=0, passes=collections.Counter(),
                                             kernels=collections.Counter()))
  hlo_module = backend_module = ""
  for line in log.splitlines():
    if m := _MODULE.search(line):
      hlo_module = m.group(1)
    elif m := _PASS.search(line):
      per[hlo_module]["passes"][m.group(1)] += int(m.group(2)) / 1e6
    elif m := _HLO.search(line):
      per[m.group(1)]["hlo_passes_s"] += int(m.group(2)) / 1e6
    elif m := _BEGIN.search(line):
      backend_module = m.group(1)
    elif m := _LLVM.search(line):
      per[backend_module]["llvm_s"] += int(m.group(2)) / 1e6
      per[backend_module]["llvm_modules"] += 1
      per[backend_module]["kernels"][m.group(1)] += int(m.group(2)) / 1e6
    elif m := _JIT.search(line):
      per[m.group(1)]["backend_s"] += int(m.group(2)) / 1e6
  if not per:
    raise ValueError("no XLA compile timings in the log (was TF_CPP_VMODULE set?)")
  module = max(per, key=lambda k: per[k]["backend_s"])
  return dict(per[module], module=module, passes=dict(per[module]["passes"]),
              kernels=dict(per[module]["kernels"]))


def child(config_name: str, step: str) -> None:
  """Builds, lowers and cold-compiles the step; prints its batch, HLO size and compile time."""
  bench_steps.configure_jax(False, "")
  config = bench_steps.bench_config(config_name, step)
  batch = bench_steps.default_batch(config, step)
  bench = bench_steps.build(config, step, bench_steps.synthetic_batch(config, batch),
                            sharding.make_mesh(1))
  lowered = bench.jitted.lower(*bench.args)
  hlo_lines = lowered.as_text(dialect="hlo").count("\n")
  print(_START, file=sys.stderr, flush=True)
  start = time.perf_counter()
  lowered.compile()
  compile_s = time.perf_counter() - start
  print(_MARK + json.dumps(dict(compile_s=compile_s, batch=batch,
                                hlo_lines=hlo_lines)), flush=True)


def main(argv):
  del argv
  f = flags.FLAGS
  if f.child:
    child(f.config, f.step)
    return
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE=_VMODULE)
  r = subprocess.run([sys.executable, os.path.abspath(__file__), f"--config={f.config}",
                      f"--step={f.step}", "--child"], env=env, capture_output=True, text=True,
                     check=False)
  marks = [l for l in r.stdout.splitlines() if l.startswith(_MARK)]
  if r.returncode or not marks:
    raise RuntimeError(f"the compile child failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
  info = json.loads(marks[-1][len(_MARK):])
  prof = parse_log(step_log(r.stderr))
  top = sorted(prof.pop("passes").items(), key=lambda kv: -kv[1])[:f.top]
  kernels = sorted(prof.pop("kernels").items(), key=lambda kv: -kv[1])[:f.top]
  record = dict(benchmark="compile_profile", config=f.config, step=f.step,
                xla_flags=os.environ.get("XLA_FLAGS", ""), **info, **prof,
                top_passes=dict(top), top_kernels=dict(kernels))
  path = results_io.append(record, f.out)
  print(f"{f.config} {f.step} (batch {info['batch']}, {info['hlo_lines']:,} HLO lines): compile "
        f"{info['compile_s']:.1f} s = HLO passes {prof['hlo_passes_s']:.1f} s + backend "
        f"{prof['backend_s']:.1f} s (LLVM: {prof['llvm_modules']} modules, "
        f"{prof['llvm_s']:.1f} s summed over threads) -> {path}")
  for title, rows in (("HLO passes", top), ("LLVM kernel modules", kernels)):
    print(f"top {title}:")
    for name, s in rows:
      print(f"{s:8.2f} s  {name}")


if __name__ == "__main__":
  flags.DEFINE_enum("config", "morphomnist", bench_steps.CONFIGS, "Benchmark configuration.")
  flags.DEFINE_enum("step", "train", bench_steps.STEPS, "Step to profile.")
  flags.DEFINE_integer("top", 20, "HLO passes and LLVM kernel modules to print.")
  flags.DEFINE_string("out", None, "Results file (default benchmarks/results/<device>.jsonl).")
  flags.DEFINE_bool("child", False, "Internal: the compiling child process.")
  app.run(main)
