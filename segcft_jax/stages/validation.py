"""Every config field with a valid range, checked before the first stage runs.

A bad value is named with its dotted path (`config.hvae.optim.lr=-0.001 must be > 0`), so a
run never builds a dataset or trains a network only to fail on it later.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ml_collections

from segcft_jax import builders
from segcft_jax.cft import methods
from segcft_jax.models import hvae_arch
from segcft_jax.stages import setup
from segcft_jax.train import sharding

# The image sides the architectures and the README's memory figures are made for.
IMAGE_SIZES = (32, 256)
# Stages that build or load the HVAE (whose architecture must fit the image size).
_HVAE_STAGES = ("hvae", *methods.CFT_STAGES, "evaluate")

_positive = (lambda v: v > 0, "must be > 0")
_at_least_one = (lambda v: v >= 1, "must be >= 1")
_non_negative = (lambda v: v >= 0, "must be >= 0")
_fraction = (lambda v: 0 <= v < 1, "must be in [0, 1)")

# Stage-section fields (`train.defaults.train_config`, the evaluate section) and their ranges.
_STAGE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_steps": _at_least_one, "batch_size": _at_least_one, "eval_batch_size": _at_least_one,
    "log_every": _at_least_one, "eval_every": _at_least_one, "ckpt_every": _at_least_one,
    "ema_rate": _fraction, "grad_skip": _non_negative, "max_skip_fraction": _fraction,
    "optim.lr": _positive, "optim.warmup_steps": _non_negative,
    "optim.weight_decay": _non_negative, "optim.grad_clip": _non_negative,
    "optim.b1": _fraction, "optim.b2": _fraction, "optim.eps": _positive,
    "num_examples": _non_negative,  # 0: the whole split
}
_DATA_FIELDS = {"num_train": _at_least_one, "num_validation": _at_least_one,
                "num_test": _at_least_one}


def _get(section: ml_collections.ConfigDict, path: str) -> Any:
  node = section
  for key in path.split("."):
    if not hasattr(node, "keys") or key not in node:
      return None
    node = node[key]
  return node


def _check_fields(section: ml_collections.ConfigDict, where: str,
                  fields: dict[str, tuple[Callable[[Any], bool], str]]) -> list[str]:
  problems = []
  for path, (ok, rule) in fields.items():
    value = _get(section, path)
    if value is None or isinstance(value, bool):
      continue
    try:
      good = ok(value)
    except TypeError:
      good = False
    if not good:
      problems.append(f"config.{where}.{path}={value!r} {rule}")
  return problems


def _check_image_size(config: ml_collections.ConfigDict, names: Sequence[str]) -> list[str]:
  size = config.data.get("image_size") if "data" in config else None
  if size is None:
    return []
  lo, hi = IMAGE_SIZES
  if not isinstance(size, int) or not lo <= size <= hi:
    return [f"config.data.image_size={size!r} must be an integer side in pixels from {lo} "
            f"to {hi}"]
  if "hvae" in config and any(n in _HVAE_STAGES for n in names):
    try:
      fields = builders.hvae_model_config(config)
    except ValueError:  # statistics the data stage measures later: the width is irrelevant
      fields = dict(config.hvae.model.to_dict(), input_res=size, input_channels=1,
                    context_dim=1)
    try:
      model = hvae_arch.HVAEConfig.from_config(fields)
      hvae_arch.parse_decoder(model, hvae_arch.parse_encoder(model))
    except ValueError as e:
      return [f"config.data.image_size={size} does not fit the HVAE of config.hvae.model "
              f"({e}); choose a size its enc_arch pools down to 1 (e.g. 32 or 64) or change "
              f"enc_arch / dec_arch"]
  return []


def check_ranges(config: ml_collections.ConfigDict, names: Sequence[str]) -> None:
  """Fails naming every field of `config` the stages `names` read that is out of range.

  Raises:
    ValueError: one sentence per bad field, all at once.
  """
  problems = _check_image_size(config, names)
  if "data" in config:
    problems += _check_fields(config.data, "data", _DATA_FIELDS)
  for name in names:
    if name in config and hasattr(config[name], "keys"):
      problems += _check_fields(config[name], name, _STAGE_FIELDS)
  if problems:
    raise ValueError("; ".join(problems) + ".")


def check_batch_sizes(config: ml_collections.ConfigDict, names: Sequence[str]) -> None:
  """Fails naming the first batch size of a stage in `names` that does not divide evenly
  over the mesh's devices and the processes (call once JAX is set up)."""
  mesh = setup.mesh_from_config(config.mesh)
  for name in names:
    if name not in config or not hasattr(config[name], "keys"):
      continue
    for field in ("batch_size", "eval_batch_size"):
      if isinstance(config[name].get(field), int):
        sharding.check_batch_size(config[name][field], mesh, f"config.{name}.{field}")
