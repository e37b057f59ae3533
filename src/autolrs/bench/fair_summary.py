"""The fair protocol's summary: per workload and budget every method's scores and speed-up.

:func:`summarize_fair` groups the runs into cells (workload, budget B), builds the tuned
cosine's score-versus-budget curve per workload, and adds the aggregates over cells and the
bar checks for autolrs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from autolrs.bench.harness import RunResult, median_curve, steps_to_target
from autolrs.bench.methods import is_cosine_grid
from autolrs.bench.report_common import REFERENCE, median_or_nan
from autolrs.bench.speedup import geomean, monotone_envelope, speedup
from autolrs.bench.tuned import tuned_point
from autolrs.events import ACCOUNTS

DISCARDED = {
    "discarded": ("range_test", "discarded_trials", "rolled_back"),
    "discarded_or_early_stopped": ("range_test", "discarded_trials", "rolled_back",
                                   "early_stopped"),
}
"""The medians of these sums of accounts a row's accounting holds beside each account: what the
search threw away, and that with the steps early stopping undid."""

__all__ = [
    "LR_FREE_ANCHORS",
    "NAIVE_MEDIAN_SLACK",
    "NAIVE_SEED_SLACK",
    "is_fair",
    "never_behind_naive",
    "summarize_fair",
]

LR_FREE_ANCHORS = ("schedulefree", "prodigy", "dadapt", "lrfinder-onecycle")
NAIVE_MEDIAN_SLACK = 1.01  # (a): autolrs' median final <= 1.01 x naive's median final
NAIVE_SEED_SLACK = 1.10  # (a): and no autolrs seed > 1.10 x naive's median final


def is_fair(results: list[RunResult]) -> bool:
    """Whether ``results`` come from a fair-protocol suite (``extra.protocol == "fair"``)."""
    return any(r.extra.get("protocol") == "fair" for r in results)


def never_behind_naive(ours: list[float], naive: list[float]) -> dict[str, Any]:
    """Bar check (a) on one workload and budget, from the final scores over seeds.

    PASS when autolrs' median final <= 1.01 x naive's median final and no autolrs seed is
    above 1.10 x naive's median final.
    """
    ours_median, naive_median = median_or_nan(ours), median_or_nan(naive)
    worst = max(ours) if ours else math.nan
    median_ok = ours_median <= NAIVE_MEDIAN_SLACK * naive_median
    seeds_ok = worst <= NAIVE_SEED_SLACK * naive_median
    return {
        "autolrs_median": ours_median,
        "naive_median": naive_median,
        "worst_seed": worst,
        "median_ratio": ours_median / naive_median if naive_median else math.nan,
        "worst_ratio": worst / naive_median if naive_median else math.nan,
        "median_ok": bool(median_ok),
        "seeds_ok": bool(seeds_ok),
        "verdict": "PASS" if median_ok and seeds_ok else "FAIL",
    }


def _cell_key(workload: str, budget: int) -> str:
    return f"{workload} B={budget}"


def summarize_fair(results: list[RunResult]) -> dict[str, Any]:
    """Per workload and budget: every method's final scores, speed-up vs the tuned cosine,
    steps to target, autolrs' accounting and overheads; then the aggregates and bar checks."""
    cells: dict[tuple[str, int], dict[str, list[RunResult]]] = {}
    for r in results:
        cells.setdefault((r.workload, r.budget), defaultdict(list))[r.method].append(r)
    curves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (workload, budget), by_method in sorted(cells.items()):
        point = tuned_point(by_method)
        if point is not None:
            curves[workload].append({"budget": budget, **point})
    for workload, points in curves.items():
        env = dict(monotone_envelope([(p["budget"], p["score"]) for p in points]))
        for p in points:
            p["envelope"] = env.get(float(p["budget"]), math.nan)
    out: dict[str, Any] = {"protocol": "fair", "cells": {}, "curves": dict(curves)}
    for (workload, budget), by_method in sorted(cells.items()):
        curve = [(p["budget"], p["score"]) for p in curves.get(workload, [])]
        any_run = next(iter(by_method.values()))[0]
        rows = {m: _fair_row(runs, curve, budget) for m, runs in by_method.items()}
        out["cells"][_cell_key(workload, budget)] = {
            "workload": workload,
            "budget": budget,
            "factor": any_run.extra.get("budget_factor"),
            "step_hint": any_run.extra.get("step_hint"),
            "target": any_run.target,
            "methods": rows,
        }
    out["aggregates"] = _fair_aggregates(out["cells"])
    out["checks"] = _fair_checks(out["cells"], out["aggregates"])
    return out


def _fair_row(
    runs: list[RunResult], curve: list[tuple[float, float]], budget: int
) -> dict[str, Any]:
    finals = [r.final_score for r in runs]
    median = median_or_nan(finals)
    sp = speedup(curve, median, budget)
    target = runs[0].target
    median_steps = steps_to_target(median_curve([r.curve for r in runs]), target)
    accs = [r.final_accuracy for r in runs if r.final_accuracy is not None]
    row: dict[str, Any] = {
        "seeds": len(runs),
        "seed_ids": sorted(r.seed for r in runs),
        "final_scores": finals,
        "final_score": median,
        "final_min": min(finals),
        "final_max": max(finals),
        "final_accuracy": median_or_nan(accs) if accs else None,
        "speedup": sp.value,
        "speedup_bound": sp.bound,
        "cosine_budget_needed": sp.needed,
        "steps_to_target": median_steps,
        "reached": sum(math.isfinite(r.steps_to_target) for r in runs),
        "seconds_per_step": median_or_nan([r.seconds_per_step for r in runs]),
        "diverged": sum(r.diverged for r in runs),
    }
    info = [r.extra.get("autolrs") for r in runs]
    if all(info):
        row["controller_pct"] = 100 * median_or_nan(
            [
                a.get("controller_seconds", math.nan) / r.extra["charged_seconds"]
                for a, r in zip(info, runs)
                if r.extra.get("charged_seconds")
            ]
        )
        row["val_fn_calls"] = median_or_nan(
            [a.get("val_fn_calls", a.get("val_calls", math.nan)) for a in info]
        )
        if all(a.get("accounting") for a in info):
            shares = {
                name: median_or_nan(
                    # (runs stored before an account existed did not use it)
                    [a["accounting"].get(name, 0) / max(r.budget, 1) for a, r in zip(info, runs)]
                )
                for name in ACCOUNTS
            }
            for name, parts in DISCARDED.items():
                shares[name] = median_or_nan(
                    [
                        sum(a["accounting"].get(k, 0) for k in parts) / max(r.budget, 1)
                        for a, r in zip(info, runs)
                    ]
                )
            row["accounting"] = shares
    return row


def _fair_aggregates(cells: dict[str, Any]) -> dict[str, Any]:
    per: dict[str, dict[str, float]] = defaultdict(dict)
    for key, cell in cells.items():
        for method, row in cell["methods"].items():
            if not is_cosine_grid(method) and math.isfinite(row["speedup"]):
                per[method][key] = row["speedup"]
    out = {}
    for method, values in per.items():
        bounds = {k: cells[k]["methods"][method]["speedup_bound"] for k in values}
        out[method] = {
            "geomean": geomean(list(values.values())),
            "cells": len(values),
            "clipped": sum(1 for b in bounds.values() if b),
            "speedups": values,
            "bounds": bounds,
        }
    return out


_PAST_BOUND = 1e-9


def _strict(agg: dict[str, Any], keys: list[str]) -> float:
    """Geo-mean over ``keys`` for the bar check, a clipped cell counted just past its bound in
    its direction (b* is strictly beyond the clip): a "<=1.00x" cell cannot pass ">= 1.0"."""
    nudge = {"<=": 1 - _PAST_BOUND, ">=": 1 + _PAST_BOUND, "": 1.0}
    return geomean([agg["speedups"][k] * nudge[agg["bounds"][k]] for k in keys])


def _fair_checks(cells: dict[str, Any], aggregates: dict[str, Any]) -> dict[str, Any]:
    behind = {}
    for key, cell in cells.items():
        rows = cell["methods"]
        if REFERENCE in rows and "naive" in rows:
            behind[key] = never_behind_naive(
                rows[REFERENCE]["final_scores"], rows["naive"]["final_scores"]
            )
    ours = aggregates.get(REFERENCE)
    speed: dict[str, Any] = {"verdict": "n/a", "anchors": {}, "missing": []}
    if ours is not None:
        speed["autolrs_geomean"] = ours["geomean"]
        speed["autolrs_clipped"] = ours["clipped"]
        speed["autolrs_cells"] = ours["cells"]
        ok = _strict(ours, list(ours["speedups"])) >= 1.0
        for anchor in LR_FREE_ANCHORS:
            theirs = aggregates.get(anchor)
            if theirs is None:
                speed["missing"].append(anchor)
                continue
            common = sorted(set(ours["speedups"]) & set(theirs["speedups"]))
            a = geomean([ours["speedups"][k] for k in common])
            b = geomean([theirs["speedups"][k] for k in common])
            beats = bool(common) and _strict(ours, common) > _strict(theirs, common)
            speed["anchors"][anchor] = {
                "autolrs": a,
                "anchor": b,
                "cells": len(common),
                "beats": bool(beats),
            }
            ok = ok and beats
        speed["verdict"] = "PASS" if ok and math.isfinite(ours["geomean"]) else "FAIL"
        speed["complete"] = not speed["missing"]
    return {
        "never_behind_naive": behind,
        "never_behind_naive_verdict": (
            "n/a"
            if not behind
            else "PASS"
            if all(v["verdict"] == "PASS" for v in behind.values())
            else "FAIL"
        ),
        "speedup": speed,
    }
