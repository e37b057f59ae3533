"""The start-rate sweep's report: autolrs from optimizers built at the tuned rate times 1/100 to
10, against what a user has without tuning and against the tuned cosine.

Read from the fair protocol's summary (:func:`autolrs.bench.fair_summary.summarize_fair`),
whose cells hold every method's median final score, speed-up and step accounting. The bar:

* (a) from every start, in every cell, autolrs' median final score is within 2 % of the best
  median of what a user has without tuning (the naive default at the framework's customary
  rate, Schedule-Free, Prodigy, D-Adaptation);
* (b) over the cells whose tuned curve is not flat, the geo-mean of the speed-ups (each capped
  to [0.5x, 2x]) is at least 1.0x; in a flat cell the median is within 5 % of the tuned cosine's;
* (c) the median run's discarded steps are at most 10 % of the budget from every start (the
  steps early stopping undid are reported beside it, not counted in it).

The bar judges ``autolrs@x<f>`` (today's default); other start-scaled methods are shown beside it.
"""

from __future__ import annotations

import math
import os
from typing import Any

from autolrs.bench.methods import split_start_scale
from autolrs.bench.report_common import accounting_table
from autolrs.bench.speedup import geomean
from autolrs.bench.tuned import is_cosine_grid

__all__ = [
    "CAP",
    "FLAT_SLOPE",
    "NO_TUNING",
    "capped",
    "flat_cells",
    "summarize_sweep",
    "sweep_lines",
    "write_sweep_report",
]

NO_TUNING = ("naive", "schedulefree", "prodigy", "dadapt")
"""What a user has without tuning: bar (a) compares with the best of these."""
CAP = (0.5, 2.0)
"""Each cell's speed-up is capped to this interval in the geo-mean (the table keeps the raw)."""
FLAT_SLOPE = 0.05
"""A tuned curve with |d log score / d log B| below this next to B is flat there."""
REFERENCE = "autolrs"
"""The method the bar judges (other start-scaled methods, e.g. ``autolrs-upward``, are shown)."""
NO_TUNING_SLACK = 1.02
DISCARDED_MAX = 0.10
FLAT_SLACK = 1.05


def capped(value: float) -> float:
    """A speed-up clipped to :data:`CAP`."""
    return min(max(value, CAP[0]), CAP[1])


def flat_cells(summary: dict[str, Any]) -> dict[str, float]:
    """Per cell, the tuned curve's local slope |d log score / d log B| (the segment from B to the
    next budget up, else from the next budget down); absent when the curve has one point."""
    slopes: dict[str, float] = {}
    for key, cell in summary["cells"].items():
        points = sorted(
            (p["budget"], p["score"]) for p in summary["curves"].get(cell["workload"], [])
            if math.isfinite(p["score"]) and p["score"] > 0
        )
        budgets = [b for b, _ in points]
        if cell["budget"] not in budgets or len(points) < 2:
            continue
        i = budgets.index(cell["budget"])
        j = i + 1 if i + 1 < len(points) else i - 1
        (b0, s0), (b1, s1) = points[i], points[j]
        slopes[key] = abs(math.log(s1 / s0) / math.log(b1 / b0))
    return slopes


def summarize_sweep(summary: dict[str, Any]) -> dict[str, Any]:
    """The sweep's rows and bar checks from a fair summary holding ``autolrs@x<scale>`` runs."""
    slopes = flat_cells(summary)
    rows: list[dict[str, Any]] = []
    for key, cell in summary["cells"].items():
        methods = cell["methods"]
        tuned = next((p for p in summary["curves"].get(cell["workload"], [])
                      if p["budget"] == cell["budget"]), None)
        anchors = {m: methods[m]["final_score"] for m in NO_TUNING if m in methods}
        best_anchor = min(anchors.values()) if anchors else math.nan
        flat = key in slopes and slopes[key] < FLAT_SLOPE
        for method, row in methods.items():
            base, scale = split_start_scale(method)
            if scale is None:
                continue
            acc = row.get("accounting", {})
            ratio_tuned = row["final_score"] / tuned["score"] if tuned else math.nan
            rows.append({
                "cell": key, "workload": cell["workload"], "budget": cell["budget"],
                "method": base, "scale": scale, "seeds": row["seeds"],
                "score": row["final_score"], "min": row["final_min"], "max": row["final_max"],
                "speedup": row["speedup"], "bound": row["speedup_bound"],
                "flat": flat, "slope": slopes.get(key), "ratio_tuned": ratio_tuned,
                "best_anchor": best_anchor,
                "ratio_anchor": row["final_score"] / best_anchor if anchors else math.nan,
                "discarded": acc.get("discarded", math.nan), "accounting": acc,
                "with_early_stop": acc.get("discarded_or_early_stopped",
                                           acc.get("discarded", math.nan)),
            })
    return {"rows": rows, "checks": _checks([r for r in rows if r["method"] == REFERENCE])}


def _checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    a_fail = [r for r in rows if not r["ratio_anchor"] <= NO_TUNING_SLACK]
    steep = [r for r in rows if not r["flat"]]
    values = [capped(r["speedup"]) for r in steep if math.isfinite(r["speedup"])]
    geo = geomean(values)
    flat_fail = [r for r in rows if r["flat"] and not r["ratio_tuned"] <= FLAT_SLACK]
    c_fail = [r for r in rows if not r["discarded"] <= DISCARDED_MAX]
    stopped_fail = [r for r in rows if not r["with_early_stop"] <= DISCARDED_MAX]
    return {
        "a": {"verdict": "PASS" if rows and not a_fail else "FAIL",
              "failing": [(r["cell"], r["scale"], r["ratio_anchor"]) for r in a_fail]},
        "b": {"verdict": "PASS" if rows and geo >= 1.0 and not flat_fail else "FAIL",
              "geomean": geo, "cells": len(values),
              "flat_failing": [(r["cell"], r["scale"], r["ratio_tuned"]) for r in flat_fail]},
        "c": {"verdict": "PASS" if rows and not c_fail else "FAIL",
              "failing": [(r["cell"], r["scale"], r["discarded"]) for r in c_fail],
              "with_early_stop": "PASS" if rows and not stopped_fail else "FAIL",
              "early_stop_failing": [(r["cell"], r["scale"], r["with_early_stop"])
                                     for r in stopped_fail]},
    }


def _fmt_row(r: dict[str, Any]) -> str:
    judged = (f"{r['ratio_tuned']:.3f} of tuned" if r["flat"]
              else f"{r['bound']}{r['speedup']:.2f}x")
    return f"{r['score']:.4f} ({judged})"


def sweep_lines(summary: dict[str, Any]) -> list[str]:
    """The sweep's Markdown section: scores per method and start, bar checks, accounting."""
    sweep = summarize_sweep(summary)
    rows = sweep["rows"]
    if not rows:
        return []
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    scales = sorted({r["scale"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    columns = [(c, s) for c in cells for s in scales]
    lines = ["## The start-rate sweep", "",
             "autolrs with the optimizer built at the tuned cosine's rate (chosen on the tuning "
             "holdout at that budget) times the factor in the column. Each entry: median final "
             "score (speed-up vs the tuned cosine; in a cell whose tuned curve is flat, the score "
             "as a share of the tuned cosine's). The methods without tuning do not depend on the "
             "start.", ""]
    lines.append("| method | " + " | ".join(f"{c} x{s:g}" for c, s in columns) + " |")
    lines.append("| --- |" + " ---: |" * len(columns))
    index = {(r["method"], r["cell"], r["scale"]): r for r in rows}
    for method in methods:
        entries = [_fmt_row(index[(method, c, s)]) if (method, c, s) in index else "-"
                   for c, s in columns]
        lines.append(f"| {method} | " + " | ".join(entries) + " |")
    for anchor in (*NO_TUNING, "tuned cosine"):
        entries = []
        for c, _ in columns:
            cell = summary["cells"][c]
            if anchor == "tuned cosine":
                point = next((p for p in summary["curves"].get(cell["workload"], [])
                              if p["budget"] == cell["budget"]), None)
                entries.append("-" if point is None else
                               f"{point['score']:.4f} (lr {point['lr']:.3g}, {point['chosen_on']})")
            else:
                row = cell["methods"].get(anchor)
                entries.append("-" if row is None else f"{row['final_score']:.4f}")
        lines.append(f"| {anchor} | " + " | ".join(entries) + " |")
    lines += ["", *_check_lines(sweep["checks"]), ""]
    lines += ["| method | cell | start | seeds | median [min, max] | vs best untuned | vs tuned | "
              "tuned curve slope | discarded |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | "
              "---: | ---: |"]
    for r in rows:
        flat = " (flat)" if r["flat"] else ""
        slope = "-" if r["slope"] is None else f"{r['slope']:.3f}{flat}"
        lines.append(
            f"| {r['method']} | {r['cell']} | x{r['scale']:g} | {r['seeds']} | "
            f"{r['score']:.4f} [{r['min']:.4f}, {r['max']:.4f}] | {r['ratio_anchor']:.3f} | "
            f"{r['ratio_tuned']:.3f} | {slope} | "
            f"{100 * r['discarded']:.1f} % |")
    shares = {f"{r['method']} {r['cell']} x{r['scale']:g}": r["accounting"]
              for r in rows if r["accounting"]}
    lines += accounting_table(shares, "share of the budget, per cell and start")
    return lines + [""]


def _check_lines(checks: dict[str, Any]) -> list[str]:
    a, b, c = checks["a"], checks["b"], checks["c"]
    lines = [f"(a) Within {100 * (NO_TUNING_SLACK - 1):.0f} % of the best method without tuning "
             f"from every start: {a['verdict']}"
             + (" (failing: " + "; ".join(f"{k} x{s:g} {v:.3f}" for k, s, v in a["failing"]) + ")"
                if a["failing"] else "") + ".",
             f"(b) Geo-mean speed-up over the non-flat cells and every start, each capped to "
             f"[{CAP[0]:g}x, {CAP[1]:g}x]: {b['geomean']:.2f}x over {b['cells']}; flat cells "
             f"within {100 * (FLAT_SLACK - 1):.0f} % of the tuned cosine: {b['verdict']}"
             + (" (flat cells failing: " + "; ".join(f"{k} x{s:g} {v:.3f}" for k, s, v in
                                                     b["flat_failing"]) + ")"
                if b["flat_failing"] else "") + ".",
             f"(c) The median run's discarded steps at most {100 * DISCARDED_MAX:.0f} % of the "
             f"budget from every start: {c['verdict']}"
             + _failing_shares(c["failing"]) + ". Counting too the steps that early stopping "
             f"undid (the overfitting guard's return to its best state): "
             f"{c.get('with_early_stop', '-')}"
             + _failing_shares(c.get("early_stop_failing", [])) + "."]
    return lines


def _failing_shares(failing: list[tuple[str, float, float]]) -> str:
    """`` (failing: cell xS P %; ...)`` for the cell-starts over (c)'s share, or nothing."""
    if not failing:
        return ""
    return " (failing: " + "; ".join(f"{k} x{s:g} {100 * v:.1f} %" for k, s, v in failing) + ")"


def write_sweep_report(summary: dict[str, Any], out_dir: str) -> str | None:
    """Writes ``sweep.md`` beside the fair report when the runs hold a sweep; returns its text."""
    if not any(split_start_scale(m)[1] is not None and not is_cosine_grid(m)
               for cell in summary["cells"].values() for m in cell["methods"]):
        return None
    text = "\n".join(["# autolrs from any starting rate", "", *sweep_lines(summary)])
    with open(os.path.join(out_dir, "sweep.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text
