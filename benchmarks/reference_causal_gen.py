"""Times the PyTorch reference (causal-gen) side by side with `benchmarks/steps.py`.

  <torch-env>/bin/python benchmarks/reference_causal_gen.py --causal_gen_src=CHECKOUT/src
      --config=morphomnist|chest64|chest192 [--batch=32] [--steps=20] [--warmup=3]
      [--only=train,counterfactual,cft] [--threads=N] [--out=FILE]

Never imported by the package or the tests, and needs neither JAX nor this package: run it
with an environment that has torch and numpy (and pyro-ppl for `cft`), pointing
`--causal_gen_src` at the `src/` directory of a checkout of biomedia-mira/causal-gen (its
`vae.py` and `hps.py`, and for `cft` `utils.py` and `pgm/`, are imported from there). The
architectures are those of `benchmarks/steps.py` (same strings, widths, z_max_res,
bias_max_res, prior and parent-vector width), float32, random weights (the reference init)
and one random batch:

* `train`: the reference trainer's step: `HVAE(x, pa, beta)["elbo"]`, backward, global-norm
  clip to 350, skip if the norm is >= 500 or non-finite, AdamW (betas 0.9, 0.9) step and
  the EMA update of every parameter (rate 0.999).
* `counterfactual` (under `torch.no_grad`): `abduct(x, pa)` (posterior samples; the "z" entry
  per layer for the conditional-prior Morpho-MNIST model), `forward_latents` with pa and with
  pa*, and x* = clamp(mu* + sigma* (x - mu) / sigma, -1, 1) (reference spec §1.10).
* `cft` (Morpho-MNIST only): one step of the reference's counterfactual fine-tuning, the train
  branch of `pgm/train_cf.py::cf_epoch` with `pgm/dscm.py::DSCM.forward`: `DSCM(args, pgm,
  predictor, vae)` with the HVAE above and two random-weight `MorphoMNISTPGM`s (`pgm`: setup
  sup_pgm; `predictor`: setup sup_aux, i.e. with its anticausal CNN encoders; train_pgm.py's
  widths [32, 32], std_fixed 0), train_cf.py's defaults (lr 1e-4, lr_lagrange 1e-2, damping
  100, lmbda_init 0, beta 1, the HVAE's wd, betas and grad_clip). Per step: do(pa_k) on one
  random parent with values from `torch.randperm` of the batch, `out = model.forward(batch,
  do, TraceStorage_ELBO(num_particles=1), cf_particles=1)`, the NaN-loss skip, zero grads,
  backward, `clip_grad_norm_` over all of the DSCM's parameters, the AdamW step (all
  parameters but lmbda), the Lagrange AdamW ascent step on lmbda, the clamp lmbda >= 0 and the
  reference `utils.EMA` update (a copy of every parameter and float buffer for its first 100
  updates, the moving average after). The batch is already in `train_pgm.preprocess`'s output
  form (x in [-1, 1]; thickness and intensity (B, 1) in [-1, 1], the dataset's min-max
  normalisation; digit one-hot (B, 10)): that per-step conversion, the running statistics
  (`update_stats`, tqdm) and the validation every 500 steps are not timed. Deviations (the
  checkout's files are not touched): (1) elbo_constraint is this HVAE's own ELBO on the batch
  (one no-grad pass before timing), not train_cf.py's hard-coded 1.84 (a trained UK Biobank
  HVAE's train-set ELBO): at ~28 nats/dim for random weights, 1.84 makes the damping term
  push every gradient norm to ~7.5e4; (2) grad_skip is off (non-finite norms are still
  skipped): through the random predictor the aux-loss gradient norm is still ~800 at times,
  above the reference's 500, and a skipped step would leave the updates untimed; the
  summary line counts the steps the reference would have skipped; (3) without CUDA,
  `torch.Tensor.cuda` is the identity (`vae_preprocess` calls `.cuda()`); (4) `vae.abduct`
  keeps the "z" of each layer's posterior dict, as the reference's Morpho-MNIST evaluation
  notebook does (`DSCM.forward` hands a conditional-prior HVAE's dicts to `forward_latents`,
  which fails in `torch.cat`); (5) packages that `utils.py`, `datasets.py` and
  `pgm/utils_pgm.py` import at module level but the step never calls (imageio, matplotlib,
  pandas, PIL, seaborn, torchvision, tqdm) get empty stand-ins where not installed.

img/s = batch / median step time over `--steps` steps after `--warmup`; the model is in train
mode for `train` and `cft` (PGM and predictor in eval mode) and eval mode for
`counterfactual`. One JSON line per step is appended to benchmarks/results/<device>.jsonl
(same device naming as benchmarks/results_io.py).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.abc
import importlib.machinery
import json
import math
import os
import platform
import random
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

# train_cf.py's defaults (not its elbo_constraint: see the docstring); train_pgm.py's PGM
# hyperparameters.
CFT = dict(lr=1e-4, lr_lagrange=1e-2, ema_rate=0.999, alpha=1.0, lmbda_init=0.0, damping=100.0,
           do_pa=None, cf_particles=1, beta=1.0)
PGM = dict(dataset="morphomnist", widths=[32, 32], std_fixed=0.0, input_channels=1,
           input_res=32, pad=4, parents_x=["thickness", "intensity", "digit"])
# Imported at module level by the checkout's utils.py, datasets.py and pgm/utils_pgm.py,
# never called by the CFT step.
IMPORT_ONLY = ("imageio", "matplotlib", "pandas", "PIL", "seaborn", "torchvision", "tqdm")


class _Stub(type):
  """A class whose every (non-dunder) attribute is another such class."""

  def __getattr__(cls, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return _Stub(name, (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Last on sys.meta_path: an empty stand-in for an IMPORT_ONLY package not installed."""

  def find_spec(self, fullname, path=None, target=None):
    if fullname.split(".")[0] in IMPORT_ONLY:
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    return None

  def exec_module(self, module):
    module.__getattr__ = lambda name: _Stub.__getattr__(_Stub, name)


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


def _cft_step(torch, src: str, vae, vae_args, obs: dict, device):
  """The train branch of train_cf.py's cf_epoch for one batch, as a closure (see docstring)."""
  sys.path.insert(1, os.path.join(src, "pgm"))
  sys.meta_path.append(_StubFinder())
  if device.type != "cuda":  # dscm.vae_preprocess calls .cuda()
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
  import hps as hps_module  # pylint: disable=g-import-not-at-top
  from dscm import DSCM, vae_preprocess  # pylint: disable=g-import-not-at-top
  from flow_pgm import MorphoMNISTPGM  # pylint: disable=g-import-not-at-top
  from layers import TraceStorage_ELBO  # pylint: disable=g-import-not-at-top
  from utils import EMA  # pylint: disable=g-import-not-at-top

  def hparams(**kw):
    h = hps_module.Hparams()
    h.update(kw)
    return h

  abduct = vae.abduct  # keep the "z" of each posterior dict (see docstring)
  vae.abduct = lambda *a, **k: [z["z"] if isinstance(z, dict) else z for z in abduct(*a, **k)]
  predictor = MorphoMNISTPGM(hparams(setup="sup_aux", **PGM)).to(device)
  pgm = MorphoMNISTPGM(hparams(setup="sup_pgm", **PGM)).to(device)
  args = hparams(**CFT, **{k: PGM[k] for k in ("dataset", "parents_x", "input_res")},
                 grad_clip=vae_args.grad_clip, grad_skip=math.inf, wd=vae_args.wd,
                 betas=vae_args.betas)  # grad_skip: see the docstring
  with torch.no_grad():  # the constraint: this HVAE's own ELBO on the batch (see docstring)
    pa = vae_preprocess(args, {k: v.clone() for k, v in obs.items() if k != "x"})
    args.elbo_constraint = vae.train()(obs["x"], pa, beta=args.beta)["elbo"].item()
  model = DSCM(args, pgm, predictor, vae)
  ema = EMA(model, beta=args.ema_rate)
  model.to(device)
  ema.to(device)
  elbo_fn = TraceStorage_ELBO(num_particles=1)
  optimizer = torch.optim.AdamW([p for n, p in model.named_parameters() if n != "lmbda"],
                                lr=args.lr, weight_decay=args.wd, betas=args.betas)
  lagrange_opt = torch.optim.AdamW([model.lmbda], lr=args.lr_lagrange, betas=args.betas,
                                   weight_decay=0, maximize=True)
  model.vae.train(True)
  model.pgm.eval()
  model.predictor.eval()
  dag_vars = list(model.pgm.variables.keys())
  bs = obs["x"].shape[0]
  state = dict(skipped=0, loss=None, norms=[])

  def step():
    with torch.no_grad():
      do_k = random.choice(dag_vars)
      do = {do_k: obs[do_k].clone()[torch.randperm(bs)]}
    out = model.forward(obs, do, elbo_fn, cf_particles=args.cf_particles)
    if torch.isnan(out["loss"]):
      model.zero_grad(set_to_none=True)
      state["skipped"] += 1
      return
    optimizer.zero_grad(set_to_none=True)
    lagrange_opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    if grad_norm < args.grad_skip:
      optimizer.step()
      lagrange_opt.step()  # gradient ascent on lmbda
      model.lmbda.data.clamp_(min=0)
      ema.update()
    else:
      state["skipped"] += 1
    state["loss"] = out["loss"].detach()
    state["norms"].append(grad_norm)

  def report() -> str:
    loss = float("nan") if state["loss"] is None else state["loss"].item()
    norms = [float(n) for n in state["norms"]]
    updates = int(lagrange_opt.state[model.lmbda].get("step", 0))
    return (f"elbo constraint {args.elbo_constraint:.4g}, last loss {loss:.4g}, lmbda "
            f"{model.lmbda.item():.4g} after {updates} updates, steps skipped "
            f"{state['skipped']}, grad norm {min(norms, default=0):.4g}-"
            f"{max(norms, default=0):.4g} ({sum(n >= vae_args.grad_skip for n in norms)} "
            f">= the reference's grad_skip {vae_args.grad_skip:g})")

  return step, report


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--causal_gen_src", required=True, help="causal-gen checkout's src/ dir.")
  p.add_argument("--config", choices=sorted(ARCHS), default="morphomnist")
  p.add_argument("--only", default="train,counterfactual", help="Any of train, "
                 "counterfactual, cft (cft: morphomnist only, needs pyro-ppl).")
  p.add_argument("--batch", type=int, default=None, help="Default: the config's.")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--threads", type=int, default=None, help="torch intra-op threads.")
  p.add_argument("--out", default=None)
  a = p.parse_args()
  if "cft" in a.only and a.config != "morphomnist":
    p.error("--only=cft needs --config=morphomnist (the reference's Morpho-MNIST PGM)")
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
  versions = {"torch": torch.__version__, "numpy": np.__version__}

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

  if "cft" in a.only:
    random.seed(7)
    digit = torch.nn.functional.one_hot(torch.tensor(rng.integers(0, 10, batch)), 10)
    obs = dict(x=x, thickness=pa_vec[:, :1].clone(), intensity=pa_vec[:, 1:2].clone(),
               digit=digit.float().to(device))
    cft_step, cft_report = _cft_step(torch, src, model, args, obs, device)
    results["cft"] = _timed(cft_step, a.steps, a.warmup, sync)
    print(f"reference {a.config} cft: {cft_report()}")
    import pyro  # pylint: disable=g-import-not-at-top
    versions["pyro"] = pyro.__version__

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
        device_count=1, cpu=platform.processor() or platform.machine(), versions=versions,
        commit=_commit(HERE), causal_gen_commit=_commit(src),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"reference {a.config} {step} (batch {batch}, {num_params:,} params): "
          f"{batch / median:,.1f} img/s ({batch / max(times):,.1f}-{batch / min(times):,.1f})"
          f" -> {path}")


if __name__ == "__main__":
  main()
