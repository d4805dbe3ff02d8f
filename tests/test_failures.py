"""Every failure of the main command is one line: out-of-range settings, Ctrl-C, resume under
a changed config, a locked workdir, a damaged dataset, OS errors and internal errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from absl import flags
from ml_collections import config_dict

from tests.conftest import ROOT, run_main
from segcft_jax import config_files, entry, stages
from segcft_jax import workdir as workdir_lib
from segcft_jax.data import datasets
from segcft_jax.stages import validation
from segcft_jax.train import loop

QUICK = "configs/synth_chest.py:quick"


def _quick(**fields) -> config_dict.ConfigDict:
  """The quick chest config with dotted `fields` overridden ("hvae.optim.lr": -1)."""
  config = config_files.load(QUICK)
  with config.unlocked():
    for path, value in fields.items():
      *parents, leaf = path.split(".")
      node = config
      for p in parents:
        node = node[p]
      node[leaf] = value
  return config


def _one_error_line(r: subprocess.CompletedProcess) -> str:
  """The `error:` line of a failed run, asserting there is no traceback."""
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, r.stderr[-3000:]
  return lines[0]


def test_an_image_size_the_hvae_cannot_take_is_named_before_anything_runs(tmp_path):
  r = run_main(QUICK, tmp_path / "w", "--config.data.image_size=48")
  assert r.returncode == 1
  assert _one_error_line(r) == (
      "error: config.data.image_size=48 does not fit the HVAE of config.hvae.model (dec_arch "
      "'1b1,8b1,16b1,32b1' ends at resolution 32, not input_res = 48); choose a size its "
      "enc_arch pools down to 1 (e.g. 32 or 64) or change enc_arch / dec_arch.")
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("fields,expected", [
    ({"data.image_size": 1000}, "config.data.image_size=1000 must be an integer side in pixels "
                                "from 32 to 256"),
    ({"data.image_size": 20}, "config.data.image_size=20 must be an integer side"),
    ({"data.num_train": 0}, "config.data.num_train=0 must be >= 1"),
    ({"hvae.num_steps": 0}, "config.hvae.num_steps=0 must be >= 1"),
    ({"hvae.optim.lr": -1e-3}, "config.hvae.optim.lr=-0.001 must be > 0"),
    ({"segmentor.batch_size": -4, "pgm.ema_rate": 1.5},
     "config.segmentor.batch_size=-4 must be >= 1; config.pgm.ema_rate=1.5 must be in [0, 1)"),
])
def test_every_field_with_a_range_is_checked_with_its_name(fields, expected):
  config = _quick(**fields)
  with pytest.raises(ValueError) as e:
    stages.check_config(config, config.stages)
  assert expected in str(e.value)


def test_a_batch_that_does_not_split_over_the_devices_names_its_section():
  config = _quick(**{"regressor.batch_size": 12})  # the suite has 8 devices
  with pytest.raises(ValueError, match=r"config.regressor.batch_size=12 does not divide evenly "
                                       r"over 8 devices / 1 processes; use a multiple of 8"):
    validation.check_batch_sizes(config, ["segmentor", "regressor"])


def _interrupt_at(work, min_step: int, *args) -> subprocess.CompletedProcess:
  """Runs the segmentor stage and sends Ctrl-C (SIGINT) once step `min_step` is logged."""
  env = dict(os.environ, XLA_FLAGS="")
  cmd = [sys.executable, "-m", "segcft_jax.main", f"--config={QUICK}", f"--workdir={work}",
         "--stages=data,segmentor", *args]
  p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
  metrics = os.path.join(work, "segmentor", "metrics.jsonl")
  deadline = time.time() + 300
  while time.time() < deadline and p.poll() is None:
    if os.path.exists(metrics):
      steps = [json.loads(l).get("step", 0) for l in open(metrics) if l.strip()]
      if steps and max(steps) >= min_step:
        break
    time.sleep(0.2)
  p.send_signal(signal.SIGINT)
  out, err = p.communicate(timeout=120)
  return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def test_ctrl_c_is_one_line_and_resume_refuses_a_changed_config(tmp_path):
  work = tmp_path / "w"
  steps = ("--config.segmentor.num_steps=100000", "--config.segmentor.ckpt_every=20",
           "--config.segmentor.log_every=10")
  r = _interrupt_at(work, 40, *steps)
  assert r.returncode == 130, r.stderr[-3000:]
  assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("[segmentor] interrupted at step ") and " of 100000; the last " \
      "checkpoint, step " in last and last.endswith("re-run the same command to resume."), last
  checkpoints = os.listdir(work / "segmentor" / "checkpoints")
  assert checkpoints and not [c for c in checkpoints if "tmp" in c]
  assert not os.path.exists(work / workdir_lib.LOCK_FILE)  # released on exit
  # The library's routine notices are not shown; the compilation is announced and timed.
  for noise in ("Using custom data configuration", "Downloading and preparing", "Variant "
                "folder"):
    assert noise not in r.stderr + r.stdout
  assert "[segmentor] compiling the train step..." in r.stderr
  assert "[segmentor] compiled in " in r.stderr

  # Re-run with another learning rate, or fewer steps than the checkpoint has: refused,
  # naming the field; nothing is changed.
  before = sorted(os.listdir(work / "segmentor" / "checkpoints"))
  for changed, expected in (
      (("--config.segmentor.num_steps=100000", "--config.segmentor.optim.lr=0.0123"),
       "(segmentor.optim.lr: 0.003 -> 0.0123)"),
      (("--config.segmentor.num_steps=10",),
       "(segmentor.num_steps: 100000 -> 10, below the checkpoint's step ")):
    r = run_main(QUICK, work, "--stages=data,segmentor", *changed,
                 "--config.segmentor.ckpt_every=20", "--config.segmentor.log_every=25")
    assert r.returncode == 1
    line = _one_error_line(r)
    assert line.startswith("error: [segmentor] was interrupted with checkpoints in"), line
    assert expected in line and "--force_config" in line, line
    assert "resuming with changed segmentor.log_every: 10 -> 25 (safe to change)" in r.stderr
  assert sorted(os.listdir(work / "segmentor" / "checkpoints")) == before
  assert json.load(open(work / "segmentor" / "config.json"))["segmentor"]["num_steps"] == 100000


def test_a_running_process_holds_the_workdir_and_a_dead_ones_lock_is_taken_over(tmp_path):
  work = tmp_path / "w"
  os.makedirs(work)
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  try:
    with open(work / workdir_lib.LOCK_FILE, "w") as f:
      json.dump({"pid": holder.pid, "host": os.uname().nodename, "started": "12:00:00"}, f)
    r = run_main(QUICK, work, "--stages=data")
    assert r.returncode == 1
    assert _one_error_line(r) == (
        f"error: {work} is in use by process {holder.pid} (since 12:00:00); wait for it to "
        f"finish, or use another --workdir. If that process has ended, remove "
        f"{work / workdir_lib.LOCK_FILE}.")
    assert os.listdir(work) == [workdir_lib.LOCK_FILE]
  finally:
    holder.kill()
    holder.wait()
  # The holder is gone (as after a SIGKILL): its lock is taken over, then released.
  with workdir_lib.lock(str(work)):
    assert json.load(open(work / workdir_lib.LOCK_FILE))["pid"] == os.getpid()
  assert not os.path.exists(work / workdir_lib.LOCK_FILE)


def test_a_second_process_is_refused_while_the_lock_is_held(tmp_path):
  script = ("import sys\nfrom segcft_jax import workdir\ntry:\n"
            f"  with workdir.lock({str(tmp_path)!r}): pass\n"
            "except workdir.WorkdirLocked as e:\n  print(e); sys.exit(3)\n")
  with workdir_lib.lock(str(tmp_path)):
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
  assert r.returncode == 3 and f"is in use by process {os.getpid()}" in r.stdout, r.stderr


def test_a_damaged_dataset_is_moved_aside_and_rebuilt_by_the_data_stage(tmp_path):
  work = str(tmp_path)
  config = _quick()
  stages.run_stages(config, work, ["data"])
  path = str(datasets.builder(config.data, work).data_path)
  train = [f for f in os.listdir(path) if "-train.array_record" in f]
  os.remove(os.path.join(path, train[0]))
  with pytest.raises(FileNotFoundError, match=r"Re-run the data stage \(--stages=data\): it "
                                              r"moves the damaged files aside and rebuilds"):
    datasets.open_split(datasets.prepared_builder(config.data, work), "train")
  before = open(workdir_lib.summary_path(work, "data")).read()
  stages.run_stages(config, work, ["data"])  # complete, but unreadable: run again
  moved = [d for d in os.listdir(os.path.dirname(path)) if ".damaged-" in d]
  assert len(moved) == 1 and os.listdir(os.path.join(os.path.dirname(path), moved[0]))
  assert len(datasets.open_split(datasets.prepared_builder(config.data, work), "train")) == 256
  after = json.load(open(workdir_lib.summary_path(work, "data")))
  assert after["splits"] == json.loads(before)["splits"]


def test_os_errors_and_bad_records_are_one_line_naming_the_path(tmp_path):
  a_file = tmp_path / "f"
  a_file.write_text("x")
  r = run_main(QUICK, a_file, "--stages=data")
  assert _one_error_line(r) == f"error: --workdir={a_file} is a file, not a directory; " \
                               f"choose another --workdir."
  r = run_main(QUICK, a_file / "w", "--stages=data")
  assert _one_error_line(r) == (f"error: Not a directory: {a_file / 'w'} (a file stands where "
                                f"a directory is needed).")
  stage = tmp_path / "run" / "hvae"
  os.makedirs(stage)
  (stage / "config.json").write_text('{"name": ')
  with pytest.raises(ValueError, match=r"hvae/config.json is not valid JSON \(Expecting value"):
    workdir_lib.read_config(str(tmp_path / "run"), "hvae")


def test_an_internal_error_is_one_line_and_its_traceback_goes_to_the_workdir(tmp_path, capsys):
  def define(argv):
    fv = entry.new_flags(argv)
    flags.DEFINE_string("workdir", str(tmp_path), "", flag_values=fv)
    return fv

  def body(fv):
    return {}["missing"]

  assert entry.run_command(define, body, "doc", []) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: internal error (KeyError: 'missing'); the full traceback is "
                        f"in {tmp_path / 'logs'}/traceback-") and err.endswith("Please report it.")
  path = err.split("the full traceback is in ")[1].split(". Please")[0]
  assert 'return {}["missing"]' in open(path).read()


def test_divergence_before_the_first_checkpoint_says_the_stage_starts_afresh():
  class NoCheckpoint:
    directory = "w/hvae/checkpoints"

    def latest_step(self):
      return None

  cfg = config_dict.ConfigDict(dict(min_steps_before_divergence_check=20, max_skip_fraction=0.25,
                                    grad_skip=1e4, optim=dict(lr=1e-3)))
  with pytest.raises(loop.TrainingDiverged) as e:
    loop._check_divergence("hvae", cfg, 40, 30, NoCheckpoint())  # pylint: disable=protected-access
  assert "step None" not in str(e.value)
  assert str(e.value).endswith("no checkpoint has been written yet, so the stage will start "
                               "afresh.")


def test_help_speaks_to_users_and_exits_zero():
  r = subprocess.run([sys.executable, "-m", "segcft_jax.main", "--help"], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert "Stages, in pipeline order: data, segmentor, oracle, regressor, pgm, hvae" in r.stdout
  assert "configs/synth_vessel.py: default, quick, positional, positional_quick" in r.stdout
  assert "force_config: Resume an interrupted stage" in r.stdout


@pytest.mark.parametrize("spec", ["configs/padchest.py:quick", "configs/padchest.py:paper",
                                  "configs/folder.py:quick", "configs/morphomnist.py",
                                  "configs/synth_vessel.py:positional"])
def test_every_shipped_config_passes_the_checks(spec):
  """Configs whose statistics the data stage measures (PadChest, folder) included."""
  config = config_files.load(spec)
  stages.check_config(config, config.stages)


def test_zero_means_whole_split_or_off_where_documented():
  config = _quick(**{"evaluate.num_examples": 0, "hvae.optim.grad_clip": 0.0,
                     "hvae.grad_skip": 0.0})
  stages.check_config(config, config.stages)
