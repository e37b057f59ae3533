"""Drawing the schedule autolrs found, from the JSONL events of a run (``autolrs plot``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from autolrs.events import read_events

__all__ = ["plot_events", "plot_run", "require_matplotlib"]


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


def plot_run(path: str | os.PathLike[str], output: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Reads a run's JSONL events and writes a PNG of its schedule.

    Args:
        path: The JSONL file written with ``AutoLRS(log_file=...)``.
        output: The PNG to write.
        title: Figure title (default: the file name).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file holds no autolrs events.
    """
    events = read_events(path)
    plot_events(events, output, title=title or os.path.basename(os.fspath(path)))


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
    top.plot([], [], "x", color="tab:red", label="diverged candidate")
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
