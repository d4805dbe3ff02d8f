"""Evaluation (SPEC §4): pure per-example `metrics`, the jitted `suite` over every trained
method (`trained`, `measure`, `interventions`, `true_cf`, `results`), and the `report` and
`figures` of the `evaluate` stage."""
