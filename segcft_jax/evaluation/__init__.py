"""Evaluation suite: metric functions over a counterfactual function (SPEC §4)."""
