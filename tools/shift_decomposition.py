"""Where a counterfactual's change comes from: the decoder mean or the abducted pixel noise.

The counterfactual image keeps the abducted pixel noise u = (x - mu) / sigma (reference spec
§1.10): x* = clip(mu* + sigma* u, -1, 1). Since x = mu + sigma u, the change splits exactly
into three terms,

    x* - x = (mu* - mu)  +  (sigma* - sigma) u  +  (x* - (mu* + sigma* u))
           = mean term   +  scale term          +  clip term.

Averaged outside T (the evaluation's target: the intervened structure in the factual and
counterfactual oracle label maps, its region only in the positional setting, dilated as in
SPEC §4) their sum is the evaluation's signed `outside_shift`; averaged inside T they show
how the structure itself was changed. At the pixels of the factual structure the report also
gives the mean image x, the decodes mu -> mu* and sigma -> sigma* and x*: a structure that
the decoder mean does not draw (a small plaque an HVAE leaves in u) can only change through
the scale term.

    python -m tools.shift_decomposition --workdir=runs/synth_chest \
        --variable=right_lung_area --change=-30% [--methods=no,reg,seg] [--num_examples=64]

prints one line per method and writes `--out` (JSON) if given. Pixel terms are in 0-255
units (difference x 127.5); structure intensities in 0-255 ((v + 1) x 127.5).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from segcft_jax import entry, inference, workdir as workdir_lib
from segcft_jax.cft import methods as methods_lib
from segcft_jax.data import datasets
from segcft_jax.evaluation import interventions, measure, metrics, suite
from segcft_jax.evaluation import trained as trained_lib
from segcft_jax.inference import requests
from segcft_jax.scm import counterfactual as cf_lib
from tools import command

TERMS = ("total", "mean", "scale", "clip")
STRUCTURE_STATS = ("x", "mu", "mu_cf", "sigma", "sigma_cf", "x_cf")


def split_change(x, mu, sigma, mu_cf, sigma_cf, x_cf) -> dict[str, Any]:
  """The three terms of x* - x (module docstring), `[B, H, W, 1]` each, plus the total."""
  u = (x - mu) / jnp.maximum(sigma, 1e-12)
  return {"total": x_cf - x, "mean": mu_cf - mu, "scale": (sigma_cf - sigma) * u,
          "clip": x_cf - (mu_cf + sigma_cf * u)}


def masked_means(values: dict[str, Any], mask) -> dict[str, Any]:
  """Per-example means `[B]` of `[B, H, W, 1]` arrays over `[B, H, W]` mask pixels."""
  m = mask.astype(np.float32)
  n = np.maximum(m.sum(axis=(1, 2)), 1.0)
  return {k: (np.asarray(v)[..., 0] * m).sum(axis=(1, 2)) / n for k, v in values.items()}


def _jitted_parts(trained, variable: str):
  """`(hvae, x, parents_n, target, mask, regions, rng) -> (terms, T, structure, decodes)`,
  jitted: the terms and decodes in 0-255 units, T dilated, the factual structure not."""
  t = trained

  def fn(hvae, x, parents_n, target, mask, regions, rng):
    do = {variable: (t.graph.normalize({variable: target})[variable], mask)}
    out = cf_lib.counterfactual_decodes(t.models, {"pgm": t.frozen["pgm"], "hvae": hvae}, x,
                                        parents_n, do, rng)
    labels_f = measure.oracle_labels(t, t.frozen, x)
    labels_cf = measure.oracle_labels(t, t.frozen, out["x_cf"])
    structure = measure.structure_target(t, variable, labels_f, regions)
    target_mask = metrics.dilate(
        measure.structure_union(t, variable, labels_f, labels_cf, regions),
        int(t.config.evaluate.dilation))
    terms = split_change(x, out["mu"], out["sigma"], out["mu_cf"], out["sigma_cf"], out["x_cf"])
    scale = metrics.PIXEL_SCALE
    terms = {k: v * scale for k, v in terms.items()}
    decodes = {k: (v + 1.0) * scale for k, v in
               (("x", x), ("x_cf", out["x_cf"]), ("mu", out["mu"]), ("mu_cf", out["mu_cf"]))}
    decodes.update(sigma=out["sigma"] * scale, sigma_cf=out["sigma_cf"] * scale)
    return terms, target_mask, structure, decodes

  return jax.jit(fn)


def decompose_method(trained, method: str, variable: str, change: float, batches,
                     seed: int = 0) -> dict[str, Any]:
  """Mean terms outside and inside T and the structure's decodes, over intervened examples.

  Args:
    trained: `evaluation.trained.Trained` holding `method`'s HVAE.
    method: key of `trained.methods`.
    variable: an evaluated area variable.
    change: relative change r of the intervention a* = (1 + r) a (e.g. -0.3).
    batches: `suite.test_batches` of the test split.
    seed: key of the posterior samples (per batch: fold_in(seed, batch index)).
  """
  t = trained
  fn = _jitted_parts(t, variable)
  kind = interventions.relative_name(change)
  sums = {"outside": dict.fromkeys(TERMS, 0.0), "target": dict.fromkeys(TERMS, 0.0),
          "structure": dict.fromkeys(STRUCTURE_STATS, 0.0)}
  counts = {"outside": 0, "target": 0, "structure": 0}
  for batch in batches:
    a = batch.arrays
    valid = a["valid"] > 0
    target, mask = interventions.targets(t.graph, variable, kind, a[variable], valid,
                                         (change,), seed, batch.index, 0)
    parents_n = t.graph.normalize({n: a[n] for n in t.graph.order})
    terms, tmask, structure, decodes = jax.device_get(fn(
        t.methods[method], a["image"], parents_n, target, mask, a.get("regions"),
        jax.random.fold_in(jax.random.PRNGKey(seed), batch.index)))
    tmask, structure = np.asarray(tmask), np.asarray(structure)
    for region, pixels, stats in (("outside", ~tmask, terms), ("target", tmask, terms),
                                  ("structure", structure, decodes)):
      keep = mask & (pixels.sum(axis=(1, 2)) > 0)
      for k, v in masked_means(stats, pixels).items():
        sums[region][k] += float(v[keep].sum())
      counts[region] += int(keep.sum())
  out: dict[str, Any] = {"intervened": counts["outside"]}
  for region, values in sums.items():
    out[region] = {k: (s / counts[region] if counts[region] else None) for k, s in values.items()}
  out["structure_examples"] = counts["structure"]
  return out


def define_flags(fv: flags.FlagValues) -> None:
  """The command's flags."""
  flags.DEFINE_string("workdir", None, "trained workdir (runs/<config>)", flag_values=fv)
  flags.DEFINE_string("variable", None, "intervened area variable", flag_values=fv)
  flags.DEFINE_string("change", "-30%", "relative change, e.g. -30% (default)", flag_values=fv)
  flags.DEFINE_string("methods", "", "comma-separated methods (no, reg, seg, pos_seg); "
                      "default: all trained", flag_values=fv)
  flags.DEFINE_integer("num_examples", 64, "first N test examples", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "key of the posterior samples", flag_values=fv)
  for name in ("workdir", "variable"):
    flags.mark_flag_as_required(name, flag_values=fv)


def parse_change(text: str) -> float:
  """"-30%" -> -0.3; refuses anything else (ValueError) and changes below -100 %.

  -100 % (removal) intervenes only where a zero area is in the variable's support (plaques).
  """
  value, relative = requests.parse_value("--change", text)
  if not relative or value < -100.0:
    raise ValueError(f"--change={text!r}: expected a relative change of at least -100%, "
                     f"e.g. -30%.")
  return value / 100.0


def run(args: flags.FlagValues) -> dict[str, Any]:
  """Loads each method with its own stage config and decomposes its counterfactuals."""
  change = parse_change(args.change)
  if args.num_examples < 1:
    raise ValueError(f"--num_examples must be >= 1, got {args.num_examples}.")
  if args.methods:
    keys = [methods_lib.method_key(m) for m in args.methods.split(",") if m.strip()]
  else:
    keys = [m.key for m in methods_lib.METHODS if workdir_lib.is_done(args.workdir, m.stage)]
  configs = {m: inference.load_config(args.workdir, m) for m in keys}  # Checks each first.
  if not keys:
    raise FileNotFoundError(f"No trained method in {args.workdir}.")
  for method, config in configs.items():  # Before any model is loaded.
    areas = trained_lib.locate(config, tuple(config.scm.intervenable))
    if args.variable not in areas:
      raise ValueError(f"{args.variable!r} is not an area variable of {method} in "
                       f"{args.workdir}; choose one of {', '.join(areas)}.")
  result = {"workdir": args.workdir, "variable": args.variable, "change": change,
            "num_examples": args.num_examples, "seed": args.seed, "units": "0-255",
            "methods": {}}
  for method in keys:
    config = configs[method]
    entry.setup_jax(config.threefry_partitionable)
    t = trained_lib.load_trained(config, args.workdir, methods=[method], predictors=False)
    source = datasets.open_split(datasets.prepared_builder(config.data, args.workdir), "test")
    batches = suite.test_batches(source, t.input_keys, int(config.evaluate.batch_size),
                                 args.num_examples)
    result["methods"][method] = decompose_method(t, method, args.variable, change, batches,
                                                 args.seed)
  return result


def format_line(method: str, r: dict[str, Any]) -> str:
  """One printed line: outside and inside terms, then the structure's decodes."""
  f = lambda d, keys: " / ".join("n/a" if d[k] is None else f"{d[k]:+.2f}" for k in keys)
  s = r["structure"]
  st = ("n/a" if s["x"] is None else
        f"x {s['x']:.1f}, mu {s['mu']:.1f} -> {s['mu_cf']:.1f}, sigma {s['sigma']:.1f} -> "
        f"{s['sigma_cf']:.1f}, x* {s['x_cf']:.1f}")
  return (f"{method:12s} n={r['intervened']:4d} | outside total/mean/scale/clip "
          f"{f(r['outside'], TERMS)} | inside T {f(r['target'], TERMS)} | structure: {st}")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""

  def lines(args, result):
    head = f"{args.variable} {args.change}, first {args.num_examples} test examples (0-255):"
    return [head] + [format_line(m, r) for m, r in result["methods"].items()]

  return command.run_command(define_flags, run, lines, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
