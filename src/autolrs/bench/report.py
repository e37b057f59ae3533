"""Turning benchmark runs into a Markdown report, a JSON summary and figures."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from autolrs.bench.harness import RunResult, _json_safe, median_curve, steps_to_target
from autolrs.bench.methods import METHODS
from autolrs.events import ACCOUNTS

__all__ = ["summarize", "write_report"]

TIE = 0.05  # steps to target within 5 % of each other: a tie
REFERENCE = "autolrs"


def _tuned(method: str) -> bool:
    spec = METHODS.get(method)
    return bool(spec and spec.tuned)


def _order(methods: set[str]) -> list[str]:
    """Registered methods in registry order, then variants alphabetically."""
    known = [m for m in METHODS if m in methods]
    return known + sorted(methods - set(known))


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None]
    if not finite:
        return math.nan
    return float(np.median(finite))


def _cells(summary: dict[str, Any], method: str, fmt: Callable[[dict[str, Any]], str]) -> list[str]:
    """One table cell per workload of ``summary``: ``fmt(row)`` of the method's row, or "-"."""
    rows = (data["methods"].get(method) for data in summary["workloads"].values())
    return ["-" if row is None else fmt(row) for row in rows]


def _fmt_steps(value: float, budget: int) -> str:
    return f">{budget}" if not math.isfinite(value) else f"{value:.0f}"


def summarize(results: list[RunResult], targets: dict[str, Any]) -> dict[str, Any]:
    """Per (budget factor, workload, method): medians over seeds, overheads, speed-ups."""
    groups: dict[tuple[float, str], dict[str, list[RunResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        groups[(float(r.extra.get("budget_factor", 1.0)), r.workload)][r.method].append(r)
    out: dict[str, Any] = {"workloads": {}, "speedups": {}, "versions_note": "medians over seeds"}
    for (factor, workload), by_method in sorted(groups.items()):
        key = workload if factor == 1.0 else f"{workload} x{factor:g}"
        naive = by_method.get("naive", [])
        naive_sps = _median([r.seconds_per_step for r in naive]) if naive else math.nan
        rows = {}
        target = targets.get(workload, {}).get("target")
        for method, runs in by_method.items():
            budget = max(r.budget for r in runs)
            # Steps to target are read off the median (over seeds) score curve, the way the
            # target itself is defined; "reached" counts the seeds that reach it on their own.
            median_steps = steps_to_target(median_curve([r.curve for r in runs]), target)
            at = int(median_steps) if math.isfinite(median_steps) else None
            seconds = [dict(r.seconds).get(at, math.inf) for r in runs] if at else [math.inf]
            rows[method] = {
                "seeds": len(runs),
                "budget": budget,
                "steps_to_target": median_steps,
                "reached": sum(math.isfinite(r.steps_to_target) for r in runs),
                "seeds_steps_to_target": [r.steps_to_target for r in runs],
                "seconds_to_target": float(np.median(seconds)),
                "final_score": _median([r.final_score for r in runs]),
                "final_accuracy": _median([r.final_accuracy for r in runs]) if runs[0].final_accuracy is not None else None,
                "seconds_per_step": _median([r.seconds_per_step for r in runs]),
                "overhead": _median([r.seconds_per_step for r in runs]) / naive_sps if naive_sps == naive_sps else math.nan,
                "diverged": sum(r.diverged for r in runs),
            }
            if method.startswith("autolrs"):
                ctrl = [r.extra.get("autolrs", {}).get("controller_seconds", math.nan) for r in runs]
                charged = [r.extra.get("charged_seconds", math.nan) for r in runs]
                val = [r.extra.get("autolrs", {}).get("val_seconds", math.nan) for r in runs]
                rows[method]["controller_share"] = _median([c / t for c, t in zip(ctrl, charged) if t])
                rows[method]["validation_share"] = _median([v / t for v, t in zip(val, charged) if t])
                accounts = [r.extra.get("autolrs", {}).get("accounting") for r in runs]
                if all(accounts):
                    rows[method]["accounting"] = {
                        name: _median([a[name] / r.steps for a, r in zip(accounts, runs) if r.steps])
                        for name in ACCOUNTS
                    }
        oracle = rows.get("oracle")
        for row in rows.values():
            base = oracle["seconds_to_target"] if oracle else math.nan
            row["normalized_time"] = row["seconds_to_target"] / base if base and math.isfinite(base) else math.nan
        info = targets.get(workload, {})
        out["workloads"][key] = {
            "target": info.get("target"),
            "oracle_lr": info.get("oracle", {}).get("lr"),
            "budget": max(r["budget"] for r in rows.values()),
            "methods": rows,
        }
    for key, data in out["workloads"].items():
        rows = data["methods"]
        if REFERENCE not in rows:
            continue
        ours = rows[REFERENCE]["steps_to_target"]
        budget = data["budget"]
        for method, row in rows.items():
            if method == REFERENCE:
                continue
            theirs = row["steps_to_target"]
            bounded = (theirs if math.isfinite(theirs) else budget) / (ours if math.isfinite(ours) else budget)
            if not math.isfinite(ours) and not math.isfinite(theirs):
                verdict = "tie"
            elif abs(bounded - 1.0) <= TIE and math.isfinite(ours) and math.isfinite(theirs):
                verdict = "tie"
            elif bounded > 1.0 or (math.isfinite(ours) and not math.isfinite(theirs)):
                verdict = "win"
            else:
                verdict = "loss"
            out["speedups"].setdefault(method, {})[key] = {"speedup": bounded, "verdict": verdict}
    for per in out["speedups"].values():
        values = [v["speedup"] for k, v in per.items() if " x" not in k]
        verdicts = [v["verdict"] for k, v in per.items() if " x" not in k]
        per["_geomean"] = float(math.exp(np.mean(np.log(values)))) if values else math.nan
        per["_record"] = {w: verdicts.count(w) for w in ("win", "tie", "loss")}
    return out


def write_report(
    results: list[RunResult],
    targets: dict[str, Any],
    out_dir: str,
    *,
    title: str,
    command: str,
    header: dict[str, Any] | None = None,
) -> str:
    """Writes ``report.md``, ``summary.json`` and PNG figures to ``out_dir``; returns the Markdown."""
    summary = summarize(results, targets)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(_json_safe(summary), f, indent=1)
    figures = _figures(results, summary, out_dir)
    lines = [f"# {title}", ""]
    lines.append(f"Command: `{command}`")
    if header:
        lines.append(f"Machine: {header.get('machine', '?')}")
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in header.get("versions", {}).items()))
    lines += [
        "",
        "Steps to target count every optimizer step a method takes (autolrs' trials and range test, "
        "the LR finder's sweep); the harness's scoring is not charged. Medians over seeds; "
        "`>B` means the target was not reached within the budget B. Target = the tuned cosine "
        "grid's best median score x 1.01 (`benchmarks/targets.json`).",
        "",
    ]
    methods_order = _order({m for d in summary["workloads"].values() for m in d["methods"]})
    workloads = list(summary["workloads"])
    lines.append("## Steps to target (median)")
    lines.append("")
    lines.append("| method | " + " | ".join(workloads) + " | autolrs speed-up (geo-mean) | W/T/L |")
    lines.append("| --- | " + " | ".join("---:" for _ in workloads) + " | ---: | :---: |")
    for method in methods_order:
        cells = _cells(summary, method, lambda row: _fmt_steps(row["steps_to_target"], row["budget"]))
        sp = summary["speedups"].get(method, {})
        geo = sp.get("_geomean")
        rec = sp.get("_record")
        tuned = " (tuned)" if _tuned(method) else ""
        lines.append(
            f"| {method}{tuned} | "
            + " | ".join(cells)
            + f" | {'-' if geo is None else f'{geo:.2f}x'} | "
            + ("-" if not rec else f"{rec['win']}/{rec['tie']}/{rec['loss']}")
            + " |"
        )
    lines += ["", "Speed-up = the method's steps to target / autolrs' (not reached counts as the budget, "
              "a bound); W/T/L = autolrs wins, ties (within 5 %), loses.", ""]
    lines.append("## Final score (median; lower is better)")
    lines.append("")
    lines.append("| method | " + " | ".join(workloads) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in workloads) + " |")
    for method in methods_order:
        cells = _cells(summary, method, lambda row: f"{row['final_score']:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    for w in workloads:
        data = summary["workloads"][w]
        target = data["target"]
        lines.append(f"## {w}")
        lines.append("")
        lines.append(
            f"Budget {data['budget']} steps; target score {target:.4f}; oracle peak lr {data['oracle_lr']}."
            if target is not None
            else f"Budget {data['budget']} steps; no target set."
        )
        lines.append("")
        lines.append(
            "| method | steps to target | reached | time to target (s) | normalised time | final score | "
            "final accuracy | s/step | overhead vs naive | diverged |"
        )
        lines.append("| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
        for method in methods_order:
            row = data["methods"].get(method)
            if row is None:
                continue
            acc = "-" if row["final_accuracy"] is None else f"{row['final_accuracy']:.4f}"
            tt = "-" if not math.isfinite(row["seconds_to_target"]) else f"{row['seconds_to_target']:.1f}"
            nt = "-" if not math.isfinite(row["normalized_time"]) else f"{row['normalized_time']:.2f}"
            lines.append(
                f"| {method} | {_fmt_steps(row['steps_to_target'], row['budget'])} | {row['reached']}/{row['seeds']} | "
                f"{tt} | {nt} | {row['final_score']:.4f} | {acc} | {row['seconds_per_step'] * 1e3:.1f} ms | "
                f"{row['overhead']:.2f}x | {row['diverged']}/{row['seeds']} |"
            )
        for method in ("autolrs", "autolrs-paper", "autolrs-paper-rangetest"):
            row = data["methods"].get(method)
            if row and "controller_share" in row:
                lines.append("")
                lines.append(
                    f"{method}: controller compute {100 * row['controller_share']:.1f} % of its training time, "
                    f"validation calls {100 * row['validation_share']:.1f} %."
                )
        accounted = [m for m in methods_order if "accounting" in data["methods"].get(m, {})]
        if accounted:
            lines += [
                "",
                "Step accounting (share of the steps taken, median over seeds; discarded = range "
                "test + discarded trials + rolled back):",
                "",
                "| method | " + " | ".join(a.replace("_", " ") for a in ACCOUNTS) + " | discarded |",
                "| --- |" + " ---: |" * (len(ACCOUNTS) + 1),
            ]
            for method in accounted:
                acc = data["methods"][method]["accounting"]
                discarded = acc["range_test"] + acc["discarded_trials"] + acc["rolled_back"]
                cells = " | ".join(f"{100 * acc[a]:.1f} %" for a in ACCOUNTS)
                lines.append(f"| {method} | {cells} | {100 * discarded:.1f} % |")
        lines.append("")
        for name in figures.get(w, []):
            lines.append(f"![{name}]({name})")
        lines.append("")
    if "profile" in figures:
        lines += ["## Performance profile", "", f"![profile]({figures['profile']})", ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def _figures(results: list[RunResult], summary: dict[str, Any], out_dir: str) -> dict[str, Any]:
    try:
        from autolrs.plot import require_matplotlib

        plt = require_matplotlib()
    except ImportError:
        return {}
    figures: dict[str, Any] = {}
    by_workload: dict[str, list[RunResult]] = defaultdict(list)
    for r in results:
        if float(r.extra.get("budget_factor", 1.0)) == 1.0:
            by_workload[r.workload].append(r)
    colors = plt.get_cmap("tab10")
    order = _order({r.method for r in results})
    for workload, runs in by_workload.items():
        seed0 = {r.method: r for r in sorted(runs, key=lambda r: r.seed, reverse=True)}
        fig, (ax_lr, ax_score) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
        for method, r in sorted(seed0.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
            color = colors(order.index(method) % 10 if method in order else 9)
            if r.lrs:
                xs, ys = _steps_line(r.lrs, r.steps)
                ax_lr.plot(xs, ys, color=color, lw=1.8 if method == REFERENCE else 1.0, label=method)
            if r.curve:
                scores = [v if math.isfinite(v) else np.nan for _, v in r.curve]
                ax_score.plot(
                    [s for s, _ in r.curve],
                    scores,
                    color=color,
                    lw=1.8 if method == REFERENCE else 1.0,
                    label=method,
                )
        target = summary["workloads"].get(workload, {}).get("target")
        if target:
            ax_score.axhline(target, color="k", ls=":", lw=1, label="target")
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate (effective)")
        ax_lr.set_title(f"{workload}: learning rate and score against step (seed 0)")
        ax_lr.legend(fontsize=7, ncol=3)
        ax_lr.grid(alpha=0.3)
        ax_score.set_yscale("log")
        ax_score.set_ylabel("score-split loss")
        ax_score.set_xlabel("optimizer steps (charged)")
        ax_score.grid(alpha=0.3)
        fig.tight_layout()
        name = f"{workload}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        figures[workload] = [name]
    base_keys = [k for k in summary["workloads"] if " x" not in k]
    methods = _order({m for k in base_keys for m in summary["workloads"][k]["methods"] if not _tuned(m)})
    if base_keys and methods:
        taus = np.logspace(0, 1, 200)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in methods:
            ratios = []
            for k in base_keys:
                rows = summary["workloads"][k]["methods"]
                if method not in rows:
                    continue
                best = min(
                    (r["steps_to_target"] for m, r in rows.items() if not _tuned(m)),
                    default=math.inf,
                )
                ours = rows[method]["steps_to_target"]
                ratios.append(ours / best if math.isfinite(ours) and math.isfinite(best) else math.inf)
            rho = [np.mean([r <= t for r in ratios]) if ratios else 0 for t in taus]
            color = colors(order.index(method) % 10 if method in order else 9)
            ax.step(taus, rho, where="post", color=color, lw=2 if method == REFERENCE else 1.2, label=method)
        ax.set_xscale("log")
        ax.set_xlabel("tau: within this factor of the fastest no-tuning method")
        ax.set_ylabel("share of workloads reaching the target")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("Performance profile (steps to target)")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "profile.png"), dpi=100)
        plt.close(fig)
        figures["profile"] = "profile.png"
    return figures


def _steps_line(lrs: list[tuple[int, float]], last: int) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for i, (step, lr) in enumerate(lrs):
        end = lrs[i + 1][0] if i + 1 < len(lrs) else last
        xs += [step, end]
        ys += [lr, lr]
    return xs, ys


def write_ablation(
    results: list[RunResult], targets: dict[str, Any], base: str, path: str, command: str
) -> str:
    """Writes a compact ablation table: every method against ``base``, per workload.

    Columns per workload: steps to target (median score curve), final score (median over
    seeds) and its change against ``base``; a last column gives the geometric mean over the
    workloads of base's steps to target over the method's (not reached counts as the budget).
    """
    summary = summarize(results, targets)
    workloads = list(summary["workloads"])
    methods = _order({m for d in summary["workloads"].values() for m in d["methods"]})
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
    for method in methods:
        cells, ratios = [], []
        for w in workloads:
            rows = summary["workloads"][w]["methods"]
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
                f"{_fmt_steps(row['steps_to_target'], row['budget'])} | {row['final_score']:.4f} | {change}"
            )
            if ref:
                budget = summary["workloads"][w]["budget"]
                ours = row["steps_to_target"] if math.isfinite(row["steps_to_target"]) else budget
                theirs = ref["steps_to_target"] if math.isfinite(ref["steps_to_target"]) else budget
                ratios.append(theirs / ours)
        geo = float(math.exp(np.mean(np.log(ratios)))) if ratios else math.nan
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {geo:.2f}x |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text
