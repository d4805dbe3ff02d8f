"""Evaluation (SPEC §4): pure per-example `metrics`, the jitted `suite` over every trained
method (`trained`, `measure`, `interventions`, `true_cf`, `results`), the `report` and
`figures` of the `evaluate` stage, and `user_cf`, counterfactuals of one's own images."""
