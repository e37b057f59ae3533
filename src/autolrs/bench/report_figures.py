"""The reports' figures: learning rate and score against step, the performance profile and the
tuned cosine's score-versus-budget curve (PNG, written only where matplotlib is installed)."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Any

import numpy as np

from autolrs.bench.harness import RunResult
from autolrs.bench.methods import is_cosine_grid
from autolrs.bench.report_common import REFERENCE, fair_order, is_tuned, order_methods

__all__ = ["fair_figures", "plot_run", "quick_figures", "save_lr_figure", "steps_line"]


def steps_line(lrs: list[tuple[int, float]], last: int) -> tuple[list[int], list[float]]:
    """The learning rate as a step function of the step, ready to plot.

    Args:
        lrs: ``(step, lr)`` at each change of the rate.
        last: The run's last step, where the last rate ends.

    Returns:
        The x and y coordinates of the steps.
    """
    xs, ys = [], []
    for i, (step, lr) in enumerate(lrs):
        end = lrs[i + 1][0] if i + 1 < len(lrs) else last
        xs += [step, end]
        ys += [lr, lr]
    return xs, ys


def plot_run(ax_lr: Any, ax_score: Any, run: Any, color: Any, method: str) -> None:
    """Draws one run's learning rate and score curve (the reference thicker).

    Args:
        ax_lr: The axes of the learning rate.
        ax_score: The axes of the score.
        run: The run (a :class:`autolrs.bench.harness.RunResult`).
        color: Its line colour.
        method: Its method, the lines' label.
    """
    width = 1.8 if method == REFERENCE else 1.0
    if run.lrs:
        xs, ys = steps_line(run.lrs, run.steps)
        ax_lr.plot(xs, ys, color=color, lw=width, label=method)
    if run.curve:
        scores = [v if math.isfinite(v) else np.nan for _, v in run.curve]
        ax_score.plot([s for s, _ in run.curve], scores, color=color, lw=width, label=method)


def save_lr_figure(fig: Any, ax_lr: Any, ax_score: Any, title: str, name: str, out_dir: str) -> str:
    """Labels the rate-and-score figure of ``title``, saves it as ``name`` and closes it.

    Args:
        fig: The figure.
        ax_lr: Its learning-rate axes.
        ax_score: Its score axes.
        title: The figure's subject (a workload or a cell).
        name: The file name to save it under.
        out_dir: The folder to save it in.

    Returns:
        ``name``.
    """
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


def _pyplot() -> Any:
    """matplotlib's pyplot, or None where matplotlib is not installed."""
    try:
        from autolrs.plot import require_matplotlib

        return require_matplotlib()
    except ImportError:
        return None


def quick_figures(
    results: list[RunResult], summary: dict[str, Any], out_dir: str
) -> dict[str, Any]:
    """The quick report's figures: per workload its rates and scores, and the profile.

    Args:
        results: The runs of a quick-protocol suite.
        summary: Their summary (:func:`autolrs.bench.quick_report.summarize`).
        out_dir: The folder to save the PNGs in.

    Returns:
        Per workload its figures' file names, and ``"profile"``'s; empty without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return {}
    figures: dict[str, Any] = {}
    by_workload: dict[str, list[RunResult]] = defaultdict(list)
    for r in results:
        if float(r.extra.get("budget_factor", 1.0)) == 1.0:
            by_workload[r.workload].append(r)
    colors = plt.get_cmap("tab10")
    order = order_methods({r.method for r in results})
    for workload, runs in by_workload.items():
        seed0 = {r.method: r for r in sorted(runs, key=lambda r: r.seed, reverse=True)}
        fig, (ax_lr, ax_score) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
        for method, r in sorted(
            seed0.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99
        ):
            plot_run(
                ax_lr,
                ax_score,
                r,
                colors(order.index(method) % 10 if method in order else 9),
                method,
            )
        target = summary["workloads"].get(workload, {}).get("target")
        if target:
            ax_score.axhline(target, color="k", ls=":", lw=1, label="target")
        figures[workload] = [
            save_lr_figure(fig, ax_lr, ax_score, workload, f"{workload}.png", out_dir)
        ]
    if _profile_figure(plt, summary, order, out_dir):
        figures["profile"] = "profile.png"
    return figures


def _profile_ratios(summary: dict[str, Any], keys: list[str], method: str) -> list[float]:
    """Per workload: the method's steps to target over the fastest no-tuning method's."""
    ratios = []
    for k in keys:
        rows = summary["workloads"][k]["methods"]
        if method not in rows:
            continue
        best = min(
            (r["steps_to_target"] for m, r in rows.items() if not is_tuned(m)),
            default=math.inf,
        )
        ours = rows[method]["steps_to_target"]
        ratios.append(ours / best if math.isfinite(ours) and math.isfinite(best) else math.inf)
    return ratios


def _profile_figure(plt: Any, summary: dict[str, Any], order: list[str], out_dir: str) -> bool:
    """Saves ``profile.png``, the no-tuning methods' performance profile; False if none to draw."""
    base_keys = [k for k in summary["workloads"] if " x" not in k]
    methods = order_methods(
        {m for k in base_keys for m in summary["workloads"][k]["methods"] if not is_tuned(m)}
    )
    if not (base_keys and methods):
        return False
    colors = plt.get_cmap("tab10")
    taus = np.logspace(0, 1, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in methods:
        ratios = _profile_ratios(summary, base_keys, method)
        rho = [np.mean([r <= t for r in ratios]) if ratios else 0 for t in taus]
        color = colors(order.index(method) % 10 if method in order else 9)
        ax.step(
            taus, rho, where="post", color=color, lw=2 if method == REFERENCE else 1.2, label=method
        )
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
    return True


def fair_figures(results: list[RunResult], summary: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """The fair report's figures.

    Per cell: learning rate and score against step (seed 0 of every method but the grid's
    other LRs); per workload: the tuned cosine's curve with every method's median final.

    Args:
        results: The runs of a fair-protocol suite.
        summary: Their summary (:func:`autolrs.bench.fair_summary.summarize_fair`).
        out_dir: The folder to save the PNGs in.

    Returns:
        Per cell key its figures' file names, and ``"_curves"``: the curve figures' names;
        empty without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return {}
    figures: dict[str, Any] = {}
    order = fair_order({r.method for r in results})
    for key, cell in summary["cells"].items():
        figures[key] = [_cell_figure(plt, results, summary, key, cell, order, out_dir)]
    for workload, points in summary["curves"].items():
        name = _curve_figure(plt, summary, workload, points, order, out_dir)
        figures.setdefault("_curves", []).append(name)
    return figures


def _cell_figure(
    plt: Any,
    results: list[RunResult],
    summary: dict[str, Any],
    key: str,
    cell: dict[str, Any],
    order: list[str],
    out_dir: str,
) -> str:
    """Saves one cell's rate-and-score figure (the grid's best rate only); returns its name."""
    colors = plt.get_cmap("tab10")
    best = next(
        (p for p in summary["curves"].get(cell["workload"], []) if p["budget"] == cell["budget"]),
        None,
    )
    keep = {m for m in cell["methods"] if not is_cosine_grid(m)}
    if best is not None:
        keep.add(best["lrs"][f"{best['lr']:.3g}"]["method"])
    runs = [
        r
        for r in results
        if r.workload == cell["workload"] and r.budget == cell["budget"] and r.method in keep
    ]
    first = {r.method: r for r in sorted(runs, key=lambda r: r.seed, reverse=True)}
    fig, (ax_lr, ax_score) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for method, r in sorted(first.items(), key=lambda kv: order.index(kv[0])):
        plot_run(ax_lr, ax_score, r, colors(order.index(method) % 10), method)
    name = f"{cell['workload']}-B{cell['budget']}.png"
    return save_lr_figure(fig, ax_lr, ax_score, key, name, out_dir)


def _curve_figure(
    plt: Any,
    summary: dict[str, Any],
    workload: str,
    points: list[dict[str, Any]],
    order: list[str],
    out_dir: str,
) -> str:
    """Saves a workload's tuned-cosine curve with every method's median finals; returns its name."""
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [p["budget"] for p in points]
    ax.plot(xs, [p["envelope"] for p in points], "k-", lw=2, label="tuned cosine (envelope)")
    ax.plot(xs, [p["score"] for p in points], "ko", ms=4)
    for method in order:
        if is_cosine_grid(method):
            continue
        pts = [
            (c["budget"], c["methods"][method]["final_score"])
            for c in summary["cells"].values()
            if c["workload"] == workload and method in c["methods"]
        ]
        pts = [(b, s) for b, s in pts if math.isfinite(s)]
        if pts:
            ax.plot(
                *zip(*sorted(pts)),
                marker="s",
                ls="--",
                lw=1,
                color=colors(order.index(method) % 10),
                label=method,
            )
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
    return name
