"""The quick protocol's report: budget 1.5H, steps to target read off the median score curve.

:func:`summarize` turns the runs into medians, overheads and speed-ups against autolrs;
:func:`write_quick_report` writes them as ``report.md`` and ``summary.json``;
:func:`write_ablation` writes the compact table of every method against a base.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from autolrs.bench.harness import RunResult, _json_safe, median_curve, steps_to_target
from autolrs.bench.report_common import (
    REFERENCE,
    accounting_table,
    fmt_steps,
    is_tuned,
    median_or_nan,
    order_methods,
)
from autolrs.bench.report_figures import quick_figures
from autolrs.events import ACCOUNTS

__all__ = ["TIE", "summarize", "write_ablation", "write_quick_report"]

TIE = 0.05  # steps to target within 5 % of each other: a tie


def summarize(results: list[RunResult], targets: dict[str, Any]) -> dict[str, Any]:
    """Per (budget factor, workload, method): medians over seeds, overheads, speed-ups.

    Args:
        results: The runs of a quick-protocol suite.
        targets: Per workload, its target score and oracle (``targets.json``'s workloads).

    Returns:
        ``{"workloads": ..., "speedups": ..., "versions_note": ...}``: per workload (a key
        ``"<workload> x<factor>"`` for a budget factor other than 1) its rows per method, and
        per method its speed-up and verdict against autolrs per workload.
    """
    groups: dict[tuple[float, str], dict[str, list[RunResult]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in results:
        groups[(float(r.extra.get("budget_factor", 1.0)), r.workload)][r.method].append(r)
    out: dict[str, Any] = {"workloads": {}, "speedups": {}, "versions_note": "medians over seeds"}
    for (factor, workload), by_method in sorted(groups.items()):
        key = workload if factor == 1.0 else f"{workload} x{factor:g}"
        out["workloads"][key] = _workload_summary(workload, by_method, targets)
    out["speedups"] = _speedups(out["workloads"])
    return out


def _workload_summary(
    workload: str, by_method: dict[str, list[RunResult]], targets: dict[str, Any]
) -> dict[str, Any]:
    """One workload's target, oracle rate, budget and row per method."""
    naive = by_method.get("naive", [])
    naive_sps = median_or_nan([r.seconds_per_step for r in naive]) if naive else math.nan
    target = targets.get(workload, {}).get("target")
    rows = {method: _quick_row(runs, target, naive_sps) for method, runs in by_method.items()}
    oracle = rows.get("oracle")
    for row in rows.values():
        base = oracle["seconds_to_target"] if oracle else math.nan
        row["normalized_time"] = (
            row["seconds_to_target"] / base if base and math.isfinite(base) else math.nan
        )
    info = targets.get(workload, {})
    return {
        "target": info.get("target"),
        "oracle_lr": info.get("oracle", {}).get("lr"),
        "budget": max(r["budget"] for r in rows.values()),
        "methods": rows,
    }


def _quick_row(runs: list[RunResult], target: float | None, naive_sps: float) -> dict[str, Any]:
    """One method's medians over its seeds on one workload."""
    budget = max(r.budget for r in runs)
    # Steps to target are read off the median (over seeds) score curve, the way the
    # target itself is defined; "reached" counts the seeds that reach it on their own.
    median_steps = steps_to_target(median_curve([r.curve for r in runs]), target)
    at = int(median_steps) if math.isfinite(median_steps) else None
    seconds = [dict(r.seconds).get(at, math.inf) for r in runs] if at else [math.inf]
    sps = median_or_nan([r.seconds_per_step for r in runs])
    row = {
        "seeds": len(runs),
        "budget": budget,
        "steps_to_target": median_steps,
        "reached": sum(math.isfinite(r.steps_to_target) for r in runs),
        "seeds_steps_to_target": [r.steps_to_target for r in runs],
        "seconds_to_target": float(np.median(seconds)),
        "final_score": median_or_nan([r.final_score for r in runs]),
        "final_accuracy": median_or_nan([r.final_accuracy for r in runs])
        if runs[0].final_accuracy is not None
        else None,
        "seconds_per_step": sps,
        "overhead": sps / naive_sps if naive_sps == naive_sps else math.nan,
        "diverged": sum(r.diverged for r in runs),
    }
    if runs[0].method.startswith("autolrs"):
        row.update(_autolrs_shares(runs))
    return row


def _autolrs_shares(runs: list[RunResult]) -> dict[str, Any]:
    """autolrs' controller and validation shares of its time, and its step accounting."""
    info = [r.extra.get("autolrs", {}) for r in runs]
    charged = [r.extra.get("charged_seconds", math.nan) for r in runs]
    ctrl = [a.get("controller_seconds", math.nan) for a in info]
    val = [a.get("val_seconds", math.nan) for a in info]
    out: dict[str, Any] = {
        "controller_share": median_or_nan([c / t for c, t in zip(ctrl, charged) if t]),
        "validation_share": median_or_nan([v / t for v, t in zip(val, charged) if t]),
    }
    accounts = [a.get("accounting") for a in info]
    if all(accounts):
        out["accounting"] = {
            name: median_or_nan(
                [a.get(name, 0) / r.steps for a, r in zip(accounts, runs) if r.steps]
            )
            for name in ACCOUNTS
        }
    return out


def _verdict(ours: float, theirs: float, bounded: float) -> str:
    """autolrs' verdict against a method from both steps to target and their bounded ratio."""
    if not math.isfinite(ours) and not math.isfinite(theirs):
        return "tie"
    if abs(bounded - 1.0) <= TIE and math.isfinite(ours) and math.isfinite(theirs):
        return "tie"
    if bounded > 1.0 or (math.isfinite(ours) and not math.isfinite(theirs)):
        return "win"
    return "loss"


def _speedups(workloads: dict[str, Any]) -> dict[str, Any]:
    """Per method: its steps to target over autolrs' per workload, their geo-mean and W/T/L."""
    out: dict[str, Any] = {}
    for key, data in workloads.items():
        rows = data["methods"]
        if REFERENCE not in rows:
            continue
        ours = rows[REFERENCE]["steps_to_target"]
        budget = data["budget"]
        for method, row in rows.items():
            if method == REFERENCE:
                continue
            theirs = row["steps_to_target"]
            bounded = (theirs if math.isfinite(theirs) else budget) / (
                ours if math.isfinite(ours) else budget
            )
            out.setdefault(method, {})[key] = {
                "speedup": bounded,
                "verdict": _verdict(ours, theirs, bounded),
            }
    for per in out.values():
        values = [v["speedup"] for k, v in per.items() if " x" not in k]
        verdicts = [v["verdict"] for k, v in per.items() if " x" not in k]
        per["_geomean"] = float(math.exp(np.mean(np.log(values)))) if values else math.nan
        per["_record"] = {w: verdicts.count(w) for w in ("win", "tie", "loss")}
    return out


def _cells(summary: dict[str, Any], method: str, fmt: Callable[[dict[str, Any]], str]) -> list[str]:
    """One table cell per workload of ``summary``: ``fmt(row)`` of the method's row, or "-"."""
    rows = (data["methods"].get(method) for data in summary["workloads"].values())
    return ["-" if row is None else fmt(row) for row in rows]


def write_quick_report(
    results: list[RunResult],
    targets: dict[str, Any],
    out_dir: str,
    *,
    title: str,
    command: str,
    header: dict[str, Any] | None = None,
) -> str:
    """Writes the quick protocol's ``report.md``, ``summary.json`` and PNG figures.

    Args:
        results: The runs of a quick-protocol suite.
        targets: Per workload, its target score and oracle (``targets.json``'s workloads).
        out_dir: The folder to write to (made if missing).
        title: The report's title.
        command: The command that ran the suite, quoted in the report.
        header: The runs' header (machine, versions), if any.

    Returns:
        The Markdown text written to ``report.md``.
    """
    summary = summarize(results, targets)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(_json_safe(summary), f, indent=1)
    figures = quick_figures(results, summary, out_dir)
    methods_order = order_methods({m for d in summary["workloads"].values() for m in d["methods"]})
    lines = _intro_lines(title, command, header)
    lines += _steps_table(summary, methods_order)
    lines += _final_table(summary, methods_order)
    for w in summary["workloads"]:
        lines += _workload_lines(w, summary["workloads"][w], methods_order, figures.get(w, []))
    if "profile" in figures:
        lines += ["## Performance profile", "", f"![profile]({figures['profile']})", ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def _intro_lines(title: str, command: str, header: dict[str, Any] | None) -> list[str]:
    """The title, command, machine and versions, and what the numbers mean."""
    lines = [f"# {title}", ""]
    lines.append(f"Command: `{command}`")
    if header:
        lines.append(f"Machine: {header.get('machine', '?')}")
        lines.append(
            "Versions: " + ", ".join(f"{k} {v}" for k, v in header.get("versions", {}).items())
        )
    return lines + [
        "",
        "Steps to target count every optimizer step a method takes (autolrs' trials and range "
        "test, "
        "the LR finder's sweep); the harness's scoring is not charged. Medians over seeds; "
        "`>B` means the target was not reached within the budget B. Target = the tuned cosine "
        "grid's best median score x 1.01 (`benchmarks/targets.json`).",
        "",
    ]


def _steps_table(summary: dict[str, Any], methods_order: list[str]) -> list[str]:
    """Steps to target per method and workload, with autolrs' geo-mean speed-up and W/T/L."""
    workloads = list(summary["workloads"])
    lines = ["## Steps to target (median)", ""]
    lines.append("| method | " + " | ".join(workloads) + " | autolrs speed-up (geo-mean) | W/T/L |")
    lines.append("| --- | " + " | ".join("---:" for _ in workloads) + " | ---: | :---: |")
    for method in methods_order:
        cells = _cells(
            summary, method, lambda row: fmt_steps(row["steps_to_target"], row["budget"])
        )
        sp = summary["speedups"].get(method, {})
        geo = sp.get("_geomean")
        rec = sp.get("_record")
        tuned = " (tuned)" if is_tuned(method) else ""
        lines.append(
            f"| {method}{tuned} | "
            + " | ".join(cells)
            + f" | {'-' if geo is None else f'{geo:.2f}x'} | "
            + ("-" if not rec else f"{rec['win']}/{rec['tie']}/{rec['loss']}")
            + " |"
        )
    return lines + [
        "",
        "Speed-up = the method's steps to target / autolrs' (not reached counts as the budget, "
        "a bound); W/T/L = autolrs wins, ties (within 5 %), loses.",
        "",
    ]


def _final_table(summary: dict[str, Any], methods_order: list[str]) -> list[str]:
    """The median final score per method and workload."""
    workloads = list(summary["workloads"])
    lines = ["## Final score (median; lower is better)", ""]
    lines.append("| method | " + " | ".join(workloads) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in workloads) + " |")
    for method in methods_order:
        cells = _cells(summary, method, lambda row: f"{row['final_score']:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _workload_lines(
    w: str, data: dict[str, Any], methods_order: list[str], figures: list[str]
) -> list[str]:
    """One workload's section: its budget and target, a row per method, shares, figures."""
    target = data["target"]
    lines = [f"## {w}", ""]
    lines.append(
        f"Budget {data['budget']} steps; target score {target:.4f}; "
        f"oracle peak lr {data['oracle_lr']}."
        if target is not None
        else f"Budget {data['budget']} steps; no target set."
    )
    lines.append("")
    lines.append(
        "| method | steps to target | reached | time to target (s) | normalised time | "
        "final score | "
        "final accuracy | s/step | overhead vs naive | diverged |"
    )
    lines.append("| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    lines += [
        _method_row(method, data["methods"][method])
        for method in methods_order
        if method in data["methods"]
    ]
    for method in ("autolrs", "autolrs-paper", "autolrs-paper-rangetest"):
        row = data["methods"].get(method)
        if row and "controller_share" in row:
            lines.append("")
            lines.append(
                f"{method}: controller compute {100 * row['controller_share']:.1f} % "
                "of its training time, "
                f"validation calls {100 * row['validation_share']:.1f} %."
            )
    lines += accounting_table(
        {
            m: data["methods"][m]["accounting"]
            for m in methods_order
            if "accounting" in data["methods"].get(m, {})
        },
        "share of the steps taken",
    )
    lines.append("")
    for name in figures:
        lines.append(f"![{name}]({name})")
    return lines + [""]


def _method_row(method: str, row: dict[str, Any]) -> str:
    """One method's row in a workload's table."""
    acc = "-" if row["final_accuracy"] is None else f"{row['final_accuracy']:.4f}"
    tt = "-" if not math.isfinite(row["seconds_to_target"]) else f"{row['seconds_to_target']:.1f}"
    nt = "-" if not math.isfinite(row["normalized_time"]) else f"{row['normalized_time']:.2f}"
    return (
        f"| {method} | {fmt_steps(row['steps_to_target'], row['budget'])} | "
        f"{row['reached']}/{row['seeds']} | {tt} | {nt} | {row['final_score']:.4f} | {acc} | "
        f"{row['seconds_per_step'] * 1e3:.1f} ms | "
        f"{row['overhead']:.2f}x | {row['diverged']}/{row['seeds']} |"
    )


def write_ablation(
    results: list[RunResult], targets: dict[str, Any], base: str, path: str, command: str
) -> str:
    """Writes a compact ablation table: every method against ``base``, per workload.

    Columns per workload: steps to target (median score curve), final score (median over
    seeds) and its change against ``base``; a last column gives the geometric mean over the
    workloads of base's steps to target over the method's (not reached counts as the budget).

    Args:
        results: The runs of a quick-protocol suite.
        targets: Per workload, its target score and oracle.
        base: The method every other is compared with.
        path: The Markdown file to write (its folder is made if missing).
        command: The command that ran the suite, quoted in the table's caption.

    Returns:
        The Markdown text written to ``path``.
    """
    summary = summarize(results, targets)
    workloads = list(summary["workloads"])
    methods = order_methods({m for d in summary["workloads"].values() for m in d["methods"]})
    lines = [
        f"# Ablation against `{base}`",
        "",
        f"Runs: `{command}`. Medians over seeds; `>B`: target not reached in the budget B.",
        "",
        "| method | "
        + " | ".join(f"{w} steps | {w} final | vs {base}" for w in workloads)
        + " | speed-up vs base (geo-mean) |",
        "| --- | " + " | ".join("---: | ---: | ---:" for _ in workloads) + " | ---: |",
    ]
    lines += [_ablation_row(summary, method, base) for method in methods]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def _ablation_row(summary: dict[str, Any], method: str, base: str) -> str:
    """One method's ablation row: per workload its steps, final score and change vs ``base``."""
    cells, ratios = [], []
    for w, data in summary["workloads"].items():
        rows = data["methods"]
        row, ref = rows.get(method), rows.get(base)
        if row is None:
            cells.append("- | - | -")
            continue
        change = (
            f"{row['final_score'] / ref['final_score'] - 1:+.1%}"
            if ref and ref["final_score"] and math.isfinite(ref["final_score"])
            else "-"
        )
        cells.append(
            f"{fmt_steps(row['steps_to_target'], row['budget'])} | "
            f"{row['final_score']:.4f} | {change}"
        )
        if ref:
            budget = data["budget"]
            ours = row["steps_to_target"] if math.isfinite(row["steps_to_target"]) else budget
            theirs = ref["steps_to_target"] if math.isfinite(ref["steps_to_target"]) else budget
            ratios.append(theirs / ours)
    geo = float(math.exp(np.mean(np.log(ratios)))) if ratios else math.nan
    return f"| {method} | " + " | ".join(cells) + f" | {geo:.2f}x |"
