"""Drawing the schedule autolrs found, from the JSONL events of a run (``autolrs plot``)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from autolrs.events import read_events, split_runs

__all__ = ["figure", "plot_events", "plot_run", "require_matplotlib", "select_run"]


def _finite(value: Any) -> bool:
    """Whether an event's number can be drawn: a finite one (a file holds ``"nan"``-like values
    as floats once read, :func:`autolrs.events.json_restore`, and older files None)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def require_matplotlib() -> Any:
    """Imports matplotlib with a headless backend.

    Raises:
        ImportError: If matplotlib is missing, naming the install command.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - the plot extra is installed in tests
        raise ImportError(
            'plotting needs matplotlib; install it with: pip install "autolrs[plot]"'
        ) from err
    return plt


def select_run(
    runs: dict[str, list[dict[str, Any]]], run: str | int | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """One run of a file's runs (:func:`autolrs.events.split_runs`).

    Args:
        runs: The runs, in file order.
        run: Its identity, or its position (1 is the first run, -1 the last); None: the last.

    Raises:
        ValueError: If there is no such run (the message lists the runs there are).
    """
    names = list(runs)
    if not names:
        raise ValueError("the file holds no autolrs events")
    if run is None:
        run = -1
    if isinstance(run, str) and run not in runs:
        try:
            run = int(run)
        except ValueError:
            pass
    if isinstance(run, int):
        index = run - 1 if run > 0 else len(names) + run
        if not 0 <= index < len(names):
            raise ValueError(f"run {run} does not exist; the file holds {len(names)} run(s): {names}")
        name = names[index]
    elif run in runs:
        name = run
    else:
        raise ValueError(f"run {run!r} does not exist; the file holds {len(names)} run(s): {names}")
    return name, runs[name]


def plot_run(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    title: str | None = None,
    run: str | int | None = None,
) -> tuple[str, int]:
    """Reads a JSONL event file and writes a PNG of one run's schedule.

    Args:
        path: The JSONL file written with ``AutoLRS(log_file=...)``.
        output: The PNG to write.
        title: Figure title (default: the file name and the run).
        run: Which run, when several runs appended to the file: its identity, or its position
            (1 first, -1 last); None: the last.

    Returns:
        The identity of the run drawn and how many runs the file holds.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file holds no autolrs events, or no such run.
    """
    runs = split_runs(read_events(path))
    name, events = select_run(runs, run)
    label = os.path.basename(os.fspath(path)) + (f" (run {name})" if len(runs) > 1 else "")
    plot_events(events, output, title=title or label)
    return name, len(runs)


def plot_events(events: Sequence[dict[str, Any]], output: str | os.PathLike[str], *, title: str = "") -> None:
    """Writes a three-panel PNG: learning rate and loss against step, and each stage's
    candidates.

    The top panel draws the committed schedule as a solid line, every candidate's trial as a
    short light segment (a cross where it diverged), the range test's sweep dashed, and
    rollbacks as vertical lines. The middle panel shares its step axis: the training loss
    (averaged over bins of steps, styled as the rate of the steps it comes from: committed,
    trial, range test or rolled back) and every validation check (filled where training kept
    the state it scored, hollow where that state was rolled back). The bottom panel plots, per
    stage, each candidate's forecast loss against its learning rate, the chosen one circled.
    """
    plt = require_matplotlib()
    fig = figure(events, title=title)
    directory = os.path.dirname(os.path.abspath(os.fspath(output)))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def figure(events: Sequence[dict[str, Any]], *, title: str = "") -> Any:
    """The matplotlib figure :func:`plot_events` writes (three axes: rate, loss, candidates).

    Raises:
        ValueError: If ``events`` holds no segment or candidate.
    """
    segments = [e for e in events if e.get("event") == "segment"]
    if not segments and not any(e.get("event") == "candidate" for e in events):
        raise ValueError("no autolrs events to plot (was the file written by AutoLRS(log_file=...)?)")
    plt = require_matplotlib()
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 10), height_ratios=(3, 2.5, 2))
    middle.sharex(top)
    _rate_panel(top, events, segments, title)
    _loss_panel(middle, events, segments)
    _candidate_panel(bottom, events, plt.get_cmap("viridis"))
    fig.tight_layout()
    return fig


def _rate_panel(
    top: Any, events: Sequence[dict[str, Any]], segments: Sequence[dict[str, Any]], title: str
) -> None:
    """The learning rate against the step (the top panel)."""
    for seg in segments:
        start, end, lr = seg["start"], seg["end"], seg["lr"]
        lr_end = seg.get("lr_end", lr)
        kind = seg.get("kind")
        if kind == "range_test":
            top.plot([start, end], [lr, lr_end], "--", color="0.5", lw=1, label="_range")
        elif kind == "trial":
            top.plot([start, end], [lr, lr], color="tab:orange", alpha=0.45, lw=2)
        elif seg.get("committed"):
            top.plot([start, end], [lr, lr_end], color="tab:blue", lw=2.5)
        else:  # steps of a phase that was rolled back: spent, then undone
            top.plot([start, end], [lr, lr_end], ":", color="tab:blue", lw=1.5)
    for cand in (e for e in events if e.get("event") == "candidate"):
        if cand.get("diverged"):
            top.plot([cand["end"]], [cand["lr"]], "x", color="tab:red", ms=6)
    for rb in (e for e in events if e.get("event") == "rollback"):
        top.axvline(rb["step"], color="tab:red", alpha=0.3, lw=1)
    top.set_yscale("log")
    top.set_xlabel("optimizer step (trials included)")
    top.set_ylabel("learning rate")
    top.set_title(title)
    top.plot([], [], color="tab:blue", lw=2.5, label="committed schedule")
    top.plot([], [], color="tab:orange", lw=2, alpha=0.45, label="candidate trials")
    top.plot([], [], "--", color="0.5", label="range test")
    top.plot([], [], ":", color="tab:blue", lw=1.5, label="rolled back (steps spent, then undone)")
    top.plot([], [], "x", color="tab:red", label="diverged candidate")
    top.plot([], [], color="tab:red", alpha=0.3, lw=1, label="rollback to the last committed state")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3, which="both")


def _candidate_panel(bottom: Any, events: Sequence[dict[str, Any]], cmap: Any) -> None:
    """Each stage's candidates, forecast loss against rate (the bottom panel)."""
    decisions = {e["stage"]: e for e in events if e.get("event") == "decision" and e.get("stage")}
    stages = sorted({e["stage"] for e in events if e.get("event") == "candidate"})
    for i, stage in enumerate(stages):
        color = cmap(i / max(1, len(stages) - 1))
        cands = [
            e for e in events if e.get("event") == "candidate" and e["stage"] == stage and _finite(e.get("forecast"))
        ]
        if not cands:
            continue
        bottom.plot([c["lr"] for c in cands], [c["forecast"] for c in cands], "o", color=color, ms=4, label=f"stage {stage}")
        chosen = decisions.get(stage)
        if chosen is not None and _finite(chosen.get("forecast")):
            bottom.plot([chosen["lr"]], [chosen["forecast"]], "o", mfc="none", mec=color, ms=11, mew=1.5)
    bottom.set_xscale("log")
    forecasts = [e["forecast"] for e in events if e.get("event") == "candidate" and _finite(e.get("forecast"))]
    if forecasts and min(forecasts) > 0:  # later stages' losses are small: a linear axis squashes them
        bottom.set_yscale("log")
    bottom.set_xlabel("candidate learning rate")
    bottom.set_ylabel("forecast loss at end of stage")
    if stages:
        bottom.legend(loc="best", fontsize=7, ncol=2)
    bottom.grid(alpha=0.3, which="both")


_STYLES = {  # a segment's class -> (line style, colour, width, alpha), as on the rate panel
    "committed": ("-", "tab:blue", 1.8, 1.0),
    "trial": ("-", "tab:orange", 1.5, 0.6),
    "range_test": ("--", "0.5", 1.0, 1.0),
    "rolled_back": (":", "tab:blue", 1.5, 1.0),
}


def _segment_class(segment: dict[str, Any]) -> str:
    kind = segment.get("kind")
    if kind in ("range_test", "trial"):
        return str(kind)
    return "committed" if segment.get("committed") else "rolled_back"


def _class_at(step: int, segments: Sequence[dict[str, Any]]) -> str:
    """The class of the steps ``step`` belongs to (committed when no segment covers it yet)."""
    for seg in reversed(segments):
        if seg["start"] < step <= seg["end"]:
            return _segment_class(seg)
    return "committed"


def _smoothed(points: list[tuple[int, float]], weight: float = 0.3) -> list[tuple[int, float]]:
    """An exponential moving average of ``(step, loss)`` points (each new point ``weight``)."""
    out, level = [], None
    for step, value in points:
        level = value if level is None else weight * value + (1 - weight) * level
        out.append((step, level))
    return out


def _loss_panel(ax: Any, events: Sequence[dict[str, Any]], segments: Sequence[dict[str, Any]]) -> None:
    """The training loss and the validation checks against the step (the middle panel)."""
    losses = [e for e in events if e.get("event") == "train_loss" and _finite(e.get("loss"))]
    runs: list[tuple[str, list[tuple[int, float]]]] = []
    for rec in losses:
        cls = _class_at(int(rec["step"]), segments)
        if not runs or runs[-1][0] != cls:
            runs.append((cls, []))
        runs[-1][1].append((int(rec["step"]), float(rec["loss"])))
    for cls, points in runs:
        points = _smoothed(points)
        style, color, width, alpha = _STYLES[cls]
        ax.plot(*zip(*points), style, color=color, lw=width, alpha=alpha, marker="." if len(points) == 1 else None)
    checks = [e for e in events if e.get("event") == "validation_check" and _finite(e.get("value"))]
    checks += [
        {"step": e["end"], "value": e["forecast"]}
        for e in events
        if e.get("event") == "candidate" and _finite(e.get("forecast")) and e.get("mode") == "validation"
    ]
    kept = [c for c in checks if _class_at(int(c["step"]), segments) == "committed"]
    undone = [c for c in checks if c not in kept]
    if kept:
        ax.plot([c["step"] for c in kept], [c["value"] for c in kept], "o", color="k", ms=4)
    if undone:
        ax.plot([c["step"] for c in undone], [c["value"] for c in undone], "o", mfc="none", mec="k", ms=4)
    for rb in (e for e in events if e.get("event") == "rollback"):
        ax.axvline(rb["step"], color="tab:red", alpha=0.3, lw=1)
    values = [v for _, pts in runs for _, v in pts] + [c["value"] for c in checks]
    if values and min(values) > 0:
        ax.set_yscale("log")
    if not losses:
        ax.text(0.5, 0.5, "no training losses in this log (written before autolrs recorded them)",
                transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")
    ax.plot([], [], "-", color="tab:blue", lw=1.8, label="training loss (smoothed), committed")
    ax.plot([], [], "-", color="tab:orange", lw=1.5, alpha=0.6, label="during candidate trials")
    ax.plot([], [], "--", color="0.5", lw=1.0, label="during the range test")
    ax.plot([], [], ":", color="tab:blue", lw=1.5, label="rolled back")
    ax.plot([], [], "o", color="k", ms=4, label="validation check (state kept)")
    ax.plot([], [], "o", mfc="none", mec="k", ms=4, label="validation check (state rolled back)")
    ax.legend(loc="best", fontsize=7)
    ax.set_xlabel("optimizer step (trials included)")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
