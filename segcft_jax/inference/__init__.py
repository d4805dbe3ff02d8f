"""Counterfactuals of one's own images with a trained workdir: the Python API and what the
`counterfactual` command runs (`requests` validates the inputs, `stored` the workdir, `model`
computes, `outputs` writes)."""

from segcft_jax.inference.model import CounterfactualModel, Result, counterfactual_of_image
from segcft_jax.inference.outputs import check_outputs, write_outputs
from segcft_jax.inference.requests import Request, check_request, parse_do, parse_value
from segcft_jax.inference.stored import check_weights, load_config

__all__ = ["CounterfactualModel", "Result", "counterfactual_of_image", "check_weights",
           "load_config", "check_outputs", "write_outputs", "Request", "check_request",
           "parse_do", "parse_value"]
