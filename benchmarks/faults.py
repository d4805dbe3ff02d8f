"""Fault injection: the quick pipeline killed at random steps of random stages still ends
with the same `eval/metrics.json`, byte for byte, as an uninterrupted run.

  python -m benchmarks.faults [--kills=12] [--seed=0] [--root=/tmp/segcft_faults]

The uninterrupted reference and the interrupted run use the same command (quick chest
config, checkpoints every 10 steps, a log line every 5). Each interrupted attempt picks one
of the next two stages not complete yet and a step of it at random (seeded), waits until
that stage's `metrics.jsonl` reaches the step, and sends SIGKILL or SIGINT (at random); then
the same command is re-run, and so on until `--kills` kills, after which it runs to the end.
The
result (kills survived by stage and signal, mismatches) is appended to
`benchmarks/results/<device>.jsonl`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/synth_chest.py:quick"
TRAINED = ("segmentor", "oracle", "regressor", "pgm", "hvae", "cft_reg", "cft_seg")
STEPS = {"segmentor": 60, "oracle": 60, "regressor": 60, "pgm": 200, "hvae": 100,
         "cft_reg": 20, "cft_seg": 20}
# Checkpoints often enough that most kills fall between two of them.
OVERRIDES = tuple(f"--config.{s}.{f}={v}" for s in TRAINED
                  for f, v in (("ckpt_every", 10), ("log_every", 5)))


def _command(workdir: str) -> list[str]:
  return [sys.executable, "-m", "segcft_jax.main", f"--config={CONFIG}",
          f"--workdir={workdir}", *OVERRIDES]


def _env() -> dict:
  return dict(os.environ, XLA_FLAGS="")  # one CPU device, as the README's command


def _metrics_size(workdir: str, stage: str) -> int:
  path = os.path.join(workdir, stage, "metrics.jsonl")
  return os.path.getsize(path) if os.path.exists(path) else 0


def _last_step(workdir: str, stage: str, since: int = 0) -> int:
  """The last step logged to the stage's `metrics.jsonl` after its first `since` bytes."""
  path = os.path.join(workdir, stage, "metrics.jsonl")
  if not os.path.exists(path):
    return -1
  steps = []
  with open(path) as f:
    f.seek(since)
    lines = f.read().splitlines()
  for line in lines:
    try:
      steps.append(int(json.loads(line).get("step", -1)))
    except (ValueError, TypeError):  # a line cut by SIGKILL
      continue
  return max(steps, default=-1)


def _done(workdir: str, stage: str) -> bool:
  return os.path.exists(os.path.join(workdir, stage, "summary.json"))


def run_to_end(workdir: str) -> float:
  """Runs the command once, to completion; returns its seconds."""
  t0 = time.perf_counter()
  r = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True)
  if r.returncode != 0:
    raise SystemExit(f"error: the run in {workdir} failed:\n{r.stderr[-3000:]}")
  return time.perf_counter() - t0


def kill_once(workdir: str, rng: random.Random) -> tuple[str, str, int] | None:
  """Starts the command and kills it at a random step of a random unfinished stage;
  returns (stage, signal, step reached) or None when the run ended first."""
  todo = [s for s in TRAINED if not _done(workdir, s)]
  if not todo:
    return None
  stage = rng.choice(todo[:2])  # the stage running now or the next one
  at = rng.randint(1, STEPS[stage] - 1)
  sig = rng.choice((signal.SIGKILL, signal.SIGINT))
  since = _metrics_size(workdir, stage)  # lines of this attempt only
  p = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
  while (p.poll() is None and _last_step(workdir, stage, since) < at
         and not _done(workdir, stage)):
    time.sleep(0.05)
  if p.poll() is not None:
    return None
  p.send_signal(sig)
  _, err = p.communicate()
  if sig == signal.SIGINT and ("Traceback" in err or p.returncode != 130):
    raise SystemExit(f"error: Ctrl-C at {stage} step {at} did not end in one line "
                     f"(exit {p.returncode}):\n{err[-3000:]}")
  return stage, signal.Signals(sig).name, _last_step(workdir, stage)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=12)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--root", default=os.path.join("/tmp", "segcft_faults"))
  args = parser.parse_args()
  reference, faulty = (os.path.join(args.root, n) for n in ("reference", "faulty"))
  for d in (reference, faulty):
    shutil.rmtree(d, ignore_errors=True)
  rng = random.Random(args.seed)
  print(f"reference run in {reference} ...", flush=True)
  seconds = run_to_end(reference)
  kills: list[tuple[str, str, int]] = []
  attempts = 0
  while len(kills) < args.kills and attempts < 4 * args.kills:
    attempts += 1
    kill = kill_once(faulty, rng)
    if kill is None:
      if all(_done(faulty, s) for s in TRAINED):
        break
      continue
    kills.append(kill)
    print(f"kill {len(kills)}: {kill[1]} at {kill[0]} step {kill[2]}", flush=True)
  run_to_end(faulty)
  same = (open(os.path.join(reference, "eval", "metrics.json"), "rb").read()
          == open(os.path.join(faulty, "eval", "metrics.json"), "rb").read())
  by = collections.Counter(f"{stage}:{sig}" for stage, sig, _ in kills)
  record = dict(benchmark="faults", config=CONFIG, seed=args.seed, kills=len(kills),
                kills_by_stage_and_signal=dict(sorted(by.items())),
                mismatches=0 if same else 1, reference_seconds=seconds)
  sys.path.insert(0, ROOT)
  from benchmarks import results_io  # pylint: disable=g-import-not-at-top  (imports JAX)
  path = results_io.append(record)
  print(json.dumps(record, indent=1))
  print(f"appended to {path}")
  if not same:
    raise SystemExit("error: eval/metrics.json differs from the uninterrupted run's.")


if __name__ == "__main__":
  main()
