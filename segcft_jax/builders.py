"""Every network of the pipeline and the deep SCM, built from the config, and their weights.

For each network a `*_architecture(config)` gives the JSON description that a trained stage
stores beside its exported EMA weights (`train.weights`), a `make_*` builds the Flax module
(or PGM) from the config, and a `load_*` reads a trained stage's weights, checking that they
were trained for that architecture:

    segmentor / oracle   U-Net (`models.unet`)           load_unet(config, workdir, stage)
    regressor            CNN + head layout (`models.regressor.RegressorModel`)  load_regressor
    pgm                  scalar mechanisms (`scm.pgm`)   load_pgm
    hvae, cft_*          HVAE (`models.hvae`)            load_hvae(config, workdir, stage)

Stages, the CFT task, the evaluation and inference all build their networks here, so a
network is described in one place.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import ml_collections

from segcft_jax import workdir as workdir_lib
from segcft_jax.data import datasets
from segcft_jax.models.hvae import HVAE
from segcft_jax.models.hvae_arch import HVAEConfig, architecture_fields
from segcft_jax.models.regressor import Regressor, RegressorModel
from segcft_jax.models.unet import UNet
from segcft_jax.scm.counterfactual import DSCM
from segcft_jax.scm.graph import Graph
from segcft_jax.scm.pgm import PGM
from segcft_jax.train import weights

Sharding = jax.sharding.Sharding | None


def _load(workdir: str, stage: str, architecture: Mapping[str, Any], sharding: Sharding
          ) -> tuple[Any, dict]:
  workdir_lib.require_done(workdir, stage, "Loading its weights")
  return weights.load(workdir_lib.stage_dir(workdir, stage), architecture, sharding)


# -- segmentation U-Nets (segmentor, oracle) -----------------------------------------------------

def class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The dataset's segmentation classes, background first."""
  return datasets.spec(config.data).class_names


def unet_architecture(config: ml_collections.ConfigDict, stage: str) -> dict:
  """The U-Net of `config.<stage>.model` over the dataset's classes."""
  model = config[stage].model
  return {"network": "unet", "num_classes": len(class_names(config)),
          "widths": list(model.widths), "blocks_per_level": int(model.blocks_per_level),
          "norm_groups": int(model.norm_groups)}


def unet(model: Mapping[str, Any], num_classes: int) -> UNet:
  """The U-Net of a model section (`widths`, `blocks_per_level`, `norm_groups`)."""
  return UNet(num_classes=num_classes, widths=tuple(model["widths"]),
              blocks_per_level=int(model["blocks_per_level"]),
              norm_groups=int(model["norm_groups"]))


def make_unet(config: ml_collections.ConfigDict, stage: str) -> UNet:
  return unet(config[stage].model, len(class_names(config)))


def load_unet(config: ml_collections.ConfigDict, workdir: str, stage: str,
              sharding: Sharding = None) -> tuple[UNet, Any]:
  """`(U-Net, EMA params)` of segmentation stage `stage` ("segmentor" or "oracle")."""
  params, _ = _load(workdir, stage, unet_architecture(config, stage), sharding)
  return make_unet(config, stage), params


# -- regressor -----------------------------------------------------------------------------------

def regressor_types(config: ml_collections.ConfigDict,
                    names: Sequence[str] | None = None) -> dict[str, str]:
  """Type of each regressed variable (`names`, default `config.regressor.variables`):
  continuous or binary."""
  types = {}
  for n in config.regressor.variables if names is None else names:
    if n not in config.scm.variables:
      raise ValueError(f"config.regressor.variables names {n!r}, which is not a variable of "
                       f"config.scm.variables ({', '.join(config.scm.variables)}).")
    t = config.scm.variables[n].type
    if t not in ("continuous", "binary"):
      raise ValueError(f"The regressor predicts continuous or binary variables; {n!r} is {t}.")
    types[n] = t
  return types


def regressor_architecture(config: ml_collections.ConfigDict) -> dict:
  """The CNN of `config.regressor.model`: two head units (mean, scale or logit) per variable."""
  return {"network": "regressor", "types": regressor_types(config),
          "model": config.regressor.model.to_dict()}


def regressor(model: Mapping[str, Any], types: Mapping[str, str],
              stats: Mapping[str, Sequence[float]]) -> RegressorModel:
  """The regressor of a model section (`width`, `norm_groups`, `norm`) over variables `types`
  with target statistics `{variable: (mean, std)}` of its training split."""
  module = Regressor(outputs=2 * len(types), width=model["width"],
                     norm_groups=model["norm_groups"], norm=model["norm"])
  return RegressorModel(module, dict(types), {v: tuple(stats[v]) for v in types})


def make_regressor(config: ml_collections.ConfigDict,
                   stats: Mapping[str, Sequence[float]]) -> RegressorModel:
  return regressor(config.regressor.model, regressor_types(config), stats)


def load_regressor(config: ml_collections.ConfigDict, workdir: str, sharding: Sharding = None
                   ) -> tuple[RegressorModel, Any]:
  """`(RegressorModel, EMA params)`; the target statistics are those saved with the weights."""
  params, saved = _load(workdir, "regressor", regressor_architecture(config), sharding)
  return make_regressor(config, saved["stats"]), params


# -- the deep SCM: PGM and HVAE ------------------------------------------------------------------

def pgm_architecture(config: ml_collections.ConfigDict) -> dict:
  return {"network": "pgm", "model": config.pgm.model.to_dict(),
          "scm": config.scm.variables.to_dict()}


def make_pgm(config: ml_collections.ConfigDict) -> PGM:
  """Spline-flow roots, conditional children and discrete heads over `config.scm`."""
  model = config.pgm.model
  return PGM.from_config(config.scm, hidden=tuple(model.hidden), num_bins=model.num_bins,
                         bound=model.bound, child_spline=model.child_spline)


def load_pgm(config: ml_collections.ConfigDict, workdir: str, sharding: Sharding = None) -> Any:
  """The PGM's EMA parameters."""
  return _load(workdir, "pgm", pgm_architecture(config), sharding)[0]


def hvae_model_config(config: ml_collections.ConfigDict) -> dict:
  """`config.hvae.model` completed with the image size and the parent vector's width."""
  graph = Graph.from_config(config.scm)
  return dict(config.hvae.model.to_dict(), input_res=config.data.image_size, input_channels=1,
              context_dim=graph.vector_dim(config.hvae.parents))


def hvae_architecture(config: ml_collections.ConfigDict) -> dict:
  """The HVAE's fields (its compute dtype left out: it changes arithmetic, not parameters)."""
  return {"network": "hvae", "model": architecture_fields(hvae_model_config(config)),
          "parents": list(config.hvae.parents)}


def make_hvae(config: ml_collections.ConfigDict) -> HVAE:
  """The HVAE of `config.hvae.model` with a parent vector of `config.hvae.parents`."""
  return HVAE(HVAEConfig.from_config(hvae_model_config(config)))


def load_hvae(config: ml_collections.ConfigDict, workdir: str, stage: str = "hvae",
              sharding: Sharding = None) -> Any:
  """EMA HVAE parameters of `stage`: the pretrained `hvae` or a fine-tuned `cft_*` stage."""
  return _load(workdir, stage, hvae_architecture(config), sharding)[0]


def make_dscm(config: ml_collections.ConfigDict) -> DSCM:
  """The deep SCM's modules: the PGM of `config.pgm` and the HVAE of `config.hvae`."""
  return DSCM(pgm=make_pgm(config), hvae=make_hvae(config), parents=tuple(config.hvae.parents))
