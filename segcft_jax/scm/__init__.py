"""Scalar structural causal model: variable graph, flow mechanisms, counterfactuals."""
