"""The report's tables and the expected-ordering check on hand-built metrics."""

import ml_collections

from segcft_jax.evaluation import report

CONVENTIONS = {"area_error": "mape", "setting": "global", "num_examples": 8, "split": "test",
               "seed": 0, "mape": "MAPE def", "mae": "MAE def", "localisation": "LOC def",
               "true_cf": "TCF def", "composition": "COMP def", "reversibility": "REV def",
               "fit": "FIT def", "targets": "TGT def", "relative_changes": [-0.3, 0.3],
               "preservation": "PRES def", "predictors": ["oracle", "regressor"],
               "training_predictor": {"reg_cft": "regressor", "seg_cft": "segmentor_soft"}}


def _method(mape, share, region_shares=None):
  eff = {"a_area": {"mape": mape, "mae": 1.0, "by_predictor": {"regressor": {"mape": 1.5}}}}
  loc = {"a_area": {"outside_share": share, "outside_shift_abs": 0.5,
                    "by_target": {"+30%": {"outside_shift": -1.0}}}}
  for v, s in (region_shares or {}).items():
    loc[v] = {"outside_share": s}
  return {"effectiveness": eff, "localisation": loc, "composition": {"l1_1": 0.0, "l1_10": 0.1},
          "reversibility": {"l1": 0.3}, "fit": {"bpd": 2.0}}


def _metrics(**methods):
  return {"conventions": CONVENTIONS, "methods": methods}


def test_ordering_holds_does_not_hold_or_is_not_checked():
  good = _metrics(no_cft=_method(30.0, 0.8), reg_cft=_method(20.0, 0.6),
                  seg_cft=_method(10.0, 0.2))
  assert [s for _, s, _ in report.expected_ordering(good, "mape")] == ["holds", "holds"]
  bad = _metrics(no_cft=_method(30.0, 0.8), reg_cft=_method(5.0, 0.1),
                 seg_cft=_method(10.0, 0.2))
  assert [s for _, s, _ in report.expected_ordering(bad, "mape")] == ["does not hold"] * 2
  only = _metrics(no_cft=_method(30.0, 0.8))
  checks = report.expected_ordering(only, "mape")
  assert [s for _, s, _ in checks] == ["not checked"] * 2 and "Seg-CFT" in checks[0][2]


def test_positional_claim_is_checked_per_region():
  regions = {"a_area_proximal": "proximal", "a_area_distal": "distal"}
  m = _metrics(seg_cft=_method(10.0, 0.2, {"a_area_proximal": 0.3, "a_area_distal": 0.3}),
               pos_seg_cft=_method(10.0, 0.2, {"a_area_proximal": 0.1, "a_area_distal": 0.4}))
  checks = {c: (s, d) for c, s, d in report.expected_ordering(m, "mape", regions)}
  status, detail = checks["localisation (outside share): Pos-Seg-CFT lowest in every region"]
  assert status == "does not hold"
  assert "proximal: lowest Pos-Seg-CFT" in detail and "distal: lowest Seg-CFT" in detail


def test_render_has_methods_as_rows_and_units_under_each_table():
  m = _metrics(no_cft=_method(30.0, 0.8), seg_cft=_method(10.0, 0.2))
  config = ml_collections.ConfigDict(dict(name="synth_chest", variant="quick"))
  text = report.render(m, config, ["sweep.png"])
  assert "| No-CFT | 30.00 |" in text and "| Seg-CFT | 10.00 |" in text
  assert "MAPE def" in text and "LOC def" in text  # conventions stated under the tables
  assert "## Expected ordering" in text and "**not checked**" in text  # no Reg-CFT
  assert "![sweep.png](figures/sweep.png)" in text
  assert "| No-CFT | -1.00 |" in text  # signed outside shift by intervention


def _positional(effs, shares):
  """Hand-built positional metrics: method -> {variable: value}, region from the name."""
  out = {}
  for m in effs:
    out[m] = {"effectiveness": {v: {"mae": e} for v, e in effs[m].items()},
              "preservation": {v: {"mae": 1.0} for v in effs[m]},
              "localisation": {v: {"outside_share": s} for v, s in shares[m].items()}}
  return out


def test_positional_effectiveness_is_checked_per_region_and_per_variable():
  regions = {"a_area_proximal": "proximal", "b_area_proximal": "proximal",
             "a_area_distal": "distal", "b_area_distal": "distal"}
  # Pos-Seg-CFT loses b_area_distal (4 against 3) but wins the distal mean ((1 + 4) / 2 = 2.5
  # against (6 + 3) / 2 = 4.5) and both proximal variables.
  effs = {"reg_cft": {"a_area_proximal": 9.0, "b_area_proximal": 9.0, "a_area_distal": 6.0,
                      "b_area_distal": 3.0},
          "pos_seg_cft": {"a_area_proximal": 2.0, "b_area_proximal": 2.0, "a_area_distal": 1.0,
                          "b_area_distal": 4.0}}
  shares = {"reg_cft": dict.fromkeys(regions, 0.9), "pos_seg_cft": dict.fromkeys(regions, 0.5)}
  m = {"conventions": CONVENTIONS, "methods": _positional(effs, shares)}
  checks = {c: (s, d) for c, s, d in report.expected_ordering(m, "mae", regions)}
  region_eff = checks["effectiveness (MAE (px), oracle): Pos-Seg-CFT lowest in every region"]
  assert region_eff[0] == "holds"
  assert "proximal: lowest Pos-Seg-CFT 2 (next Reg-CFT 9)" in region_eff[1]
  assert "distal: lowest Pos-Seg-CFT 2.5 (next Reg-CFT 4.5)" in region_eff[1]
  per_var = checks["effectiveness (MAE (px), oracle): Pos-Seg-CFT lowest for every regional "
                   "variable"]
  assert per_var == ("does not hold", "b_area_distal: lowest Reg-CFT 3 (next Pos-Seg-CFT 4)")
  assert checks["localisation (outside share): Pos-Seg-CFT lowest in every region"][0] == "holds"
  # The per-region table: means over each region's variables, shares in per cent.
  config = ml_collections.ConfigDict(dict(name="synth_vessel", variant="positional"))
  conv = dict(CONVENTIONS, area_error="mae", setting="positional", predictors=["oracle"])
  text = report.render({"conventions": conv, "methods": m["methods"]}, config, [], regions)
  assert "| Pos-Seg-CFT | 2.00 | 2.50 | 1.00 | 1.00 | 50.0 | 50.0 |" in text
  assert "| Reg-CFT | 9.00 | 4.50 | 1.00 | 1.00 | 90.0 | 90.0 |" in text
