"""Counterfactuals of one's own images with a trained workdir: the Python API and what the
`counterfactual` command runs (`requests` validates the inputs, `stored` the workdir, `model`
computes one image, `batched` many, `outputs` writes)."""

from segcft_jax.inference.batched import Counterfactuals, Model, load
from segcft_jax.inference.model import CounterfactualModel, Result, counterfactual_of_image
from segcft_jax.inference.outputs import check_outputs, write_outputs
from segcft_jax.inference.requests import Request, check_request, parse_do, parse_value
from segcft_jax.inference.stored import check_weights, load_config

__all__ = ["Counterfactuals", "Model", "load", "CounterfactualModel", "Result",
           "counterfactual_of_image", "check_weights", "load_config", "check_outputs",
           "write_outputs", "Request", "check_request", "parse_do", "parse_value"]
