"""Data-parallel scaling of a CFT step over 1..N devices: weak and strong scaling.

  python benchmarks/scaling.py [--config=synth_chest] [--step=cft_seg] [--devices=1,2,4,8]
      [--modes=weak,strong] [--per_device_batch=8] [--global_batch=32] [--steps=10]
      [--warmup=2] [--cache] [--out=FILE]

Each (device count n, mode) runs in its own subprocess, which builds the step exactly as
`benchmarks/steps.py` does (`train.loop.fit`'s jitted, donated step on a
`train.sharding.make_mesh(n)` mesh, the batch split over the mesh with `sharding.to_global`,
frozen networks replicated with `sharding.replicate`) and times it (median step time after
warm-up, each step blocked on its outputs). On CPU the subprocess gets n fake devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=n`); with accelerators it uses the first n
real ones (default counts: powers of two up to all devices, and all).

* weak scaling: `--per_device_batch` fixed, global batch n x that;
* strong scaling: `--global_batch` fixed (counts that do not divide it are skipped).

Per count the record holds img/s, `speedup` = img/s(n) / img/s(1) of the same mode, and
`efficiency` = speedup / n. Fake CPU devices share the same cores, so there the ideal is
speedup 1 (not n): their figures show the partitioning and collective overhead and that the
sharded step runs, not a speed-up. One JSON line per (mode, n) is appended to
benchmarks/results/<device>.jsonl (or `--out`), with `device_count` = n.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# pylint: disable=wrong-import-position
import jax

from benchmarks import results_io, steps as steps_lib
from segcft_jax.train import sharding
# pylint: enable=wrong-import-position

_CONFIG = flags.DEFINE_enum("config", "synth_chest", steps_lib.CONFIGS, "Benchmark config.")
_STEP = flags.DEFINE_enum("step", "cft_seg", steps_lib.STEPS, "Step to scale.")
_DEVICES = flags.DEFINE_list("devices", None, "Device counts (default: 1,2,4,8 fake CPU "
                             "devices; powers of two up to all accelerators, and all).")
_MODES = flags.DEFINE_list("modes", ["weak", "strong"], "weak and/or strong.")
_PER_DEVICE = flags.DEFINE_integer("per_device_batch", 8, "Per-device batch (weak scaling).")
_GLOBAL = flags.DEFINE_integer("global_batch", 32, "Global batch (strong scaling).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compiling.")
_CACHE = flags.DEFINE_bool("cache", False, "Use the persistent compilation cache.")
_OUT = flags.DEFINE_string("out", None, "Results file (default benchmarks/results/<device>.jsonl).")
_WORKER = flags.DEFINE_string("worker", None, "Internal: 'n,batch' of one measurement.")

_MARK = "SCALING_RESULT "
_PROBE = "import jax; print(jax.default_backend(), jax.device_count())"


def _worker(spec: str) -> None:
  """Child process: times the step on n devices at global batch `batch`; prints one line."""
  n, batch = (int(v) for v in spec.split(","))
  steps_lib.configure_jax(_CACHE.value, steps_lib.CACHE_DIR)
  mesh = sharding.make_mesh(n)
  config = steps_lib.bench_config(_CONFIG.value, _STEP.value)
  if config is None:
    raise app.UsageError(f"{_STEP.value} does not apply to config {_CONFIG.value}")
  bench = steps_lib.build(config, _STEP.value, steps_lib.synthetic_batch(config, batch), mesh)
  r = steps_lib.summarize(steps_lib.measure(bench, _STEPS.value, _WARMUP.value), batch, None)
  r.update(devices_visible=jax.device_count(), image_size=config.data.image_size)
  print(_MARK + json.dumps(r), flush=True)


def _child_env(platform: str, n: int) -> dict:
  env = dict(os.environ)
  if platform == "cpu":
    flags_ = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags_} --xla_force_host_platform_device_count={n}".strip()
  return env


def _run_child(platform: str, n: int, batch: int) -> dict | None:
  cmd = [sys.executable, os.path.abspath(__file__), f"--worker={n},{batch}",
         f"--config={_CONFIG.value}", f"--step={_STEP.value}", f"--steps={_STEPS.value}",
         f"--warmup={_WARMUP.value}", "--cache" if _CACHE.value else "--nocache"]
  proc = subprocess.run(cmd, env=_child_env(platform, n), capture_output=True, text=True,
                        check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith(_MARK)]
  if proc.returncode or not lines:
    print(f"  n={n} batch={batch} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return None
  return json.loads(lines[-1][len(_MARK):])


def _device_counts(platform: str, available: int) -> list[int]:
  if _DEVICES.value:
    return sorted({int(v) for v in _DEVICES.value})
  if platform == "cpu":
    return [1, 2, 4, 8]
  counts = [1 << k for k in range(available.bit_length()) if 1 << k <= available]
  return sorted(set(counts + [available]))


def main(argv):
  del argv
  if _WORKER.value:
    _worker(_WORKER.value)
    return
  # Probe in a child: the parent must not hold accelerator memory while the children run.
  probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True)
  platform, available = probe.stdout.split()[-2], int(probe.stdout.split()[-1])
  counts = _device_counts(platform, available)
  if platform != "cpu" and max(counts) > available:
    raise app.UsageError(f"--devices asks for {max(counts)} devices; {available} exist.")
  records = []
  for mode in _MODES.value:
    if mode not in ("weak", "strong"):
      raise app.UsageError(f"--modes: unknown mode {mode!r} (weak, strong)")
    base = None
    for n in counts:
      batch = n * _PER_DEVICE.value if mode == "weak" else _GLOBAL.value
      if batch % n:
        print(f"{mode} n={n}: global batch {batch} does not split over {n} devices (skipped)")
        continue
      r = _run_child(platform, n, batch)
      if r is None:
        continue
      if n == 1:
        base = r["img_per_s_median"]
      speedup = r["img_per_s_median"] / base if base else None
      records.append(dict(
          benchmark="scaling", mode=mode, step=_STEP.value, config=_CONFIG.value, batch=batch,
          per_device_batch=batch // n, device_count=n, fake_devices=platform == "cpu",
          timed_steps=_STEPS.value, warmup=_WARMUP.value, speedup=speedup,
          efficiency=speedup / n if speedup else None,
          compile_cache="persistent" if _CACHE.value else "off", **r))
      eff = f", speedup {speedup:.2f}, efficiency {100 * speedup / n:.0f} %" if speedup else ""
      print(f"{mode} n={n} batch {batch}: {r['img_per_s_median']:,.1f} img/s "
            f"({r['img_per_s_min']:,.1f}-{r['img_per_s_max']:,.1f}), compile "
            f"{r['compile_s']:.1f} s{eff}", flush=True)
  # Written at the end: results_io starts JAX's backend, which must not hold accelerator
  # memory while the children run.
  for record in records:
    path = results_io.append(record, _OUT.value)
  if records:
    print(f"{len(records)} records -> {path}")

if __name__ == "__main__":
  app.run(main)
