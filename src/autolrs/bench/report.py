"""Turning benchmark runs into a Markdown report, a JSON summary and figures."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolrs.bench.harness import RunResult, _json_safe, median_curve, steps_to_target
from autolrs.bench.methods import METHODS, is_cosine_grid
from autolrs.bench.tuned import tuned_point
from autolrs.events import ACCOUNTS

__all__ = [
    "SpeedUp",
    "budget_to_reach",
    "geomean",
    "monotone_envelope",
    "never_behind_naive",
    "speedup",
    "summarize",
    "summarize_fair",
    "write_fair_report",
    "write_report",
]

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
    """Writes ``report.md``, ``summary.json`` and PNG figures to ``out_dir``; returns the Markdown.

    Runs of a fair-protocol suite get the fair report (:func:`write_fair_report`); runs of the
    first protocol (budget 1.5H, steps to target read mid-run) keep their report.
    """
    if is_fair(results):
        return write_fair_report(results, out_dir, title=title, command=command, header=header)
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
        lines += _accounting_table(
            {m: data["methods"][m]["accounting"] for m in methods_order
             if "accounting" in data["methods"].get(m, {})},
            "share of the steps taken",
        )
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


def _save_lr_figure(fig: Any, ax_lr: Any, ax_score: Any, title: str, name: str, out_dir: str) -> str:
    """Labels the rate-and-score figure of ``title``, saves it as ``name`` and closes it."""
    import matplotlib.pyplot as plt

    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate (effective)")
    ax_lr.set_title(f"{title}: learning rate and score against step (seed 0)")
    if ax_lr.get_legend_handles_labels()[0]:
        ax_lr.legend(fontsize=7, ncol=3)
    ax_lr.grid(alpha=0.3)
    ax_score.set_yscale("log")
    ax_score.set_ylabel("score-split loss")
    ax_score.set_xlabel("optimizer steps (charged)")
    ax_score.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), dpi=100)
    plt.close(fig)
    return name


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
        figures[workload] = [_save_lr_figure(fig, ax_lr, ax_score, workload, f"{workload}.png", out_dir)]
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


# =========================================================================== fair protocol
# Every method is planned for the same budget B = round(factor x H) and scored at its end; the
# tuned cosine (warm-up 2 % + cosine over B, rerun over the committed grid's best LRs at every
# budget) gives a score-versus-budget curve, and a method's speed-up at B is the budget that
# curve needs for the method's final score, over B.

MAX_EXTRAPOLATION = 2.0  # never extrapolate the curve beyond this factor outside its budgets
LR_FREE_ANCHORS = ("schedulefree", "prodigy", "dadapt", "lrfinder-onecycle")
NAIVE_MEDIAN_SLACK = 1.01  # (a): autolrs' median final <= 1.01 x naive's median final
NAIVE_SEED_SLACK = 1.10  # (a): and no autolrs seed > 1.10 x naive's median final


def is_fair(results: list[RunResult]) -> bool:
    """Whether ``results`` come from a fair-protocol suite (``extra.protocol == "fair"``)."""
    return any(r.extra.get("protocol") == "fair" for r in results)


def monotone_envelope(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``(budget, score)`` sorted by budget, each score replaced by the lowest score at that
    budget or below (running minimum); points with a non-finite or non-positive score (a
    diverged grid) are dropped, as log-log interpolation cannot use them."""
    out: list[tuple[float, float]] = []
    for budget, score in sorted(points):
        if not (math.isfinite(score) and score > 0 and budget > 0):
            continue
        out.append((float(budget), min(score, out[-1][1]) if out else float(score)))
    return out


@dataclass(frozen=True)
class SpeedUp:
    """A method's speed-up at budget B: ``needed / budget``.

    Attributes:
        value: b*/B; when ``bound`` is set, the clipped value (a bound, not an estimate).
        needed: b*, the budget the tuned cosine's curve needs to reach the method's score.
        bound: ``""`` (interpolated, or extrapolated within the limit), ``">="`` (the method's
            score is better than the curve reaches within the limit: b* is at least this) or
            ``"<="`` (worse than the curve at its low limit: b* is at most this).
    """

    value: float
    needed: float
    bound: str = ""

    def __str__(self) -> str:
        return "-" if not math.isfinite(self.value) else f"{self.bound}{self.value:.2f}x"


def budget_to_reach(
    curve: list[tuple[float, float]], score: float, max_factor: float = MAX_EXTRAPOLATION
) -> tuple[float, str]:
    """b*(score): the budget at which the tuned cosine's curve reaches ``score``.

    ``curve`` holds ``(budget, score)`` points; its monotone envelope is used. Between two
    points b* is interpolated linearly in (log budget, log score); below the first or past the
    last point the nearest segment's slope extrapolates, never further than ``max_factor``
    outside the measured budgets: a clipped b* comes back with its bound (``">="``/``"<="``).
    With a single point there is no slope: b* is bounded by that point's budget. If the curve
    reaches ``score`` exactly on a flat stretch, b* is the first budget that reaches it.

    Returns:
        ``(b*, bound)``; ``(nan, "")`` without a usable curve.
    """
    env = monotone_envelope(curve)
    if not env:
        return math.nan, ""
    lo_budget, hi_budget = env[0][0], env[-1][0]
    if math.isnan(score):
        return math.nan, ""
    if not score > 0:  # a perfect score: better than anything the curve reaches
        return (hi_budget * max_factor if len(env) > 1 else hi_budget), ">="
    if math.isinf(score):  # diverged: worse than the whole curve
        return (lo_budget / max_factor if len(env) > 1 else lo_budget), "<="
    xs = [math.log(b) for b, _ in env]
    ys = [math.log(s) for _, s in env]
    y = math.log(score)
    first = next((i for i, v in enumerate(ys) if v <= y), None)
    if first is not None and ys[first] == y:
        return env[first][0], ""
    if first is not None and first > 0:  # ys[first - 1] > y > ys[first]
        i = first - 1
        x = xs[i] + (y - ys[i]) * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i])
        return math.exp(x), ""
    if len(env) == 1:
        return (lo_budget, "<=") if first == 0 else (hi_budget, ">=")
    if first == 0:  # worse than the curve's first point: extrapolate to lower budgets
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        limit = xs[0] - math.log(max_factor)
        x = xs[0] + (y - ys[0]) / slope if slope < 0 else -math.inf
        return (math.exp(x), "") if x >= limit else (lo_budget / max_factor, "<=")
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])  # better than its last: extrapolate upwards
    limit = xs[-1] + math.log(max_factor)
    x = xs[-1] + (y - ys[-1]) / slope if slope < 0 else math.inf
    return (math.exp(x), "") if x <= limit else (hi_budget * max_factor, ">=")


def speedup(curve: list[tuple[float, float]], score: float, budget: float) -> SpeedUp:
    """The speed-up of a method whose median final score at ``budget`` is ``score``:
    b*(score) / budget on the tuned cosine's ``curve`` (see :func:`budget_to_reach`)."""
    needed, bound = budget_to_reach(curve, score)
    return SpeedUp(needed / budget if math.isfinite(needed) else math.nan, needed, bound)


def geomean(values: list[float]) -> float:
    """Geometric mean of the finite positive ``values`` (nan when there are none)."""
    ok = [v for v in values if math.isfinite(v) and v > 0]
    return float(math.exp(np.mean(np.log(ok)))) if ok else math.nan


def never_behind_naive(ours: list[float], naive: list[float]) -> dict[str, Any]:
    """Bar check (a) on one workload and budget, from the final scores over seeds.

    PASS when autolrs' median final <= 1.01 x naive's median final and no autolrs seed is
    above 1.10 x naive's median final.
    """
    ours_median, naive_median = _median(ours), _median(naive)
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


def _tuned_curve(by_method: dict[str, list[RunResult]]) -> dict[str, Any] | None:
    """The tuned cosine's point at one budget (:func:`autolrs.bench.tuned.tuned_point`)."""
    return tuned_point(by_method)


def summarize_fair(results: list[RunResult]) -> dict[str, Any]:
    """Per workload and budget: every method's final scores, speed-up vs the tuned cosine,
    steps to target, autolrs' accounting and overheads; then the aggregates and bar checks."""
    cells: dict[tuple[str, int], dict[str, list[RunResult]]] = {}
    for r in results:
        cells.setdefault((r.workload, r.budget), defaultdict(list))[r.method].append(r)
    curves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (workload, budget), by_method in sorted(cells.items()):
        point = _tuned_curve(by_method)
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
    median = _median(finals)
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
        "final_accuracy": _median(accs) if accs else None,
        "speedup": sp.value,
        "speedup_bound": sp.bound,
        "cosine_budget_needed": sp.needed,
        "steps_to_target": median_steps,
        "reached": sum(math.isfinite(r.steps_to_target) for r in runs),
        "seconds_per_step": _median([r.seconds_per_step for r in runs]),
        "diverged": sum(r.diverged for r in runs),
    }
    info = [r.extra.get("autolrs") for r in runs]
    if all(info):
        row["controller_pct"] = 100 * _median([
            a.get("controller_seconds", math.nan) / r.extra["charged_seconds"]
            for a, r in zip(info, runs) if r.extra.get("charged_seconds")])
        row["val_fn_calls"] = _median([a.get("val_fn_calls", a.get("val_calls", math.nan))
                                       for a in info])
        if all(a.get("accounting") for a in info):
            shares = {name: _median([a["accounting"][name] / max(r.budget, 1)
                                     for a, r in zip(info, runs)]) for name in ACCOUNTS}
            shares["discarded"] = _median([
                sum(a["accounting"][k] for k in ("range_test", "discarded_trials", "rolled_back"))
                / max(r.budget, 1) for a, r in zip(info, runs)])
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
        out[method] = {"geomean": geomean(list(values.values())), "cells": len(values),
                       "clipped": sum(1 for b in bounds.values() if b), "speedups": values,
                       "bounds": bounds}
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
            behind[key] = never_behind_naive(rows[REFERENCE]["final_scores"],
                                             rows["naive"]["final_scores"])
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
            speed["anchors"][anchor] = {"autolrs": a, "anchor": b, "cells": len(common),
                                        "beats": bool(beats)}
            ok = ok and beats
        speed["verdict"] = "PASS" if ok and math.isfinite(ours["geomean"]) else "FAIL"
        speed["complete"] = not speed["missing"]
    return {
        "never_behind_naive": behind,
        "never_behind_naive_verdict": (
            "n/a" if not behind
            else "PASS" if all(v["verdict"] == "PASS" for v in behind.values()) else "FAIL"),
        "speedup": speed,
    }


def _fmt_score(row: dict[str, Any]) -> str:
    if row["seeds"] == 1:
        return f"{row['final_score']:.4f}"
    return f"{row['final_score']:.4f} [{row['final_min']:.4f}, {row['final_max']:.4f}]"


def _fmt_speedup(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    return str(SpeedUp(row["speedup"], row["cosine_budget_needed"], row["speedup_bound"]))


def _fair_order(methods: set[str]) -> list[str]:
    grid = sorted((m for m in methods if is_cosine_grid(m)), key=lambda m: float(m[7:]))
    return _order({m for m in methods if not is_cosine_grid(m)}) + grid


def write_fair_report(
    results: list[RunResult],
    out_dir: str,
    *,
    title: str,
    command: str,
    header: dict[str, Any] | None = None,
) -> str:
    """Writes the fair protocol's ``report.md``, ``summary.json`` and figures; returns the text."""
    summary = summarize_fair(results)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(_json_safe({"header": header or {}, **summary}), f, indent=1)
    figures = _fair_figures(results, summary, out_dir)
    header = header or {}
    cells = summary["cells"]
    lines = [f"# {title}", "", f"Command: `{command}`"]
    if header:
        lines.append(f"Machine: {header.get('machine', '?')}")
        lines.append(f"Torch threads per run: {header.get('threads', '?')}")
        versions = header.get("versions", {}).items()
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions))
    lines += [
        "",
        "Fair protocol: every method is planned for the same budget B = round(factor x H) (H = "
        "the workload's step hint; autolrs gets `total_steps=B`, every schedule decays over B) "
        "and scored at its end: the final score is the score-split loss at step B (lower is "
        "better). Every optimizer step a method takes counts (autolrs' trials and range test, "
        "the LR finder's sweep). The tuned cosine (warm-up 2 % + cosine over B) is rerun at "
        "every budget over the committed grid's learning rates nearest the oracle's "
        "(`cosine@<lr>` rows); its curve point at B is the best (over LRs) median (over seeds) "
        "final score.",
        "",
        "**Speed-up** (primary) = b*/B, where b* is the budget at which the tuned cosine's "
        "score-versus-budget curve (its monotone envelope) reaches the method's median final "
        "score, interpolated in (log budget, log score). Outside the measured budgets the "
        "nearest segment's slope extrapolates, never beyond a factor "
        f"{MAX_EXTRAPOLATION:g}: `>=`/`<=` mark a clipped cell (a bound, not an estimate); with "
        "a single budget the curve has no slope and every speed-up is such a bound.",
        "",
        "**Wall-clock columns (s/step, controller %) are only valid when the suite ran alone "
        "on the machine**; scores, speed-ups and steps do not depend on the load.",
        "",
    ]
    order = _fair_order({m for c in cells.values() for m in c["methods"]})
    plain = [m for m in order if not is_cosine_grid(m)]
    aggregates = summary["aggregates"]
    lines += ["## Speed-up vs the tuned cosine (median final score at B)", ""]
    keys = list(cells)
    lines.append("| method | " + " | ".join(keys) + " | geo-mean | cells (clipped) |")
    lines.append("| --- | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |")
    for method in plain:
        agg = aggregates.get(method)
        geo = "-" if agg is None or not math.isfinite(agg["geomean"]) else f"{agg['geomean']:.2f}x"
        count = "-" if agg is None else f"{agg['cells']} ({agg['clipped']})"
        tuned = " (tuned)" if _tuned(method) else ""
        row_cells = [_fmt_speedup(cells[k]["methods"].get(method)) for k in keys]
        lines.append(f"| {method}{tuned} | " + " | ".join(row_cells) + f" | {geo} | {count} |")
    lines += ["", "The geo-mean counts a clipped cell at its bound.", ""]
    lines += _fair_check_lines(summary["checks"])
    lines += ["## The tuned cosine's score-versus-budget curve", ""]
    lines.append("| workload | budget | best lr | curve score | envelope | median final per lr |")
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for workload, points in summary["curves"].items():
        for p in points:
            per_lr = ", ".join(
                f"{lr}: {v['median']:.4f} ({v['seeds']})" for lr, v in p["lrs"].items()
            )
            lines.append(f"| {workload} | {p['budget']} | {p['lr']:.3g} | {p['score']:.4f} | "
                         f"{p['envelope']:.4f} | {per_lr} |")
    if not summary["curves"]:
        lines.append("| (no cosine grid runs: no speed-ups) | | | | | |")
    lines.append("")
    for key, cell in cells.items():
        lines += _fair_cell_lines(key, cell, order)
        for name in figures.get(key, []):
            lines += [f"![{name}]({name})", ""]
    for name in figures.get("_curves", []):
        lines += [f"![{name}]({name})", ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    from autolrs.bench.sweep_report import write_sweep_report  # it builds on this module

    write_sweep_report(summary, out_dir)
    return text


def _fair_check_lines(checks: dict[str, Any]) -> list[str]:
    lines = ["## Bar checks for autolrs", ""]
    behind = checks["never_behind_naive"]
    lines.append(
        f"(a) Never behind naive: {checks['never_behind_naive_verdict']} (per workload and "
        f"budget: autolrs' median final <= {NAIVE_MEDIAN_SLACK:g} x naive's median final, and no "
        f"autolrs seed > {NAIVE_SEED_SLACK:g} x naive's median final)."
    )
    if behind:
        lines += ["", "| workload, budget | autolrs median | naive median | ratio | worst autolrs "
                  "seed | ratio | verdict |", "| --- | ---: | ---: | ---: | ---: | ---: | :---: |"]
        for key, v in behind.items():
            lines.append(
                f"| {key} | {v['autolrs_median']:.4f} | {v['naive_median']:.4f} | "
                f"{v['median_ratio']:.3f} | {v['worst_seed']:.4f} | {v['worst_ratio']:.3f} | "
                f"{v['verdict']} |"
            )
    speed = checks["speedup"]
    lines.append("")
    if speed["verdict"] == "n/a":
        lines.append("(b) Speed-up: n/a (no autolrs runs with a tuned cosine curve).")
    else:
        parts = [
            f"{a}: autolrs {v['autolrs']:.2f}x vs {v['anchor']:.2f}x over {v['cells']} cells"
            f" ({'beats' if v['beats'] else 'does not beat'})"
            for a, v in speed["anchors"].items()
        ]
        missing = (
            f"; incomplete, not run: {', '.join(speed['missing'])}" if speed["missing"] else ""
        )
        lines.append(
            f"(b) Speed-up: {speed['verdict']} (geo-mean speed-up >= 1.0 and above every "
            f"learning-rate-free anchor; a clipped cell counts just past its bound): autolrs "
            f"{speed['autolrs_geomean']:.2f}x over {speed['autolrs_cells']} cells "
            f"({speed['autolrs_clipped']} clipped)"
            + (f"; {'; '.join(parts)}" if parts else "") + missing + "."
        )
    return lines + [""]


def _fair_cell_lines(key: str, cell: dict[str, Any], order: list[str]) -> list[str]:
    factor = cell.get("factor")
    hint = cell.get("step_hint")
    target = cell.get("target")
    lines = [f"## {key}", ""]
    lines.append(
        f"Budget B = {cell['budget']} steps"
        + (f" ({factor:g} x H = {hint})" if factor is not None and hint else "")
        + (f"; target score {target:.4f} (steps to target: secondary)." if target else ".")
    )
    lines += [
        "",
        "| method | seeds | final score median [min, max] | speed-up | steps to target | "
        "reached | final accuracy | s/step | diverged | controller % | val_fn calls |",
        "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    rows = cell["methods"]
    for method in order:
        row = rows.get(method)
        if row is None:
            continue
        acc = "-" if row["final_accuracy"] is None else f"{row['final_accuracy']:.4f}"
        ctrl = f"{row['controller_pct']:.1f} %" if "controller_pct" in row else "-"
        calls = f"{row['val_fn_calls']:.0f}" if "val_fn_calls" in row else "-"
        lines.append(
            f"| {method} | {row['seeds']} | {_fmt_score(row)} | {_fmt_speedup(row)} | "
            f"{_fmt_steps(row['steps_to_target'], cell['budget'])} | "
            f"{row['reached']}/{row['seeds']} | {acc} | {row['seconds_per_step'] * 1e3:.1f} ms | "
            f"{row['diverged']}/{row['seeds']} | {ctrl} | {calls} |"
        )
    lines += _accounting_table(
        {m: rows[m]["accounting"] for m in order if "accounting" in rows.get(m, {})},
        "share of the budget",
    )
    return lines + [""]


def _accounting_table(shares: dict[str, dict[str, float]], of: str) -> list[str]:
    """The step-accounting table (one row per method; no lines when no method has one)."""
    if not shares:
        return []
    lines = [
        "",
        f"Step accounting ({of}, median over seeds; discarded = range test + losing trials + "
        "rolled back):",
        "",
        "| method | " + " | ".join(a.replace("_", " ") for a in ACCOUNTS) + " | discarded |",
        "| --- |" + " ---: |" * (len(ACCOUNTS) + 1),
    ]
    for method, acc in shares.items():
        discarded = acc.get("discarded", acc["range_test"] + acc["discarded_trials"] + acc["rolled_back"])
        cells = " | ".join(f"{100 * acc[a]:.1f} %" for a in ACCOUNTS)
        lines.append(f"| {method} | {cells} | {100 * discarded:.1f} % |")
    return lines


def _fair_figures(
    results: list[RunResult], summary: dict[str, Any], out_dir: str
) -> dict[str, Any]:
    """Per cell: learning rate and score against step (seed 0 of every method but the grid's
    other LRs); per workload: the tuned cosine's curve with every method's median final."""
    try:
        from autolrs.plot import require_matplotlib

        plt = require_matplotlib()
    except ImportError:
        return {}
    colors = plt.get_cmap("tab10")
    figures: dict[str, Any] = {}
    order = _fair_order({r.method for r in results})
    for key, cell in summary["cells"].items():
        best = next((p for p in summary["curves"].get(cell["workload"], [])
                     if p["budget"] == cell["budget"]), None)
        keep = {m for m in cell["methods"] if not is_cosine_grid(m)}
        if best is not None:
            keep.add(best["lrs"][f"{best['lr']:.3g}"]["method"])
        runs = [r for r in results if r.workload == cell["workload"] and r.budget == cell["budget"]
                and r.method in keep]
        first = {r.method: r for r in sorted(runs, key=lambda r: r.seed, reverse=True)}
        fig, (ax_lr, ax_score) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
        for method, r in sorted(first.items(), key=lambda kv: order.index(kv[0])):
            color = colors(order.index(method) % 10)
            width = 1.8 if method == REFERENCE else 1.0
            if r.lrs:
                xs, ys = _steps_line(r.lrs, r.steps)
                ax_lr.plot(xs, ys, color=color, lw=width, label=method)
            if r.curve:
                scores = [v if math.isfinite(v) else np.nan for _, v in r.curve]
                ax_score.plot([s for s, _ in r.curve], scores, color=color, lw=width, label=method)
        name = f"{cell['workload']}-B{cell['budget']}.png"
        figures[key] = [_save_lr_figure(fig, ax_lr, ax_score, key, name, out_dir)]
    for workload, points in summary["curves"].items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [p["budget"] for p in points]
        ax.plot(xs, [p["envelope"] for p in points], "k-", lw=2, label="tuned cosine (envelope)")
        ax.plot(xs, [p["score"] for p in points], "ko", ms=4)
        for method in order:
            if is_cosine_grid(method):
                continue
            pts = [(c["budget"], c["methods"][method]["final_score"])
                   for c in summary["cells"].values()
                   if c["workload"] == workload and method in c["methods"]]
            pts = [(b, s) for b, s in pts if math.isfinite(s)]
            if pts:
                ax.plot(*zip(*sorted(pts)), marker="s", ls="--", lw=1,
                        color=colors(order.index(method) % 10), label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("budget B (steps)")
        ax.set_ylabel("median final score at B")
        ax.set_title(f"{workload}: final score against budget")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{workload}-curve.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        figures.setdefault("_curves", []).append(name)
    return figures
