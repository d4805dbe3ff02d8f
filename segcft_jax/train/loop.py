"""The one training loop every stage uses.

`fit` creates the train state already sharded on the mesh (or restores it, with the data
iterator, from the latest checkpoint), then runs the jitted, state-donating step until
`num_steps`. It logs to `metrics.jsonl` every `log_every` steps (the only host round-trip;
with img/s and the host's input time per step, `input_ms_per_step` / `input_share`),
evaluates every `eval_every` steps, checkpoints every `ckpt_every` steps and at the end, and
stops with a clear message when too many updates were skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import ml_collections
import numpy as np

from segcft_jax.data import pipeline
from segcft_jax.train import checkpoint as ckpt_lib
from segcft_jax.train import distributed, events
from segcft_jax.train import metrics_log, sharding
from segcft_jax.train import state as state_lib
from segcft_jax.train.step import make_train_step
from segcft_jax.train.task import Task

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
  """Too many updates were skipped for non-finite or oversized gradients."""


class StageInterrupted(KeyboardInterrupt):
  """Ctrl-C during training; the message says where it stopped and how to resume."""


@dataclasses.dataclass
class FitResult:
  """What `fit` returns: the final state and how the run went."""
  state: state_lib.TrainState
  steps_run: int
  seconds: float
  img_per_s: float | None
  input_share: float | None = None  # median share of wall time spent producing batches


def abstract_state(task: Task, cfg: ml_collections.ConfigDict, example: Mapping[str, Any],
                   mesh, fsdp_min_size: int = sharding.FSDP_MIN_SIZE) -> tuple[Any, Callable]:
  """Shapes/shardings of the state and the function that builds it.

  The function is `(rng, batch, params) -> state`: `params` is `task.pretrained` (None for a
  task trained from scratch, whose parameters come from `task.init(rng, batch)`).
  """
  tx = task.optimizer(cfg)

  def init_state(rng, batch, params=None):
    return state_lib.create(task.init(rng, batch) if params is None else params, tx)

  abstract = jax.eval_shape(init_state, jax.random.PRNGKey(0), example, task.pretrained)
  shardings = sharding.state_shardings(abstract, mesh, fsdp_min_size)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return abstract, init_state


def _last_checkpoint(checkpointer) -> str:
  step = checkpointer.latest_step()
  if step is None:
    return "no checkpoint has been written yet, so the stage will start afresh"
  return f"the last checkpoint, step {step} in {checkpointer.directory}, is intact"


def _check_divergence(name: str, cfg, step: int, skipped: int, checkpointer) -> None:
  if step < cfg.min_steps_before_divergence_check or skipped <= cfg.max_skip_fraction * step:
    return
  raise TrainingDiverged(
      f"[{name}] {skipped} of {step} updates ({100 * skipped / step:.0f} %) were skipped "
      f"because the loss or gradient norm was non-finite or >= grad_skip={cfg.grad_skip}. "
      f"Lower the learning rate (config.{name}.optim.lr = {cfg.optim.lr}) or check the input "
      f"data; {_last_checkpoint(checkpointer)}.")


class _StopRequest:
  """Ctrl-C as a request the loop honours between steps (a save is never cut, and no
  KeyboardInterrupt lands inside a library callback that would swallow it); a second Ctrl-C
  interrupts at once."""

  def __init__(self):
    self.requested = False

  def _handle(self, signum, frame):
    del signum, frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True

  @contextlib.contextmanager
  def installed(self) -> Iterator["_StopRequest"]:
    if threading.current_thread() is not threading.main_thread():
      yield self
      return
    previous = signal.signal(signal.SIGINT, self._handle)
    try:
      yield self
    finally:
      signal.signal(signal.SIGINT, previous)


def _interrupted(name: str, step: int, num_steps: int, checkpointer) -> StageInterrupted:
  """Finishes a checkpoint being written, removes an incomplete one, says where it stopped."""
  try:
    checkpointer.close()
  except BaseException:  # pylint: disable=broad-except  (a second Ctrl-C, a broken save)
    pass
  checkpointer.remove_incomplete()
  return StageInterrupted(
      f"[{name}] interrupted at step {step} of {num_steps}; "
      f"{_last_checkpoint(checkpointer)}; re-run the same command to resume.")


def _init_or_restore(checkpointer, abstract, init: Callable[[], Any], train_data):
  """(state, start step, data offset, data iterator) for a fresh or resumed run.

  The iterator runs over `train_data[offset:]`; a checkpoint records its offset so that the
  saved Grain position is interpreted against the same slice on restore.
  """
  start = checkpointer.latest_step()
  if start is None:
    return init(), 0, 0, pipeline.to_iter(train_data)
  meta = checkpointer.read_meta(start)
  if meta.get("process_count") == jax.process_count():
    # Same layout: continue this process's saved Grain iterator.
    offset = int(meta.get("data_offset", 0))
    data_iter = pipeline.to_iter(train_data[offset:])
    return checkpointer.restore(abstract, data_iter), start, offset, data_iter
  # Another number of processes: the global data order depends only on the step, so the
  # position is recomputed instead of restored.
  data_iter = pipeline.to_iter(train_data[start:])
  return checkpointer.restore(abstract), start, start, data_iter


def fit(task: Task,
        cfg: ml_collections.ConfigDict,
        stage_dir: str,
        mesh,
        train_data,
        frozen: Any = None,
        eval_hook: Callable[[Any, int], Mapping[str, float]] | None = None,
        fsdp_min_size: int = sharding.FSDP_MIN_SIZE,
        tensorboard: bool = True) -> FitResult:
  """Trains `task` to `cfg.num_steps`, resuming from `stage_dir/checkpoints` if present.

  Args:
    task: the stage's task.
    cfg: the stage's config (seed, batch_size, num_steps, log_every, eval_every, ckpt_every,
      ema_rate, grad_skip, max_skip_fraction, min_steps_before_divergence_check, optim).
    stage_dir: output directory of the stage.
    mesh: device mesh.
    train_data: Grain `MapDataset` of this process's host batches (infinite); batch k is
      the one used at step k (see `data.pipeline.train_dataset`).
    frozen: frozen networks' parameters (replicated), passed to every step.
    eval_hook: `(ema_params, step) -> metrics`, called every `eval_every` steps.
    fsdp_min_size: arrays smaller than this stay replicated on an `fsdp` mesh.
    tensorboard: also write the logged records as TensorBoard events (`train.events`).

  Returns:
    A `FitResult`.
  """
  frozen = sharding.replicate({} if frozen is None else frozen, mesh)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(stage_dir, "checkpoints"), task.fingerprint)
  checkpointer.remove_incomplete()  # a save cut short by a killed run
  example = train_data[0]  # Shapes only.
  abstract, init_state = abstract_state(task, cfg, example, mesh, fsdp_min_size)
  state_shardings = jax.tree.map(lambda a: a.sharding, abstract)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(cfg.seed))

  state, start, offset, data_iter = _init_or_restore(
      checkpointer, abstract, lambda: jax.jit(init_state, out_shardings=state_shardings)(
          init_rng, example, task.pretrained), train_data)
  writer = metrics_log.MetricsWriter(os.path.join(stage_dir, "metrics.jsonl"),
                                     events.EventWriter(stage_dir) if tensorboard else None)
  if start:
    log.info("[%s] resumed from step %d of %d (%s)", task.name, start, cfg.num_steps,
             checkpointer.directory)
    writer.write({"event": "resume", "step": start})

  step_fn = jax.jit(
      make_train_step(task, task.optimizer(cfg), step_rng,
                      grad_skip=cfg.grad_skip, ema_rate=cfg.ema_rate),
      out_shardings=(state_shardings, sharding.replicated(mesh)),
      donate_argnums=(0,))
  progress = metrics_log.Progress(task.name, cfg.num_steps, start, cfg.batch_size)
  t0, rates, shares = time.perf_counter(), [], []
  step = start
  try:
    with _StopRequest().installed() as stop:
      state, step, rates, shares = _run_steps(
          task, cfg, step_fn, state, frozen, data_iter, mesh, checkpointer, writer, progress,
          eval_hook, start, offset, stop)
  except KeyboardInterrupt:
    raise _interrupted(task.name, progress.step, cfg.num_steps, checkpointer) from None
  finally:
    writer.close()
  checkpointer.close()
  return FitResult(state=state, steps_run=step - start, seconds=time.perf_counter() - t0,
                   img_per_s=float(np.median(rates)) if rates else None,
                   input_share=float(np.median(shares)) if shares else None)


def _run_steps(task, cfg, step_fn, state, frozen, data_iter, mesh, checkpointer, writer,
               progress, eval_hook, start: int, offset: int, stop: _StopRequest):
  """The steps from `start` to `cfg.num_steps`: (state, step, img/s, input shares)."""
  rates, shares = [], []
  step = start
  while step < cfg.num_steps:
    t_in = time.perf_counter()
    batch = sharding.to_global(next(data_iter), mesh)
    progress.add_input_time(time.perf_counter() - t_in)
    if step == start:
      log.info("[%s] compiling the train step...", task.name)
      t_compile = time.perf_counter()
    state, metrics = step_fn(state, batch, frozen)
    if step == start:
      log.info("[%s] compiled in %.1f s", task.name, time.perf_counter() - t_compile)
    step += 1
    progress.step = step
    last = step == cfg.num_steps
    if step % cfg.log_every == 0 or last:
      metrics, skipped = jax.device_get((metrics, state.skipped))
      timing = progress.interval(step)
      if step - start > cfg.log_every:  # the first interval includes compilation
        rates.append(timing["img_per_s"])
        shares.append(timing["input_share"])
      record = metrics_log.to_jsonable(
          dict(step=step, skipped_total=int(skipped), **timing, **metrics))
      writer.write(record)
      progress.show(step, record)
      _check_divergence(task.name, cfg, step, int(skipped), checkpointer)
    if eval_hook is not None and (step % cfg.eval_every == 0 or last):
      writer.write(dict(step=step, split="validation", **eval_hook(state.ema_params, step)))
    if step % cfg.ckpt_every == 0 or last:
      checkpointer.save(step, state, data_iter, meta={"data_offset": offset})
      # Wait: the next step donates the state buffers the async save may still be reading.
      checkpointer.wait()
    # Every process stops at the same step: in a multi-process run the request is agreed
    # on at logging steps (a collective), so no process waits in a step the others left.
    if (jax.process_count() == 1 or step % cfg.log_every == 0 or last) and \
        distributed.any_process(stop.requested):
      raise KeyboardInterrupt
  return state, step, rates, shares
