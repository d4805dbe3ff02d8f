"""Two real local processes (JAX distributed runtime over localhost) against one process.

Each run is a subprocess with a timeout: a missing peer aborts JAX rather than raising. The
segmentor stage (from scratch) and fine-tuning (the quick workdir's pretrained DSCM) each
give the same losses in 2 processes as in 1 process with 2 devices, and a checkpoint written
by 2 processes resumes in 1.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch", "local.sh")
ARGS = ["--config=configs/synth_chest.py:quick", "--stages=data,segmentor",
        "--config.segmentor.log_every=1", "--config.segmentor.ckpt_every=5",
        "--config.segmentor.eval_every=100"]


def _env(devices=None):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _two_processes(work, *extra, python=sys.executable, timeout=300):
  env = dict(_env(), PYTHON=python, LOG_DIR=os.path.join(work, "logs"))
  return subprocess.run(["bash", LAUNCH, "2", f"--workdir={work}", *ARGS, *extra], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=timeout)


def _one_process(work, *extra, devices=2):
  return subprocess.run([sys.executable, "-m", "segcft_jax.main", f"--workdir={work}", *ARGS,
                         *extra], cwd=ROOT, env=_env(devices), capture_output=True, text=True,
                        timeout=300)


def _losses(work, stage="segmentor"):
  out = {}
  for line in open(os.path.join(work, stage, "metrics.jsonl")):
    r = json.loads(line)
    if "loss" in r:
      out[r["step"]] = r["loss"]
  return out


def _log(work, i):
  return open(os.path.join(work, "logs", f"process_{i}.log")).read()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("mp")
  two, one = str(base / "two"), str(base / "one")
  r = _two_processes(two, "--config.segmentor.num_steps=10")
  assert r.returncode == 0, r.stderr + _log(two, 0)[-3000:] + _log(two, 1)[-3000:]
  r = _one_process(one, "--config.segmentor.num_steps=10")
  assert r.returncode == 0, r.stderr[-3000:]
  return two, one


def test_two_processes_match_one_process_with_two_devices(runs):
  two, one = runs
  a, b = _losses(two), _losses(one)
  assert sorted(a) == list(range(1, 11))
  assert max(abs(a[s] - b[s]) for s in a) <= 1e-5
  assert "process 1 of 2" in _log(two, 1)


def test_checkpoint_of_two_processes_resumes_in_one(runs):
  two, one = runs
  for work in (two, one):  # As if preempted before the stage completed.
    os.remove(os.path.join(work, "segmentor", "summary.json"))
    r = _one_process(work, "--config.segmentor.num_steps=14")
    assert r.returncode == 0, r.stderr[-3000:]
  a, b = _losses(two), _losses(one)
  assert '"event": "resume", "step": 10' in open(
      os.path.join(two, "segmentor", "metrics.jsonl")).read()
  assert max(abs(a[s] - b[s]) for s in range(11, 15)) <= 1e-5


def _wrapper(tmp_path, body):
  path = tmp_path / "python.sh"
  path.write_text(f"#!/usr/bin/env bash\n{body}\nexec {sys.executable} \"$@\"\n")
  path.chmod(0o755)
  return str(path)


def test_a_dead_peer_stops_the_other_process(tmp_path):
  python = _wrapper(tmp_path, 'if [[ "$*" == *"--process_id=1"* ]]; then exit 3; fi')
  t0 = time.perf_counter()
  r = _two_processes(str(tmp_path / "w"), python=python, timeout=120)
  assert r.returncode == 3 and "stopped the others" in r.stderr
  assert time.perf_counter() - t0 < 60


def test_processes_with_different_configs_refuse_to_run(tmp_path):
  python = _wrapper(
      tmp_path, 'if [[ "$*" == *"--process_id=1"* ]]; then set -- "$@" --config.seed=5; fi')
  work = str(tmp_path / "w")
  r = _two_processes(work, python=python, timeout=180)
  assert r.returncode != 0
  for i in (0, 1):
    assert "Process(es) [1] run a different config than process 0" in _log(work, i)
  assert not os.path.exists(os.path.join(work, "data"))


# Fine-tuning (the quick workdir's pretrained DSCM, see conftest.quick_chest_workdir).
CFT_ARGS = ["--config=configs/synth_chest.py:quick", "--stages=cft_seg",
            "--config.cft_seg.log_every=1", "--config.cft_seg.ckpt_every=3",
            "--config.cft_seg.eval_every=100", "--config.cft_seg.eval_batch_size=16"]


def _copy_pretrained(src, dst):
  shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cft_*", "eval"))
  return dst


@pytest.fixture(scope="module")
def cft_runs(quick_chest_workdir, tmp_path_factory):
  base = tmp_path_factory.mktemp("mp_cft")
  two = _copy_pretrained(quick_chest_workdir, str(base / "two"))
  one = _copy_pretrained(quick_chest_workdir, str(base / "one"))
  # One ELBO bound for both runs (as a resumed stage keeps its own): the pretrained
  # validation -ELBO is a stochastic estimate whose posterior keys follow the batch layout,
  # so 2 processes and 1 would estimate epsilon ~1e-4 apart.
  os.makedirs(os.path.join(two, "cft_seg"))
  shutil.copy(os.path.join(quick_chest_workdir, "cft_seg", "constraint.json"),
              os.path.join(two, "cft_seg", "constraint.json"))
  shutil.copytree(os.path.join(two, "cft_seg"), os.path.join(one, "cft_seg"))
  env = dict(_env(), PYTHON=sys.executable, LOG_DIR=os.path.join(two, "logs"))
  r = subprocess.run(["bash", LAUNCH, "2", f"--workdir={two}", *CFT_ARGS,
                      "--config.cft_seg.num_steps=3"], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=600)
  logs = "".join(open(os.path.join(two, "logs", f"process_{i}.log")).read()[-2000:]
                 for i in (0, 1))
  assert r.returncode == 0, r.stderr + logs
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", f"--workdir={one}", *CFT_ARGS,
                      "--config.cft_seg.num_steps=3"], cwd=ROOT, env=_env(2),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return two, one


def test_two_process_cft_matches_one_process_and_resumes_in_one(cft_runs):
  two, one = cft_runs
  a, b = _losses(two, "cft_seg"), _losses(one, "cft_seg")
  assert sorted(a) == [1, 2, 3]
  assert max(abs(a[s] - b[s]) for s in a) <= 1e-5
  # Preempted before the stage completed: the 2-process checkpoint continues in 1 process.
  os.remove(os.path.join(two, "cft_seg", "summary.json"))
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", f"--workdir={two}", *CFT_ARGS,
                      "--config.cft_seg.num_steps=4"], cwd=ROOT, env=_env(2),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert '"event": "resume", "step": 3' in open(
      os.path.join(two, "cft_seg", "metrics.jsonl")).read()
  assert 4 in _losses(two, "cft_seg")
