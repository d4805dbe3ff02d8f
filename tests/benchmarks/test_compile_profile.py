"""The compile-log parser of benchmarks/compile_profile.py on real XLA log lines."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks import compile_profile  # pylint: disable=g-import-not-at-top,wrong-import-position

_P = "I1204 01:50:11.469794    2542 "
_LOG = "\n".join([
    _P + "hlo_pass_pipeline.cc:303] Running HLO pass pipeline on module jit_cast: simp",
    _P + "hlo_pass_pipeline.cc:176] HLO pass: algsimp time: 39 us (39 us) (cumulative: 39 us)",
    _P + "cpu_compiler.cc:1269] Running HLO passes on [jit_cast] for CPU time: 6.05 ms (6046 us)",
    _P + "cpu_compiler.cc:2091] Compiling: jit_cast",
    _P + "cpu_compiler.cc:2094] Compiling [jit_cast] for CPU using JIT time: 4.81 ms (4812 us)",
    _P + "hlo_pass_pipeline.cc:303] Running HLO pass pipeline on module jit_step: opt",
    _P + "hlo_pass_pipeline.cc:176] HLO pass: algsimp time: 1.5 s (1500000 us) (cumulative: 1)",
    _P + "hlo_pass_pipeline.cc:176] HLO pass: fusion time: 250 ms (250000 us) (cumulative: 1)",
    _P + "hlo_pass_pipeline.cc:303] Running HLO pass pipeline on module jit_step: simp",
    _P + "hlo_pass_pipeline.cc:176] HLO pass: algsimp time: 500 ms (500000 us) (cumulative: 1)",
    _P + "cpu_compiler.cc:1269] Running HLO passes on [jit_step] for CPU time: 2.5 s (2500000 us)",
    _P + "cpu_compiler.cc:2091] Compiling: jit_step",
    _P + "ir_compiler.cc:293] Compiled LLVM module: __m_1 time: 11.6 ms (11561 us) (cumul",
    _P + "ir_compiler.cc:293] Compiled LLVM module: __m_2 time: 1 s (1000000 us) (cumul",
    _P + "cpu_compiler.cc:2094] Compiling [jit_step] for CPU using JIT time: 3 s (3000000 us)",
])


def test_parse_log_keeps_the_longest_module_and_sums_passes():
  prof = compile_profile.parse_log(_LOG)
  assert prof["module"] == "jit_step"
  assert prof["hlo_passes_s"] == 2.5 and prof["backend_s"] == 3.0
  assert prof["llvm_modules"] == 2 and abs(prof["llvm_s"] - 1.011561) < 1e-9
  assert prof["passes"] == {"algsimp": 2.0, "fusion": 0.25}
  assert prof["kernels"] == {"__m_1": 0.011561, "__m_2": 1.0}


def test_step_log_drops_what_was_compiled_before_the_step():
  init = _P + "cpu_compiler.cc:2094] Compiling [jit_init] for CPU using JIT time: 9 s (9000000 us)"
  log = compile_profile.step_log("\n".join([init, compile_profile._START, _LOG]))
  assert compile_profile.parse_log(log)["module"] == "jit_step"
  assert "jit_init" not in log
