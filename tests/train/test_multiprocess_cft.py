"""Fine-tuning across two real local processes equals one process with two devices, and a
CFT checkpoint written by two processes resumes in one (the quick workdir's pretrained DSCM)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch", "local.sh")

ARGS = ["--config=configs/synth_chest.py:quick", "--stages=cft_seg",
        "--config.cft_seg.log_every=1", "--config.cft_seg.ckpt_every=3",
        "--config.cft_seg.eval_every=100", "--config.cft_seg.eval_batch_size=16"]


def _env(devices=None):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _copy_pretrained(src, dst):
  shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cft_*", "eval"))
  return dst


def _losses(work):
  return {r["step"]: r["loss"] for r in map(json.loads, open(
      os.path.join(work, "cft_seg", "metrics.jsonl"))) if "loss" in r}


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
  r = subprocess.run(["bash", LAUNCH, "2", f"--workdir={two}", *ARGS,
                      "--config.cft_seg.num_steps=3"], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=600)
  logs = "".join(open(os.path.join(two, "logs", f"process_{i}.log")).read()[-2000:]
                 for i in (0, 1))
  assert r.returncode == 0, r.stderr + logs
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", f"--workdir={one}", *ARGS,
                      "--config.cft_seg.num_steps=3"], cwd=ROOT, env=_env(2),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return two, one


def test_two_process_cft_matches_one_process_and_resumes_in_one(cft_runs):
  two, one = cft_runs
  a, b = _losses(two), _losses(one)
  assert sorted(a) == [1, 2, 3]
  assert max(abs(a[s] - b[s]) for s in a) <= 1e-5
  # Preempted before the stage completed: the 2-process checkpoint continues in 1 process.
  os.remove(os.path.join(two, "cft_seg", "summary.json"))
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", f"--workdir={two}", *ARGS,
                      "--config.cft_seg.num_steps=4"], cwd=ROOT, env=_env(2),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert '"event": "resume", "step": 3' in open(
      os.path.join(two, "cft_seg", "metrics.jsonl")).read()
  assert 4 in _losses(two)
