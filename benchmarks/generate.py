"""End-to-end counterfactual generation against the bare counterfactual step.

  python -m benchmarks.generate --workdir=runs/synth_chest [--method=seg]
      [--num_examples=256] [--per_image=4] [--repeats=20]

`end_to_end_img_per_s`: counterfactuals per second of `inference.generation.Generator` on the
workdir's test split (read the split -> oracle measurement of x -> counterfactual -> oracle
measurement of x* -> PNG and CSV writes, the PNGs in a writer thread), after one untimed
shard compiled the steps. `write_share`: the writer thread's time over that wall time (what
overlapping hides). `bare_img_per_s`: the same jitted counterfactual step alone on one global
batch (`batched.Model`), each call blocked on its output; `ratio` = end-to-end / bare. One
JSON line is appended to benchmarks/results/<device>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import jax
import numpy as np

from benchmarks import results_io
from segcft_jax import entry
from segcft_jax.data import datasets
from segcft_jax.inference import batched, generation, stored
from segcft_jax.scm import counterfactual as cf_lib
from segcft_jax.train import sharding


def _bare(model: batched.Model, images, parents, repeats: int) -> float:
  """img/s of the jitted counterfactual step alone (`scm.counterfactual.counterfactual`, as
  in benchmarks/steps.py) on one global batch: a -15 % change of the first intervenable
  variable, inputs already on the devices."""
  t, n = model.trained, model.batch_size
  x = (images[:n].astype(np.float32) - 127.5) / 127.5
  before = {k: v[:n].astype(np.float32) for k, v in parents.items()}
  v = t.variables[0]
  do = cf_lib.checked_interventions(t.graph, {v: 0.85 * before[v]}, n, allowed=t.variables)
  step = jax.jit(lambda hvae, pgm, x, pa, do, rng: cf_lib.counterfactual(
      t.models, {"pgm": pgm, "hvae": hvae}, x, pa, do, rng)[0])
  put = lambda a: jax.device_put(a, sharding.batch_sharding(model.mesh))
  args = (sharding.replicate(t.methods[model.method], model.mesh),
          sharding.replicate(t.frozen["pgm"], model.mesh), put(x[..., None]),
          put(t.graph.normalize(before)), put(do), jax.random.PRNGKey(0))
  jax.block_until_ready(step(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(step(*args))
    times.append(time.perf_counter() - t0)
  return n / statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--method", default="seg")
  parser.add_argument("--num_examples", type=int, default=256)
  parser.add_argument("--per_image", type=int, default=4)
  parser.add_argument("--shard_size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  config = stored.load_config(args.workdir, f"{args.method}_cft"
                              if not args.method.endswith("_cft") else args.method)
  entry.setup_jax(config.threefry_partitionable)
  model = batched.load(args.workdir, args.method)
  source = datasets.open_split(datasets.prepared_builder(config.data, args.workdir), "test")
  n = min(args.num_examples, len(source))
  records = [source[i] for i in range(n)]
  images = np.stack([r["image"][..., 0] for r in records])
  parents = {v: np.array([float(r[v]) for r in records]) for v in model.trained.graph.order}
  items = generation.plan(n, [], args.per_image, tuple(config.scm.intervenable),
                          tuple(config.evaluate.relative_changes), 0)
  out = tempfile.mkdtemp(prefix="segcft_generate_")
  try:
    warm = [it for it in items if it[0] < args.shard_size]  # compiles every variable's call
    generation.Generator(model, os.path.join(out, "warm"), {"seed": 0}, args.shard_size).run(
        warm, images, parents)
    gen = generation.Generator(model, os.path.join(out, "timed"), {"seed": 0}, args.shard_size)
    t0 = time.perf_counter()
    gen.run(items, images, parents)
    wall = time.perf_counter() - t0
  finally:
    shutil.rmtree(out, ignore_errors=True)
  bare = _bare(model, images, parents, args.repeats)
  record = dict(benchmark="generate", config=config.name, variant=config.variant,
                method=model.method, batch=model.batch_size, counterfactuals=len(items),
                end_to_end_img_per_s=len(items) / wall, write_share=gen.write_seconds / wall,
                bare_img_per_s=bare, ratio=len(items) / wall / bare)
  print(json.dumps(record, indent=1))
  print(f"appended to {results_io.append(record)}")


if __name__ == "__main__":
  main()
