"""chest192: the synth_chest phantom at 192x192 with the reference mimic192 HVAE (spec §2.1).

The configuration the throughput benchmark times as "chest192" (`benchmarks/steps.py
--config=chest192`): causal-gen's 192x192 chest architecture (widths 32,64,96,128,160,192,512;
enc 192b1d2,96b3d2,48b7d2,24b11d2,12b7d2,6b3d6,1b2; dec 1b2,6b4,12b8,24b12,48b8,96b4,192b2;
z_max_res 96, bias_max_res 64, exogenous prior; 7.98 M parameters with 6 parent columns,
here 5: sex, age and the three organ areas) on the synth_chest graph, batch 16 (the reference
registry's) for the HVAE and the CFT stages. Everything else is configs/synth_chest.py's
default variant with the area statistics shifted to 192x192.

Run (a GPU-sized job; `python benchmarks/steps.py --config=chest192 --only=train` times one
HVAE step on the machine at hand):
  python -m segcft_jax.main --config=configs/chest192.py

Reference hyperparameters kept (spec §2.1, mimic192 registry): AdamW lr 1e-3, betas (0.9, 0.9),
weight decay 0.1, clip 350 / skip 500, beta 1 (the run script's beta 9 is a training choice,
not part of the architecture). Variants: `default` only.
"""

import os

import ml_collections

from segcft_jax import config_files
from segcft_jax.train import defaults

VARIANTS = ("default",)
IMAGE_SIZE = 192
BATCH_SIZE = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of variant `arg` (one of VARIANTS; None = default)."""
  defaults.check_variant("chest192", arg, VARIANTS)
  chest = config_files.load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                "synth_chest.py"))
  c = chest.get_config("default")
  batches = {"batch_size": BATCH_SIZE, "eval_batch_size": 2 * BATCH_SIZE}
  with c.unlocked():  # so that `lock` locks the new `scm` and `hvae.model` too
    defaults.override(c, {
        "name": "chest192", "data.image_size": IMAGE_SIZE, "scm": chest.scm(IMAGE_SIZE),
        **defaults.under(("hvae", *chest.CFT_STAGES), batches),
        "hvae.model": ml_collections.ConfigDict(dict(preset="chest192",
                                                     compute_dtype="float32")),
        "hvae.optim.weight_decay": 0.1})
  c.lock()
  return c
