"""Times the PyTorch reference (causal-gen) side by side with `benchmarks/steps.py`.

  <torch-env>/bin/python benchmarks/reference_causal_gen.py --causal_gen_src=CHECKOUT/src
      --config=morphomnist|chest64|chest192 [--batch=32] [--steps=20] [--warmup=3]
      [--only=train,counterfactual] [--threads=N] [--out=FILE]

Never imported by the package or the tests, and needs neither JAX nor this package: run it
with an environment that has torch and numpy, pointing `--causal_gen_src` at the `src/`
directory of a checkout of biomedia-mira/causal-gen (its `vae.py` and `hps.py` are imported
from there). The architectures are those of `benchmarks/steps.py` (same strings, widths,
z_max_res, bias_max_res, prior and parent-vector width), float32, random weights (the
reference init) and one random batch:

* `train`: the reference trainer's step: `HVAE(x, pa, beta)["elbo"]`, backward, global-norm
  clip to 350, skip if the norm is >= 500 or non-finite, AdamW (betas 0.9, 0.9) step and
  the EMA update of every parameter (rate 0.999).
* `counterfactual` (under `torch.no_grad`): `abduct(x, pa)` (posterior samples; the "z" entry
  per layer for the conditional-prior Morpho-MNIST model), `forward_latents` with pa and with
  pa*, and x* = clamp(mu* + sigma* (x - mu) / sigma, -1, 1) (reference spec §1.10).

The reference's CFT step needs its PGM and predictors and is not timed here (its figure in
the throughput issue, 34 img/s on Morpho-MNIST, is the one to compare against).
img/s = batch / median step time over `--steps` steps after `--warmup`; the model is in train
mode for `train` and eval mode for `counterfactual`. One JSON line per step is appended to
benchmarks/results/<device>.jsonl (same device naming as benchmarks/results_io.py).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Reference hyperparameters (spec §2.1) with the architectures of benchmarks/steps.py.
ARCHS = {
    "morphomnist": dict(hps="morphomnist", input_res=32, widths=[16, 32, 64, 128, 256],
                        enc_arch="32b3d2,16b3d2,8b3d2,4b3d4,1b4",
                        dec_arch="1b4,4b4,8b4,16b4,32b4", context_dim=12, cond_prior=True,
                        z_max_res=192, bias_max_res=64, batch=32, wd=0.01),
    "chest64": dict(hps="mimic64", input_res=64, widths=[32, 64, 96, 128, 160, 192, 512],
                    enc_arch="64b1d2,32b3d2,16b7d2,8b11d2,4b7d2,2b3d2,1b2",
                    dec_arch="1b2,2b4,4b8,8b12,16b8,32b4,64b2", context_dim=5,
                    cond_prior=False, z_max_res=32, bias_max_res=16, batch=32, wd=0.1),
    "chest192": dict(hps="mimic192", input_res=192, widths=[32, 64, 96, 128, 160, 192, 512],
                     enc_arch="192b1d2,96b3d2,48b7d2,24b11d2,12b7d2,6b3d6,1b2",
                     dec_arch="1b2,6b4,12b8,24b12,48b8,96b4,192b2", context_dim=5,
                     cond_prior=False, z_max_res=96, bias_max_res=64, batch=16, wd=0.1),
}


def _hparams(hps_module, arch: dict):
  args = hps_module.Hparams()
  args.update(dict(input_channels=1, bottleneck=4, z_dim=16, x_like="diag_dgauss",
                   std_init=0.0, kl_free_bits=0.0, q_correction=False, lr=1e-3,
                   betas=[0.9, 0.9], grad_clip=350.0, grad_skip=500.0, ema_rate=0.999))
  args.update({k: v for k, v in arch.items() if k != "batch"})
  return args


def _device_name(torch) -> str:
  if torch.cuda.is_available():
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
  return f"cpu-{os.cpu_count()}core"


def _commit(path: str) -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=path, check=False).stdout.strip()
  except OSError:
    return ""


def _timed(fn, steps: int, warmup: int, sync) -> list[float]:
  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    fn()
    sync()
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return times


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--causal_gen_src", required=True, help="causal-gen checkout's src/ dir.")
  p.add_argument("--config", choices=sorted(ARCHS), default="morphomnist")
  p.add_argument("--only", default="train,counterfactual")
  p.add_argument("--batch", type=int, default=None, help="Default: the config's.")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--threads", type=int, default=None, help="torch intra-op threads.")
  p.add_argument("--out", default=None)
  a = p.parse_args()
  src = os.path.abspath(a.causal_gen_src)
  if not os.path.exists(os.path.join(src, "vae.py")):
    sys.exit(f"error: {src} has no vae.py; pass the src/ directory of a causal-gen checkout")
  sys.path.insert(0, src)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import hps as hps_module  # pylint: disable=g-import-not-at-top
  from vae import HVAE  # pylint: disable=g-import-not-at-top
  if a.threads:
    torch.set_num_threads(a.threads)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  arch = ARCHS[a.config]
  args = _hparams(hps_module, arch)
  batch, res = a.batch or arch["batch"], arch["input_res"]
  torch.manual_seed(7)
  model = HVAE(args).to(device)
  num_params = sum(q.numel() for q in model.parameters())
  rng = np.random.default_rng(0)
  x = torch.tensor((rng.integers(0, 256, (batch, 1, res, res)) - 127.5) / 127.5,
                   dtype=torch.float32, device=device)
  pa_vec = torch.tensor(rng.uniform(-1, 1, (batch, args.context_dim)), dtype=torch.float32,
                        device=device)
  pa = pa_vec[..., None, None].repeat(1, 1, res, res)  # reference: broadcast to (B, C, R, R)
  pa_cf = pa[torch.randperm(batch, device=device)]  # counterfactual parents (a permutation)
  results = {}

  if "train" in a.only:
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=arch["wd"],
                            betas=tuple(args.betas), eps=1e-8)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()

    def train_step():
      opt.zero_grad(set_to_none=True)
      out = model(x, pa, beta=1.0)
      out["elbo"].backward()
      norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
      if norm < args.grad_skip and not math.isnan(out["nll"].item() + out["kl"].item()):
        opt.step()
        with torch.no_grad():
          for e, q in zip(ema.parameters(), model.parameters()):
            e.mul_(args.ema_rate).add_(q, alpha=1.0 - args.ema_rate)

    results["train"] = _timed(train_step, a.steps, a.warmup, sync)

  if "counterfactual" in a.only:
    model.eval()

    @torch.no_grad()
    def counterfactual():
      zs = model.abduct(x, pa)
      zs = [z["z"] if isinstance(z, dict) else z for z in zs]
      mu, sigma = model.forward_latents(zs, parents=pa)
      mu_cf, sigma_cf = model.forward_latents(zs, parents=pa_cf)
      u = (x - mu) / sigma.clamp(min=1e-12)
      return torch.clamp(mu_cf + sigma_cf * u, -1.0, 1.0)

    results["counterfactual"] = _timed(counterfactual, a.steps, a.warmup, sync)

  path = a.out or os.path.join(HERE, "results", f"{_device_name(torch)}.jsonl")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  for step, times in results.items():
    median = statistics.median(times)
    record = dict(
        benchmark="reference_causal_gen", step=step, config=a.config, batch=batch,
        image_size=res, num_params=num_params, timed_steps=a.steps, warmup=a.warmup,
        img_per_s_median=batch / median, img_per_s_min=batch / max(times),
        img_per_s_max=batch / min(times), step_s_median=median,
        torch_threads=torch.get_num_threads(), device=_device_name(torch),
        device_kind=(torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"),
        device_count=1, cpu=platform.processor() or platform.machine(),
        versions={"torch": torch.__version__, "numpy": np.__version__},
        commit=_commit(HERE), causal_gen_commit=_commit(src),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"reference {a.config} {step} (batch {batch}, {num_params:,} params): "
          f"{batch / median:,.1f} img/s ({batch / max(times):,.1f}-{batch / min(times):,.1f})"
          f" -> {path}")


if __name__ == "__main__":
  main()
