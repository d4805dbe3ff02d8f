"""Which parts of a CFT stage's predictor loss pull its HVAE in which direction.

The CFT predictor loss (`cft.task`) is `aux = sum_m w_m mean_b d_m(b)` over every measurement
m. For one structure S (e.g. "calcified": the measurements `calcified_area[_<region>]`) this
command splits it by where each term comes from,

    aux = S_intervened + S_preserved + other_intervened + other_preserved,

(`S_intervened`: the terms of S's measurements in the examples whose drawn intervention hit
them; `preserved`: those that must stay) and reports, at the pretrained HVAE (`no_cft`) and at
the stage's fine-tuned EMA weights, each part's value, the norm of its HVAE gradient and the
cosine between every two parts' gradients (summed over the batches):

    python -m tools.gradient_conflict --workdir=runs/synth_vessel_positional \
        --stage=cft_pos_seg --structure=calcified [--batches=6] [--out=parts.json]

A structure whose intervened part has a small gradient, opposed (negative cosine) by its own
preserved part or by the others, is one the stage's update does not move. Batches are the
stage's first training batches; interventions are drawn as in training (the stage's
`intervention`, `draw_weights`; no curriculum), the abduction is a fresh posterior sample,
and the gradients are taken with respect to every HVAE parameter (the encoder's too, where
the stage trained the decoder only). The parts are those of the plain loss: a stage run with
`balance="structure"` (`cft.balance`) rescaled each structure's share of the gradient before
its update, so its norms here are the unscaled ones (the result records the stage's `balance`).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from segcft_jax import builders, entry, inference
from segcft_jax.cft import methods
from segcft_jax.cft.settings import CFTSettings, parse_weights
from segcft_jax.cft.task import CounterfactualStep
from segcft_jax.stages import cft
from segcft_jax.train import sharding
from tools import command

PARTS = ("intervened", "preserved", "other_intervened", "other_preserved")


def split_aux(distances: dict[str, Any], intervened: dict[str, Any], weights: dict[str, float],
              in_structure: Sequence[str]) -> Any:
  """`[4]` = the four parts (`PARTS`) of `aux = sum_m w_m mean_b d_m(b)`; they sum to aux.

  Args:
    distances: `{m: [B]}` per-example distances.
    intervened: `{m: [B] bool}` whether example b's intervention hit m.
    weights: `{m: w_m}`.
    in_structure: the measurements of the structure.
  """
  parts = [0.0] * 4
  for m, d in distances.items():
    hit = intervened[m].astype(d.dtype)
    base = 0 if m in in_structure else 2
    parts[base] += weights[m] * (d * hit).mean()
    parts[base + 1] += weights[m] * (d * (1.0 - hit)).mean()
  return jnp.stack([jnp.asarray(p, jnp.float32) for p in parts])


def summarise(values: np.ndarray, grads: np.ndarray) -> dict[str, Any]:
  """Mean part values, gradient norms per batch and cosines of the summed gradients.

  Args:
    values: `[N, 4]` part values of N batches.
    grads: `[N, 4, P]` flattened gradients.
  """
  total = grads.sum(axis=0)  # [4, P]
  norms = np.linalg.norm(total, axis=1)
  cos = total @ total.T / np.maximum(np.outer(norms, norms), 1e-30)
  return {"value": dict(zip(PARTS, values.mean(axis=0).tolist())),
          "grad_norm": dict(zip(PARTS, (norms / len(grads)).tolist())),
          "cosine": {a: dict(zip(PARTS, cos[i].tolist())) for i, a in enumerate(PARTS)}}


def define_flags(fv: flags.FlagValues) -> None:
  """The command's flags."""
  flags.DEFINE_string("workdir", None, "trained workdir", flag_values=fv)
  flags.DEFINE_string("stage", None, "cft_reg, cft_seg or cft_pos_seg", flag_values=fv)
  flags.DEFINE_string("structure", None, "e.g. calcified, heart, left_lung", flag_values=fv)
  flags.DEFINE_integer("batches", 6, "first N training batches", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "key of interventions and abductions", flag_values=fv)
  for name in ("workdir", "stage", "structure"):
    flags.mark_flag_as_required(name, flag_values=fv)


def run(args: flags.FlagValues) -> dict[str, Any]:
  """Loads the stage's DSCM and predictor and splits its aux at both sets of weights."""
  if args.stage not in methods.CFT_STAGES:
    raise ValueError(f"--stage={args.stage!r}: choose one of {', '.join(methods.CFT_STAGES)}.")
  if args.batches < 1:
    raise ValueError(f"--batches must be >= 1, got {args.batches}.")
  method = methods.BY_STAGE[args.stage].key
  config = inference.load_config(args.workdir, method)
  settings = CFTSettings.from_config(config, args.stage)
  entry.setup_jax(config.threefry_partitionable)
  data, predictor, frozen = cft.load_frozen(config, args.workdir, settings)
  chosen = parse_weights(args.structure, predictor.names, "--structure", default=0.0, bare=1.0)
  in_structure = [m for m in predictor.names if chosen[m] > 0]
  if len(in_structure) == len(predictor.names):
    raise ValueError(f"--structure={args.structure!r} must name some but not all of the "
                     f"measurements {', '.join(predictor.names)}.")
  step = CounterfactualStep(builders.make_dscm(config), predictor, settings)

  def parts(hvae, frozen, batch, rng):
    out = step(hvae, frozen, batch, rng)
    return split_aux(out["distances"], out["intervened"], settings.distance_weights,
                     in_structure)

  fn = jax.jit(lambda *a: (parts(*a), jax.jacrev(parts)(*a)))
  result = {"workdir": args.workdir, "stage": args.stage, "structure": args.structure,
            "measurements": in_structure, "batches": args.batches, "seed": args.seed,
            "balance": settings.balance, "weights": {}}
  for key in ("no_cft", method):
    hvae = builders.load_hvae(config, args.workdir, methods.BY_KEY[key].stage,
                              sharding.replicated(data.mesh))
    values, grads = [], []
    for i in range(args.batches):
      batch = jax.tree.map(jnp.asarray, data.train[i])
      v, jac = jax.device_get(fn(hvae, frozen, batch, jax.random.fold_in(
          jax.random.PRNGKey(args.seed), i)))
      values.append(v)
      grads.append(np.concatenate([g.reshape(4, -1) for g in jax.tree.leaves(jac)], axis=1))
    result["weights"][key] = summarise(np.stack(values), np.stack(grads))
  return result


def format_lines(structure: str, method: str, r: dict[str, Any]) -> list[str]:
  """A method's printed block: values and gradient norms, then the cosine matrix."""
  names = [n.replace("intervened", "int").replace("preserved", "pres") for n in PARTS]
  names[:2] = [f"{structure}_{n}" for n in names[:2]]
  lines = [f"{method}: " + ", ".join(
      f"{n} {r['value'][p]:.3f} (|grad| {r['grad_norm'][p]:.3f})" for n, p in zip(names, PARTS))]
  for n, p in zip(names, PARTS):
    lines.append(f"  cos {n:>22s}: " + " ".join(f"{r['cosine'][p][q]:+.3f}" for q in PARTS))
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""

  def lines(args, result):
    head = (f"{args.stage}, structure {args.structure}, first {args.batches} training batches "
            f"(aux parts, gradient norms per batch, cosines in the order {', '.join(PARTS)}):")
    return [head] + [line for m, r in result["weights"].items()
                     for line in format_lines(args.structure, m, r)]

  return command.run_command(define_flags, run, lines, __doc__, argv)


if __name__ == "__main__":
  sys.exit(main())
