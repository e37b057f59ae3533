"""The fair protocol's report: ``report.md``, ``summary.json``, figures and the sweep's page.

The numbers come from :func:`autolrs.bench.fair_summary.summarize_fair`; this module only
writes them.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from autolrs.bench.fair_summary import NAIVE_MEDIAN_SLACK, NAIVE_SEED_SLACK, summarize_fair
from autolrs.bench.harness import RunResult, _json_safe
from autolrs.bench.methods import is_cosine_grid
from autolrs.bench.report_common import accounting_table, fair_order, fmt_steps, is_tuned
from autolrs.bench.report_figures import fair_figures
from autolrs.bench.speedup import MAX_EXTRAPOLATION, SpeedUp
from autolrs.bench.sweep_report import write_sweep_report

__all__ = ["write_fair_report"]


def _fmt_score(row: dict[str, Any]) -> str:
    """A final-score cell: the median, with [min, max] over more than one seed."""
    if row["seeds"] == 1:
        return f"{row['final_score']:.4f}"
    return f"{row['final_score']:.4f} [{row['final_min']:.4f}, {row['final_max']:.4f}]"


def _fmt_speedup(row: dict[str, Any] | None) -> str:
    """A speed-up cell: b*/B with its bound, or "-"."""
    if row is None:
        return "-"
    return str(SpeedUp(row["speedup"], row["cosine_budget_needed"], row["speedup_bound"]))


def write_fair_report(
    results: list[RunResult],
    out_dir: str,
    *,
    title: str,
    command: str,
    header: dict[str, Any] | None = None,
) -> str:
    """Writes the fair protocol's ``report.md``, ``summary.json``, figures and ``sweep.md``.

    Args:
        results: The runs of a fair-protocol suite.
        out_dir: The folder to write to (made if missing).
        title: The report's title.
        command: The command that ran the suite, quoted in the report.
        header: The runs' header (machine, threads, versions), if any.

    Returns:
        The Markdown text written to ``report.md``.
    """
    summary = summarize_fair(results)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(_json_safe({"header": header or {}, **summary}), f, indent=1)
    figures = fair_figures(results, summary, out_dir)
    cells = summary["cells"]
    order = fair_order({m for c in cells.values() for m in c["methods"]})
    lines = _intro_lines(title, command, header or {})
    lines += _speedup_table(
        cells, summary["aggregates"], [m for m in order if not is_cosine_grid(m)]
    )
    lines += _fair_check_lines(summary["checks"])
    lines += _curve_table(summary["curves"])
    for key, cell in cells.items():
        lines += _fair_cell_lines(key, cell, order)
        for name in figures.get(key, []):
            lines += [f"![{name}]({name})", ""]
    for name in figures.get("_curves", []):
        lines += [f"![{name}]({name})", ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    write_sweep_report(summary, out_dir)
    return text


def _intro_lines(title: str, command: str, header: dict[str, Any]) -> list[str]:
    """The title, command, machine, threads and versions, and what the numbers mean."""
    lines = [f"# {title}", "", f"Command: `{command}`"]
    if header:
        lines.append(f"Machine: {header.get('machine', '?')}")
        lines.append(f"Torch threads per run: {header.get('threads', '?')}")
        versions = header.get("versions", {}).items()
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions))
    return lines + [
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


def _speedup_table(
    cells: dict[str, Any], aggregates: dict[str, Any], plain: list[str]
) -> list[str]:
    """Every method's speed-up per cell, its geo-mean and its cell count (grid rows left out)."""
    lines = ["## Speed-up vs the tuned cosine (median final score at B)", ""]
    keys = list(cells)
    lines.append("| method | " + " | ".join(keys) + " | geo-mean | cells (clipped) |")
    lines.append("| --- | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |")
    for method in plain:
        agg = aggregates.get(method)
        geo = "-" if agg is None or not math.isfinite(agg["geomean"]) else f"{agg['geomean']:.2f}x"
        count = "-" if agg is None else f"{agg['cells']} ({agg['clipped']})"
        tuned = " (tuned)" if is_tuned(method) else ""
        row_cells = [_fmt_speedup(cells[k]["methods"].get(method)) for k in keys]
        lines.append(f"| {method}{tuned} | " + " | ".join(row_cells) + f" | {geo} | {count} |")
    return lines + ["", "The geo-mean counts a clipped cell at its bound.", ""]


def _curve_table(curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The tuned cosine's curve: per workload and budget its best rate, score and envelope."""
    lines = ["## The tuned cosine's score-versus-budget curve", ""]
    lines.append("| workload | budget | best lr | curve score | envelope | median final per lr |")
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for workload, points in curves.items():
        for p in points:
            per_lr = ", ".join(
                f"{lr}: {v['median']:.4f} ({v['seeds']})" for lr, v in p["lrs"].items()
            )
            lines.append(
                f"| {workload} | {p['budget']} | {p['lr']:.3g} | {p['score']:.4f} | "
                f"{p['envelope']:.4f} | {per_lr} |"
            )
    if not curves:
        lines.append("| (no cosine grid runs: no speed-ups) | | | | | |")
    return lines + [""]


def _fair_check_lines(checks: dict[str, Any]) -> list[str]:
    """The bar checks: (a) never behind naive per cell, (b) the speed-up against the anchors."""
    lines = ["## Bar checks for autolrs", ""]
    behind = checks["never_behind_naive"]
    lines.append(
        f"(a) Never behind naive: {checks['never_behind_naive_verdict']} (per workload and "
        f"budget: autolrs' median final <= {NAIVE_MEDIAN_SLACK:g} x naive's median final, and no "
        f"autolrs seed > {NAIVE_SEED_SLACK:g} x naive's median final)."
    )
    if behind:
        lines += [
            "",
            "| workload, budget | autolrs median | naive median | ratio | worst autolrs "
            "seed | ratio | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
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
            + (f"; {'; '.join(parts)}" if parts else "")
            + missing
            + "."
        )
    return lines + [""]


def _fair_cell_lines(key: str, cell: dict[str, Any], order: list[str]) -> list[str]:
    """One cell's section: its budget and target, and a row per method with its accounting."""
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
            f"{fmt_steps(row['steps_to_target'], cell['budget'])} | "
            f"{row['reached']}/{row['seeds']} | {acc} | {row['seconds_per_step'] * 1e3:.1f} ms | "
            f"{row['diverged']}/{row['seeds']} | {ctrl} | {calls} |"
        )
    lines += accounting_table(
        {m: rows[m]["accounting"] for m in order if "accounting" in rows.get(m, {})},
        "share of the budget",
    )
    return lines + [""]
