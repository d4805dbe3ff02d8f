"""`eval/report.md`: the metrics.json tables (methods as rows) and the paper's expected ordering.

Every table is followed by its units and conventions. The expected ordering (Seg-CFT paper):
effectiveness error Seg-CFT < Reg-CFT < No-CFT (oracle-measured), localisation leakage
(outside share) Seg-CFT < Reg-CFT, and in the positional setting (Pos-Seg-CFT paper) Pos-Seg-CFT
lowest effectiveness error and lowest outside share in every region (proximal / mid / distal;
a region's value is the mean over its variables, the per-region table) and, stricter, lowest
effectiveness error for every regional variable. Each claim is stated as holds / does not hold
with the numbers, or as not checked when a method it needs was not trained.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from segcft_jax.cft import methods as methods_lib
from segcft_jax.evaluation import results

UNITS = {"mape": "MAPE (%)", "mae": "MAE (px)"}


def _fmt(v: Any, digits: int = 2) -> str:
  return "–" if v is None else f"{v:.{digits}f}"


def _mean(values: Sequence[Any]) -> float | None:
  vals = [v for v in values if v is not None]
  return sum(vals) / len(vals) if vals else None


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return out + ["| " + " | ".join(r) + " |" for r in rows]


def _per_variable(methods: Mapping, section: str, key: str, variables: Sequence[str]
                  ) -> dict[str, list]:
  return {m: [methods[m].get(section, {}).get(v, {}).get(key) for v in variables]
          for m in methods}


def variable_means(metrics: Mapping, section: str, key: str) -> dict[str, float | None]:
  """method -> mean over variables of `methods[m][section][v][key]` (variables equally weighted)."""
  methods = metrics["methods"]
  return {m: _mean([d.get(key) for d in methods[m].get(section, {}).values()]) for m in methods}


def expected_ordering(metrics: Mapping, area_error: str,
                      region_of: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
  """The paper's claims checked on `metrics`: `(claim, "holds" | "does not hold" |
  "not checked", detail)`.

  Args:
    metrics: the metrics.json dict.
    area_error: "mape" or "mae" (the compared effectiveness error).
    region_of: regional variable -> region name (positional setting), else None.
  """
  methods = metrics["methods"]
  eff = variable_means(metrics, "effectiveness", area_error)
  loc = variable_means(metrics, "localisation", "outside_share")
  out = []

  def chain(claim, values, order):
    missing = [methods_lib.display_name(m) for m in order if values.get(m) is None]
    if missing:
      out.append((claim, "not checked", f"{', '.join(missing)} not evaluated"))
      return
    ok = all(values[a] < values[b] for a, b in zip(order, order[1:]))
    detail = " vs ".join(f"{methods_lib.display_name(m)} {values[m]:.3g}" for m in order)
    out.append((claim, "holds" if ok else "does not hold", detail))

  chain(f"effectiveness ({UNITS[area_error]}, oracle): Seg-CFT < Reg-CFT < No-CFT", eff,
        ("seg_cft", "reg_cft", "no_cft"))
  chain("localisation (outside share): Seg-CFT < Reg-CFT", loc, ("seg_cft", "reg_cft"))
  if region_of:
    regions = _groups(region_of)
    # (claim, section, key, groups, details for every group (else only where it fails))
    claims = ((f"effectiveness ({UNITS[area_error]}, oracle): Pos-Seg-CFT lowest in every "
               f"region", "effectiveness", area_error, regions, True),
              ("localisation (outside share): Pos-Seg-CFT lowest in every region",
               "localisation", "outside_share", regions, True),
              (f"effectiveness ({UNITS[area_error]}, oracle): Pos-Seg-CFT lowest for every "
               f"regional variable", "effectiveness", area_error,
               {v: [v] for v in region_of}, False))
    checkable = "pos_seg_cft" in methods and len(methods) > 1
    for claim, section, key, groups, every in claims:
      if not checkable:
        out.append((claim, "not checked", "Pos-Seg-CFT or every other method not evaluated"))
        continue
      means = group_means(metrics, section, key, groups)
      ranked = {g: sorted((means[m][g], m) for m in methods if means[m][g] is not None)
                for g in groups}
      fails = [g for g, r in ranked.items() if not r or r[0][1] != "pos_seg_cft"]
      details = [f"{g}: lowest {_ranking(ranked[g])}" for g in (groups if every else fails)]
      if not details:
        details = [f"all {len(groups)} regional variables"]
      out.append((claim, "does not hold" if fails else "holds", "; ".join(details)))
  return out


def _ranking(ranked: Sequence[tuple[float, str]]) -> str:
  """'Pos-Seg-CFT 15.3 (next Seg-CFT 19.4)' from ascending `(value, method)` pairs."""
  if not ranked:
    return "none"
  (v, m), rest = ranked[0], ranked[1:]
  text = f"{methods_lib.display_name(m)} {v:.3g}"
  if not rest:
    return text
  return text + f" (next {methods_lib.display_name(rest[0][1])} {rest[0][0]:.3g})"


def _groups(region_of: Mapping[str, str]) -> dict[str, list[str]]:
  """region -> its variables, regions in the order they first appear."""
  out: dict[str, list[str]] = {}
  for v, r in region_of.items():
    out.setdefault(r, []).append(v)
  return out


def group_means(metrics: Mapping, section: str, key: str, groups: Mapping[str, Sequence[str]]
                ) -> dict[str, dict[str, float | None]]:
  """method -> group -> mean of `methods[m][section][v][key]` over the group's variables (each
  weighted equally; e.g. a region's lumen, calcified and non-calcified areas)."""
  methods = metrics["methods"]
  per = {g: _per_variable(methods, section, key, vs) for g, vs in groups.items()}
  return {m: {g: _mean(per[g][m]) for g in groups} for m in methods}


def _summary(metrics: Mapping, names: Mapping[str, str], err: str) -> list[str]:
  methods = metrics["methods"]
  cols = {"effectiveness": ("effectiveness", err), "own": ("effectiveness", f"{err}_by_predictor"),
          "preservation": ("preservation", err), "share": ("localisation", "outside_share"),
          "shift": ("localisation", "outside_shift_abs"), "tmae": ("true_cf", "mae"),
          "tpsnr": ("true_cf", "psnr")}
  means = {k: variable_means(metrics, *sec) for k, sec in cols.items()}
  times = list(next(iter(methods.values()), {}).get("composition", {}))
  rows = []
  for m in methods:
    c, r, f = (methods[m].get(k, {}) for k in ("composition", "reversibility", "fit"))
    share = means["share"][m]
    rows.append([names[m], _fmt(means["effectiveness"][m]), _fmt(means["own"][m]),
                 _fmt(means["preservation"][m]), _fmt(None if share is None else 100 * share, 1),
                 _fmt(means["shift"][m]), _fmt(means["tmae"][m]), _fmt(means["tpsnr"][m], 1),
                 *[_fmt(c.get(k)) for k in times], _fmt(r.get("l1")), _fmt(f.get("bpd"), 3)])
  header = ["method", f"effectiveness {UNITS[err]}", f"own predictor {UNITS[err]}",
            f"preservation {UNITS[err]}", "outside share (%)", "abs. outside shift",
            "true-CF MAE", "true-CF PSNR (dB)", *[f"composition x{k[3:]}" for k in times],
            "reversibility", "bits/dim"]
  return _table(header, rows)


def _by_kind_shift(metrics: Mapping, names: Mapping[str, str]) -> list[str]:
  """Signed outside shift per intervention kind, averaged over the variables."""
  methods = metrics["methods"]
  kinds = list(dict.fromkeys(k for m in methods.values() for loc in m.get("localisation", {})
                             .values() for k in loc.get("by_target", {})))
  rows = [[names[m], *[_fmt(_mean([loc.get("by_target", {}).get(k, {}).get("outside_shift")
                                   for loc in methods[m].get("localisation", {}).values()]))
                       for k in kinds]] for m in methods]
  return _table(["method", *kinds], rows)


def render(metrics: Mapping, config, figures: Sequence[str],
           region_of: Mapping[str, str] | None = None) -> str:
  """The markdown report of one workdir (one setting).

  Args:
    metrics: the metrics.json dict.
    config: the experiment config (name, variant).
    figures: figure file names under figures/.
    region_of: regional variable -> region name (positional setting), else None.
  """
  conv, methods = metrics["conventions"], metrics["methods"]
  err = conv["area_error"]
  setting = f"{config.name}, {conv['setting']} setting"
  variables = list(dict.fromkeys(v for m in methods.values() for v in m.get("effectiveness", {})))
  names = {m: methods_lib.display_name(m) for m in methods}
  own = ", ".join(f"{methods_lib.display_name(k)}: {v}"
                  for k, v in conv["training_predictor"].items())
  lines = [f"# Evaluation: {config.name} ({config.variant}), {conv['setting']} setting", "",
           f"Results on synthetic data when the dataset is a phantom (synth_chest, "
           f"synth_vessel). The first {conv['num_examples']} examples of the {conv['split']} "
           f"split, seed {conv['seed']}. Methods evaluated: {', '.join(names.values())}; a "
           f"method appears once its stage has completed in the workdir.", "",
           f"## Summary ({setting})", ""]
  lines += _summary(metrics, names, err)
  lines += ["", f"*Means over the variables {', '.join(variables)}, each weighted equally. "
            f"Effectiveness and preservation: {conv[err]}, measured on x* by the oracle (hard "
            f"argmax area); own predictor: the same measured by the predictor the method was "
            f"fine-tuned with ({own}). Localisation: {conv['localisation']}. True CF: "
            f"{conv['true_cf']}. Composition: {conv['composition']}. Reversibility: "
            f"{conv['reversibility']}. Image differences in 0-255 units; fit: {conv['fit']}.*",
            ""]
  lines += _variable_table(f"Effectiveness per variable ({setting}): oracle, {UNITS[err]}",
                           methods, names, "effectiveness", err, variables, metrics,
                           (("oracle_on_factual", err, "*oracle on factual*"),
                            ("oracle_on_true_cf", err, "*oracle on true CF*")))
  changes = ", ".join(f"{100 * r:+.0f}%" for r in conv["relative_changes"])
  lines += [f"*Targets: {conv['targets']} ({changes}). Reference rows: the oracle on the "
            f"factual images against the true areas, and on the rendered true counterfactuals "
            f"against their targets: the error a perfect counterfactual would get.*", ""]
  for p in conv["predictors"][1:]:
    vals = {m: [methods[m].get("effectiveness", {}).get(v, {}).get("by_predictor", {})
                .get(p, {}).get(err) for v in variables] for m in methods}
    if any(x is not None for vs in vals.values() for x in vs):
      lines += [f"### Effectiveness measured by {p} ({setting}), {UNITS[err]}", ""]
      lines += _table(["method", *variables], [[names[m], *map(_fmt, vals[m])] for m in methods])
      lines += ["", f"*The same counterfactuals measured by {p} instead of the oracle "
                f"(training predictors: {own}); a method that over-fits its predictor scores "
                f"much better under it than under the oracle.*", ""]
  if region_of:
    lines += _region_table(metrics, names, err, region_of, setting)
  lines += _variable_table(f"Preservation ({setting}): oracle, {UNITS[err]}", methods, names,
                           "preservation", err, variables)
  lines += [f"*{conv['preservation']}.*", ""]
  true_loc = "true_cf_localisation"
  lines += _variable_table(f"Localisation: outside share, % ({setting})", methods, names,
                           "localisation", "outside_share", variables, metrics,
                           ((true_loc, "outside_share", "*true CF*"),), scale=100.0, digits=1)
  lines += _variable_table(f"Localisation: absolute outside shift, 0-255 ({setting})", methods,
                           names, "localisation", "outside_shift_abs", variables, metrics,
                           ((true_loc, "outside_shift_abs", "*true CF*"),))
  lines += [f"## Localisation: signed outside shift by intervention, 0-255 ({setting})", ""]
  lines += _by_kind_shift(metrics, names)
  lines += ["", f"*{conv['localisation']}. Lower share is better; a shift of one sign under "
            f"increases and the other under decreases is a global brightness change. Reference "
            f"row *true CF*: the same measures of the rendered true counterfactual against x "
            f"(relative changes only): what a perfect counterfactual changes outside T.*", ""]
  if any(methods[m].get("true_cf") for m in methods):
    lines += _variable_table(f"True-counterfactual MAE, 0-255 ({setting})", methods, names,
                             "true_cf", "mae", variables)
    lines += _variable_table(f"True-counterfactual PSNR, dB ({setting})", methods, names,
                             "true_cf", "psnr", variables, digits=1)
    lines += [f"*{conv['true_cf']}.*", ""]
  lines += _exposure_table(metrics, setting, variables)
  lines += ["## Expected ordering (Seg-CFT paper)", ""]
  for claim, status, detail in expected_ordering(metrics, err, region_of):
    lines.append(f"* {claim}: **{status}** ({detail}).")
  lines += [""]
  if figures:
    lines += ["## Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
  return "\n".join(lines)


def _region_table(metrics: Mapping, names: Mapping[str, str], err: str,
                  region_of: Mapping[str, str], setting: str) -> list[str]:
  """Effectiveness, preservation and outside share per region (SPEC §4 "per variable and per
  region"): each the mean over the region's variables."""
  groups = _groups(region_of)
  cols = (("effectiveness", err, 1.0, 2), ("preservation", err, 1.0, 2),
          ("localisation", "outside_share", 100.0, 1))
  means = [(group_means(metrics, sec, key, groups), scale, digits)
           for sec, key, scale, digits in cols]
  rows = [[names[m], *[_fmt(None if g[m][r] is None else scale * g[m][r], digits)
                       for g, scale, digits in means for r in groups]] for m in names]
  header = ["method", *[f"{label} {r}" for label in ("effectiveness", "preservation",
                                                     "outside share (%)") for r in groups]]
  return ([f"## Per region ({setting}): oracle, {UNITS[err]}; outside share", ""] +
          _table(header, rows) +
          ["", f"*Each entry is the mean over the region's variables "
           f"({'; '.join(f'{r}: ' + ', '.join(vs) for r, vs in groups.items())}), each "
           f"weighted equally; the per-variable tables give each structure.*", ""])


def _exposure_table(metrics: Mapping, setting: str, variables: Sequence[str]) -> list[str]:
  """Each predictor's change of every area under the global exposure gains (if measured)."""
  conv = metrics["conventions"]
  block = metrics.get("reference", {}).get("exposure_sensitivity")
  gains = conv.get("exposure_gains", [])
  if not block or not gains:
    return []
  keys = [results.exposure_key(g) for g in gains]
  rows = [[p, *[" / ".join(_fmt(block[p].get(v, {}).get(k)) for k in keys) for v in variables]]
          for p in conv["predictors"] if p in block]
  title = " / ".join(f"{g:g}" for g in gains)
  return ([f"## Exposure sensitivity of the predictors, % change at gain {title} ({setting})",
           ""] + _table(["predictor", *variables], rows) +
          ["", f"*{conv['exposure_sensitivity']}. A predictor that reads areas from the "
           f"global brightness (the shortcut behind Reg-CFT's global effect) changes its "
           f"readings with the gain; one that reads outlines barely does.*", ""])


def _variable_table(title, methods, names, section, key, variables, metrics=None,
                    refs: Sequence[tuple[str, str, str]] = (), scale=1.0, digits=2) -> list[str]:
  """Methods (then the reference rows `refs`: (metrics["reference"] block, key, label)) by
  variable, with the mean over the variables."""
  scaled = lambda x: _fmt(None if x is None else scale * x, digits)
  vals = _per_variable(methods, section, key, variables)
  rows = [[names[m], *map(scaled, vals[m]), scaled(_mean(vals[m]))] for m in methods]
  for ref, ref_key, label in refs:
    block = (metrics or {}).get("reference", {}).get(ref)
    if block:
      rv = [block.get(v, {}).get(ref_key) for v in variables]
      rows.append([label, *map(scaled, rv), scaled(_mean(rv))])
  return [f"## {title}", ""] + _table(["method", *variables, "mean"], rows) + [""]
