"""Throughput of the hot steps: HVAE train, counterfactual generation and the CFT steps.

  python benchmarks/steps.py --config=morphomnist|synth_chest|chest64|chest192
      [--only=train,counterfactual,cft_reg,cft_seg,cft_pos_seg] [--steps=20] [--warmup=3]
      [--batch=B] [--devices=1] [--compute_dtype=float32|bfloat16] [--peak_tflops=T]
      [--balance=|structure] [--cache] [--out=FILE]

What is measured, per step, on random parameters and one random batch (throughput does not
depend on the values; uint8 pixels mapped to [-1, 1], scalar variables drawn inside each
variable's range or around its log-area statistics):

* `train`: the HVAE stage's step (`stages.hvae.hvae_task` + `train.step.make_train_step` with
  the task's optimiser), jitted with the state donated and sharded as `train.loop.fit` does.
* `counterfactual`: interventions from an in-batch permutation, PGM counterfactual parents,
  the abduction (its pass is also the factual decode) and one decode under the counterfactual
  parents (`scm.counterfactual.counterfactual`), jitted.
* `cft_reg`, `cft_seg`, `cft_pos_seg`: `cft.task.cft_task` with the frozen regressor /
  segmentor (global or regional soft areas) and PGM, through the same train step. Morpho-MNIST
  has Reg-CFT only (its intervenable variables, thickness and intensity, are not areas).
  `cft_pos_seg` needs regional areas: it uses the synth_vessel positional graph
  (`configs/synth_vessel.py:positional`, nine regional areas and the region map) with this
  config's HVAE architecture, image size and batch. `--balance` overrides the CFT stages'
  `balance` (`cft.balance`: '' the plain gradient, 'structure' one backward pass per
  structure); by default each runs with its config's.

Architectures: `morphomnist` is the reference Morpho-MNIST HVAE (`hvae_arch.morphomnist`,
conditional prior, batch 32) on configs/morphomnist.py's graph; `synth_chest` is
configs/synth_chest.py unchanged; `chest64` is synth_chest with the reference 64x64 chest HVAE
(`hvae_arch.chest64`, batch 32); `chest192` is configs/chest192.py (reference mimic192 HVAE,
batch 16). PGM, regressor and segmentor are the configs' own. `--compute_dtype=bfloat16`
runs the HVAE in mixed precision (`hvae.model.compute_dtype`, float32 parameters); the
predictors stay float32.

Figures: `img_per_s_median` (min-max) = batch / step time over `--steps` timed steps after
`--warmup` untimed ones, each step blocked on its outputs; `trace_s`, `lower_s`, `compile_s`
= `jit(f).trace`, `.lower()`, `.compile()` wall times. The compile figure is a cold XLA
compile by default: the persistent compilation cache is disabled unless `--cache` is given
(then it is enabled as in `segcft_jax/main.py`, and a second run reports the cached
re-compile). `flops_per_step` = `compiled.cost_analysis()["flops"]` (per device), achieved
FLOP/s = that / median step time, `mfu` = achieved / `--peak_tflops`. `peak_bytes` = the
step's buffers from `memory_analysis()`: arguments + outputs - donated (aliased) + XLA
temporaries (an upper bound: temporaries need not all be live at once); `xla_peak_bytes` is
XLA's own `peak_memory_in_bytes` (meaningful on GPU; on CPU it leaves out temporaries);
`max_rss_bytes` is the process's peak RSS so far and
`device_peak_bytes` the device allocator's peak so far (accelerators only): both accumulate over
the steps of one run, so use `--only=<step>` for a per-step figure. One JSON line per step is
appended to benchmarks/results/<device>.jsonl (or `--out`).
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import ml_collections
import numpy as np

from benchmarks import results_io
from segcft_jax import builders, config_files, entry
from segcft_jax.cft import interventions, methods
from segcft_jax.cft.settings import CFTSettings
from segcft_jax.cft.task import cft_task
from segcft_jax.models.hvae_arch import COMPUTE_DTYPES
from segcft_jax.scm.counterfactual import counterfactual
from segcft_jax.stages import cft as cft_stage, hvae as hvae_stage, regressor, segmentor
from segcft_jax.train import defaults, loop, sharding, state as state_lib
from segcft_jax.train.step import make_train_step
# pylint: enable=g-import-not-at-top,wrong-import-position

CONFIGS = ("morphomnist", "synth_chest", "chest64", "chest192")
STEPS = ("train", "counterfactual", "cft_reg", "cft_seg", "cft_pos_seg")
CACHE_DIR = entry.DEFAULT_CACHE  # as segcft_jax.main
EPSILON = 6.0  # -ELBO bound of the CFT Lagrangian (nats/dim); no effect on the compute.


def configure_jax(cache: bool, cache_dir: str) -> None:
  """The commands' JAX set-up (`entry.setup_jax`) with the configs' threefry choice, the
  compilation cache on (as `segcft_jax.main`) or off (cold compile times)."""
  entry.setup_jax(False, cache_dir if cache else "")
  if not cache:
    jax.config.update("jax_enable_compilation_cache", False)


def _load(spec: str):
  return config_files.load(os.path.join(ROOT, "configs", spec))


def bench_config(name: str, step: str):
  """The config that `step` of benchmark config `name` runs with; None if it does not apply."""
  if name == "morphomnist":
    # causal-gen's graph and HVAE context (no stroke area) and Reg-CFT only: the series
    # timed side by side with the reference (`reference_causal_gen.py`).
    if step in ("cft_seg", "cft_pos_seg"):
      return None
    c = _load("morphomnist.py")
    reference = ("thickness", "intensity")
    with c.unlocked():
      c.pgm, c.hvae = defaults.dscm_sections(False, parents=(*reference, "digit"))
      c.hvae.model = ml_collections.ConfigDict(dict(preset="morphomnist"))
      c.scm.intervenable = reference
      c.regressor.variables = reference
      c.cft_reg = defaults.cft_sections(False, ("cft_reg",))["cft_reg"]
    return c
  base = _load("chest192.py" if name == "chest192" else "synth_chest.py")
  if name == "chest64":
    with base.unlocked():
      base.hvae.model = ml_collections.ConfigDict(dict(preset="chest64"))
  if step != "cft_pos_seg":
    return base
  c = _load("synth_vessel.py:positional")
  with c.unlocked():
    c.data.image_size = base.data.image_size
    c.hvae.model = ml_collections.ConfigDict(base.hvae.model.to_dict())
    c.hvae.batch_size = base.hvae.batch_size
    c.cft_pos_seg.batch_size = base.cft_seg.batch_size
  return c


def default_batch(config, step: str) -> int:
  """The config's batch of `step`: the HVAE stage's or the CFT stage's."""
  return config.hvae.batch_size if step in ("train", "counterfactual") else config[step].batch_size


def synthetic_batch(config, batch: int, seed: int = 0) -> dict:
  """A host batch as the input pipeline yields it, with plausible values per variable."""
  rng = np.random.default_rng(seed)
  s = config.data.image_size
  out = {"image": (rng.integers(0, 256, (batch, s, s, 1)).astype(np.float32) - 127.5) / 127.5}
  for name, v in config.scm.variables.items():
    if v.type == "categorical":
      x = rng.integers(0, v.num_classes, batch)
    elif v.type == "binary":
      x = rng.integers(0, 2, batch)
    elif v.norm == "range":
      x = rng.uniform(v.low, v.high, batch)
    elif v.norm == "standard":
      x = rng.normal(v.mean, v.std, batch)
    else:  # log_standard / log1p_standard areas around their statistics
      x = np.exp(rng.normal(v.mean, v.std, batch)) - (v.norm == "log1p_standard")
      x = np.maximum(x, 0.0)
    out[name] = x.astype(np.float32)
  if config.get("setting") == "positional":  # thirds of the image: regions 1, 2, 3
    regions = np.broadcast_to((np.arange(s) * 3 // s + 1)[None, :], (s, s))
    out["regions"] = np.broadcast_to(regions, (batch, s, s)).astype(np.int32)
  return out


@dataclasses.dataclass
class Bench:
  """A jitted step, its first arguments and how one call's output feeds the next call."""
  jitted: Any
  args: tuple
  next_args: Callable[[tuple, Any, int], tuple]
  num_params: int


def _train_bench(task, cfg, host_batch, mesh, frozen, fsdp_min_size) -> Bench:
  """`task`'s train step exactly as `train.loop.fit` builds, shards and donates it."""
  abstract, init_state = loop.abstract_state(task, cfg, host_batch, mesh, fsdp_min_size)
  shardings = jax.tree.map(lambda a: a.sharding, abstract)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(cfg.seed))
  state = jax.jit(init_state, out_shardings=shardings)(init_rng, host_batch, task.pretrained)
  step = jax.jit(make_train_step(task, task.optimizer(cfg), step_rng, grad_skip=cfg.grad_skip,
                                 ema_rate=cfg.ema_rate),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  args = (state, sharding.to_global(host_batch, mesh), sharding.replicate(frozen, mesh))
  return Bench(step, args, lambda a, out, i: (out[0], *a[1:]),
               state_lib.count_params(state.params))


def _frozen(config, kind: str, host_batch, dscm, regressor_for=()) -> dict:
  """Randomly initialised frozen PGM and predictor (regressor, segmentor U-Net, or both for
  a hybrid)."""
  reg = seg = None
  if kind == "regressor" or regressor_for:
    types = builders.regressor_types(config)
    reg = regressor.regression_task(config.regressor, types, {v: (0.0, 1.0) for v in types})
  if kind != "regressor":
    seg = segmentor.segmentation_task("segmentor", config.segmentor.model,
                                      builders.class_names(config),
                                      config.segmentor.dice_weight)
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  image = {"image": host_batch["image"][:1]}
  if kind == "regressor":
    predictor = jax.jit(reg.init)(k2, image)
  elif regressor_for:
    predictor = {"segmentor": jax.jit(seg.init)(k2, image), "regressor": jax.jit(reg.init)(
        jax.random.fold_in(k2, 1), image)}
  else:
    predictor = jax.jit(seg.init)(k2, image)
  return {"pgm": jax.jit(dscm.pgm.init)(k1), "predictor": predictor}


def _counterfactual_bench(config, host_batch, mesh) -> Bench:
  dscm = builders.make_dscm(config)
  graph, intervenable = dscm.graph, tuple(config.scm.intervenable)
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  params = {"pgm": jax.jit(dscm.pgm.init)(k1),
            "hvae": jax.jit(hvae_stage.hvae_task(config).init)(k2, host_batch)}

  def generate(params, batch, key, i):
    r_do, r_cf = jax.random.split(jax.random.fold_in(key, i))
    do_data = interventions.sample_interventions(r_do, {v: batch[v] for v in intervenable},
                                                 intervenable)
    do = {v: (graph.normalize({v: t})[v], m) for v, (t, m) in do_data.items()}
    values_n = graph.normalize({n: batch[n] for n in graph.order})
    return counterfactual(dscm, params, batch["image"], values_n, do, r_cf)[0]

  jitted = jax.jit(generate, out_shardings=sharding.batch_sharding(mesh))
  args = (sharding.replicate(params, mesh), sharding.to_global(host_batch, mesh), k3,
          np.int32(0))
  return Bench(jitted, args, lambda a, out, i: (*a[:3], np.int32(i + 1)),
               state_lib.count_params(params["hvae"]))


def build(config, step: str, host_batch, mesh) -> Bench:
  """The benchmark of `step` under `config` on `mesh` (batch `host_batch`)."""
  fsdp_min = config.mesh.fsdp_min_size
  if step == "train":
    return _train_bench(hvae_stage.hvae_task(config), config.hvae, host_batch, mesh, {},
                        fsdp_min)
  if step == "counterfactual":
    return _counterfactual_bench(config, host_batch, mesh)
  settings = CFTSettings.from_config(config, step)
  kind = settings.predictor
  dscm = builders.make_dscm(config)
  predictor = cft_stage.unloaded_predictor(config, kind, settings.regressor_for)
  task = cft_task(settings, config, dscm, predictor, epsilon=EPSILON)
  return _train_bench(task, config[step], host_batch, mesh,
                      _frozen(config, kind, host_batch, dscm, settings.regressor_for), fsdp_min)


def measure(bench: Bench, steps: int, warmup: int) -> dict:
  """Trace, lower and compile times, per-step times, cost and memory analysis of `bench`."""
  t0 = time.perf_counter()
  traced = bench.jitted.trace(*bench.args)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  compiled = lowered.compile()
  t3 = time.perf_counter()
  args, times = bench.args, []
  bench.args = None  # the first state is donated: drop the reference
  for i in range(warmup + steps):
    start = time.perf_counter()
    out = compiled(*args)
    jax.block_until_ready(out)
    if i >= warmup:
      times.append(time.perf_counter() - start)
    args = bench.next_args(args, out, i)
  del args, out
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  mem = compiled.memory_analysis()
  memory = {k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
            for k in ("argument", "output", "alias", "temp", "generated_code")}
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]
  return dict(trace_s=t1 - t0, lower_s=t2 - t1, compile_s=t3 - t2, times=times,
              flops_per_step=float(cost.get("flops", float("nan"))), memory=memory,
              peak_bytes=peak,
              xla_peak_bytes=int(getattr(mem, "peak_memory_in_bytes", 0) or 0),
              device_peak_bytes=stats.get("peak_bytes_in_use"),
              max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def summarize(m: dict, batch: int, peak_tflops: float | None) -> dict:
  """img/s median and min-max, FLOP/s and MFU from `measure`'s per-step times."""
  times = m.pop("times")
  median = statistics.median(times)
  out = dict(m, step_s_median=median, img_per_s_median=batch / median,
             img_per_s_min=batch / max(times), img_per_s_max=batch / min(times),
             flops_per_s=m["flops_per_step"] / median, peak_tflops=peak_tflops)
  out["mfu"] = out["flops_per_s"] / (peak_tflops * 1e12) if peak_tflops else None
  return out


def define_flags() -> None:
  """The command-line flags (defined only when run as a script: scaling.py imports this)."""
  flags.DEFINE_enum("config", "synth_chest", CONFIGS, "Benchmark configuration.")
  flags.DEFINE_list("only", list(STEPS), "Steps to time (those that do not apply to the "
                    "config are skipped).")
  flags.DEFINE_integer("steps", 20, "Timed steps.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps after compiling.")
  flags.DEFINE_integer("batch", None, "Global batch (default: the config's).")
  flags.DEFINE_integer("devices", 1, "Devices of the data-parallel mesh (-1: all).")
  flags.DEFINE_enum("compute_dtype", "float32", list(COMPUTE_DTYPES),
                    "The HVAE's compute dtype (hvae.model.compute_dtype).")
  flags.DEFINE_float("peak_tflops", None, "Device peak TFLOP/s for MFU (e.g. the dense "
                     "float32 / TF32 peak of the accelerator).")
  flags.DEFINE_enum("balance", None, ["", "structure"], "The CFT steps' gradient balance "
                    "(cft.balance; default: each config's own).")
  flags.DEFINE_bool("cache", False, "Use the persistent compilation cache (compile_s is then "
                    "a cached re-compile once the cache is warm).")
  flags.DEFINE_string("compilation_cache", CACHE_DIR, "Persistent cache directory.")
  flags.DEFINE_string("out", None, "Results file (default benchmarks/results/<device>.jsonl).")


def main(argv):
  del argv
  f = flags.FLAGS
  configure_jax(f.cache, f.compilation_cache)
  mesh = sharding.make_mesh(f.devices)
  unknown = sorted(set(f.only) - set(STEPS))
  if unknown:
    raise app.UsageError(f"--only: unknown steps {unknown}; valid: {', '.join(STEPS)}")
  for step in (s for s in STEPS if s in f.only):
    config = bench_config(f.config, step)
    if config is None:
      print(f"{f.config} {step}: does not apply (skipped)")
      continue
    with config.unlocked():
      config.hvae.model.compute_dtype = f.compute_dtype
      if f.balance is not None and step.startswith("cft_"):
        config[step].balance = f.balance
    batch = f.batch or default_batch(config, step)
    sharding.check_batch_size(batch, mesh, "--batch")
    bench = build(config, step, synthetic_batch(config, batch), mesh)
    num_params = bench.num_params
    r = summarize(measure(bench, f.steps, f.warmup), batch, f.peak_tflops)
    del bench
    record = dict(benchmark="steps", step=step, config=f.config, batch=batch,
                  image_size=config.data.image_size, mesh_devices=mesh.size,
                  timed_steps=f.steps, warmup=f.warmup, num_params=num_params,
                  compute_dtype=f.compute_dtype,
                  balance=config[step].balance if step in methods.CFT_STAGES else None,
                  compile_cache="persistent" if f.cache else "off", **r)
    path = results_io.append(record, f.out)
    mfu = f", MFU {100 * r['mfu']:.1f} %" if r["mfu"] is not None else ""
    print(f"{f.config} {step} ({f.compute_dtype}, batch {batch}): "
          f"{r['img_per_s_median']:,.1f} img/s ({r['img_per_s_min']:,.1f}-"
          f"{r['img_per_s_max']:,.1f}); compile {r['compile_s']:.1f} s "
          f"(trace {r['trace_s']:.1f} s, lower {r['lower_s']:.1f} s); "
          f"{r['flops_per_step'] / 1e9:,.2f} GFLOP/step, {r['flops_per_s'] / 1e9:,.1f} GFLOP/s"
          f"{mfu}; peak {r['peak_bytes'] / 2**20:,.0f} MiB, RSS {r['max_rss_bytes'] / 2**20:,.0f}"
          f" MiB -> {path}", flush=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
