"""``autolrs bench --report``: the report that fits the runs' protocol.

The quick protocol's report lives in :mod:`autolrs.bench.quick_report`, the fair protocol's in
:mod:`autolrs.bench.fair_report`; :func:`write_report` picks one from the runs.
"""

from __future__ import annotations

from typing import Any

from autolrs.bench.fair_report import write_fair_report
from autolrs.bench.fair_summary import is_fair
from autolrs.bench.harness import RunResult
from autolrs.bench.quick_report import write_quick_report

__all__ = ["write_report"]


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
    first protocol (budget 1.5H, steps to target read mid-run) keep their report
    (:func:`write_quick_report`).

    Args:
        results: The runs.
        targets: Per workload, its target score and oracle (the quick report's; the fair
            report reads each run's own target).
        out_dir: The folder to write to (made if missing).
        title: The report's title.
        command: The command that ran the suite, quoted in the report.
        header: The runs' header (machine, threads, versions), if any.

    Returns:
        The Markdown text written to ``report.md``.
    """
    if is_fair(results):
        return write_fair_report(results, out_dir, title=title, command=command, header=header)
    return write_quick_report(
        results, targets, out_dir, title=title, command=command, header=header
    )
