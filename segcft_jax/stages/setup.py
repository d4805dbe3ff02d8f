"""What every trained stage sets up around `fit`: data, mesh, batch sizes, evaluation splits,
and the export of its EMA weights (`train.weights`) for the stages and tools that use it."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import grain
import ml_collections
from jax.sharding import Mesh

from segcft_jax import workdir as workdir_lib
from segcft_jax.data import datasets, pipeline
from segcft_jax.train import sharding, weights
from segcft_jax.train.evaluate import Evaluator
from segcft_jax.train.loop import FitResult, fit
from segcft_jax.train.state import count_params
from segcft_jax.train.task import Task


def mesh_from_config(mesh_cfg: ml_collections.ConfigDict) -> Mesh:
  """The (data, fsdp) mesh described by `config.mesh`."""
  return sharding.make_mesh(mesh_cfg.num_devices, fsdp=mesh_cfg.fsdp)


@dataclasses.dataclass
class StageData:
  """A stage's prepared inputs.

  Attributes:
    mesh: device mesh.
    train: this process's infinite training batches (Grain MapDataset).
    sources: random-access sources of every split.
    keys: fields read from each example.
    eval_batch_size: per-process evaluation batch size.
  """
  mesh: Mesh
  train: grain.MapDataset
  sources: dict[str, Any]
  keys: tuple[str, ...]
  eval_batch_size: int

  def eval_batches(self, split: str):
    return pipeline.eval_batches(self.sources[split], self.keys, self.eval_batch_size)


def prepare(config: ml_collections.ConfigDict, workdir: str, name: str,
            keys: Sequence[str], in_memory: bool = False) -> StageData:
  """Opens the built dataset and sizes the batches of stage `name` for the mesh.

  `in_memory`: read the `keys` fields of every split into memory once (scalar-only stages;
  see `pipeline.in_memory`).
  """
  cfg = config[name]
  builder = datasets.prepared_builder(config.data, workdir)
  mesh = mesh_from_config(config.mesh)
  local_bs = sharding.check_batch_size(cfg.batch_size, mesh, f"config.{name}.batch_size")
  eval_bs = sharding.check_batch_size(cfg.eval_batch_size, mesh,
                                      f"config.{name}.eval_batch_size")
  sources = {s: datasets.open_split(builder, s) for s in ("train", "validation", "test")}
  if in_memory:
    sources = {s: pipeline.in_memory(src, keys) for s, src in sources.items()}
  train = pipeline.train_dataset(sources["train"], tuple(keys), local_bs, cfg.seed)
  return StageData(mesh=mesh, train=train, sources=sources, keys=tuple(keys),
                   eval_batch_size=eval_bs)


def as_floats(metrics: dict) -> dict:
  """Scalar metrics as plain floats (the default summary of a stage's evaluation)."""
  return {k: float(v) for k, v in metrics.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, name: str, task: Task,
                       data: StageData, architecture: Mapping[str, Any],
                       summarise: Callable[[dict], dict] = as_floats, frozen: Any = None,
                       exported: Callable[[Any], Any] = lambda params: params
                       ) -> tuple[FitResult, dict]:
  """Fits `task` (validation every `eval_every` steps), exports `exported(EMA params)` with
  `architecture` to `<stage>/weights/` and evaluates the EMA params on test.

  Returns:
    The fit result and `summarise(test metrics)`.
  """
  evaluator = Evaluator(task.eval_fn, data.mesh)

  def evaluate(params, split):
    return summarise(evaluator(params, data.eval_batches(split), frozen))

  stage_dir = workdir_lib.stage_dir(workdir, name)
  result = fit(task, config[name], stage_dir, data.mesh, data.train, frozen=frozen,
               eval_hook=lambda params, step: evaluate(params, "validation"),
               fsdp_min_size=config.mesh.fsdp_min_size,
               tensorboard=config.get("tensorboard", True))
  weights.save(stage_dir, exported(result.state.ema_params), architecture)
  return result, evaluate(result.state.ema_params, "test")


def run_summary(result: FitResult) -> dict:
  """The fields every trained stage reports."""
  return dict(steps=int(result.state.step), skipped=int(result.state.skipped),
              num_params=count_params(result.state.params), train_seconds=result.seconds,
              train_img_per_s=result.img_per_s, train_input_share=result.input_share)
