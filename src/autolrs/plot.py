"""Drawing the schedule autolrs found, from the JSONL events of a run (``autolrs plot``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from autolrs.events import read_events, split_runs

__all__ = ["plot_events", "plot_run", "require_matplotlib", "select_run"]


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
    """Writes a two-panel PNG: learning rate against step, and each stage's candidates.

    The top panel draws the committed schedule as a solid line, every candidate's trial as a
    short light segment (a cross where it diverged), the range test's sweep dashed, and
    rollbacks as vertical lines. The bottom panel plots, per stage, each candidate's forecast
    loss against its learning rate, the chosen one circled.
    """
    segments = [e for e in events if e.get("event") == "segment"]
    if not segments and not any(e.get("event") == "candidate" for e in events):
        raise ValueError("no autolrs events to plot (was the file written by AutoLRS(log_file=...)?)")
    plt = require_matplotlib()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), height_ratios=(3, 2))
    cmap = plt.get_cmap("viridis")

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

    decisions = {e["stage"]: e for e in events if e.get("event") == "decision" and e.get("stage")}
    stages = sorted({e["stage"] for e in events if e.get("event") == "candidate"})
    for i, stage in enumerate(stages):
        color = cmap(i / max(1, len(stages) - 1))
        cands = [
            e for e in events if e.get("event") == "candidate" and e["stage"] == stage and e.get("forecast") is not None
        ]
        if not cands:
            continue
        bottom.plot([c["lr"] for c in cands], [c["forecast"] for c in cands], "o", color=color, ms=4, label=f"stage {stage}")
        chosen = decisions.get(stage)
        if chosen is not None and chosen.get("forecast") is not None:
            bottom.plot([chosen["lr"]], [chosen["forecast"]], "o", mfc="none", mec=color, ms=11, mew=1.5)
    bottom.set_xscale("log")
    forecasts = [e["forecast"] for e in events if e.get("event") == "candidate" and e.get("forecast") is not None]
    if forecasts and min(forecasts) > 0:  # later stages' losses are small: a linear axis squashes them
        bottom.set_yscale("log")
    bottom.set_xlabel("candidate learning rate")
    bottom.set_ylabel("forecast loss at end of stage")
    if stages:
        bottom.legend(loc="best", fontsize=7, ncol=2)
    bottom.grid(alpha=0.3, which="both")
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(os.fspath(output)))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
