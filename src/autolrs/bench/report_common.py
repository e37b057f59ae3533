"""Table and format helpers shared by the quick, fair and sweep reports."""

from __future__ import annotations

import math

import numpy as np

from autolrs.bench.methods import METHODS, is_cosine_grid
from autolrs.events import ACCOUNTS

__all__ = [
    "REFERENCE",
    "accounting_table",
    "fair_order",
    "fmt_steps",
    "is_tuned",
    "median_or_nan",
    "order_methods",
]

REFERENCE = "autolrs"
"""The method every report judges (drawn thicker, compared with the others)."""


def is_tuned(method: str) -> bool:
    """Whether ``method`` is a registered method that was tuned on the workload.

    Args:
        method: A method name as the runs record it.

    Returns:
        True for a registered method whose spec says it is tuned.
    """
    spec = METHODS.get(method)
    return bool(spec and spec.tuned)


def order_methods(methods: set[str]) -> list[str]:
    """Registered methods in registry order, then variants alphabetically.

    Args:
        methods: The method names to order.

    Returns:
        The names, registered ones first.
    """
    known = [m for m in METHODS if m in methods]
    return known + sorted(methods - set(known))


def fair_order(methods: set[str]) -> list[str]:
    """:func:`order_methods`, then the tuned cosine grid's ``cosine@<lr>`` rows by rate.

    Args:
        methods: The method names to order.

    Returns:
        The names, the grid's last.
    """
    grid = sorted((m for m in methods if is_cosine_grid(m)), key=lambda m: float(m[7:]))
    return order_methods({m for m in methods if not is_cosine_grid(m)}) + grid


def median_or_nan(values: list[float]) -> float:
    """The median of ``values`` without the ``None`` entries.

    Args:
        values: Numbers, some possibly ``None``.

    Returns:
        Their median; nan when none is left.
    """
    finite = [v for v in values if v is not None]
    if not finite:
        return math.nan
    return float(np.median(finite))


def fmt_steps(value: float, budget: int) -> str:
    """A steps-to-target cell: the steps, or ``>budget`` when the target was not reached.

    Args:
        value: Steps to target (inf when not reached).
        budget: The run's step budget.

    Returns:
        The cell's text.
    """
    return f">{budget}" if not math.isfinite(value) else f"{value:.0f}"


def accounting_table(shares: dict[str, dict[str, float]], of: str) -> list[str]:
    """The step-accounting table (one row per method; no lines when no method has one).

    Args:
        shares: Per method, each account's share of the steps.
        of: What the shares are of, said in the table's caption.

    Returns:
        The table's Markdown lines.
    """
    if not shares:
        return []
    lines = [
        "",
        f"Step accounting ({of}, median over seeds; discarded = range test + losing trials + "
        "rolled back; early stopped = the steps after the lowest validation loss that the "
        "overfitting guard's return to it undid, not counted as discarded):",
        "",
        "| method | " + " | ".join(a.replace("_", " ") for a in ACCOUNTS) + " | discarded |",
        "| --- |" + " ---: |" * (len(ACCOUNTS) + 1),
    ]
    for method, acc in shares.items():
        discarded = acc.get(
            "discarded", acc["range_test"] + acc["discarded_trials"] + acc["rolled_back"]
        )
        cells = " | ".join(f"{100 * acc.get(a, 0.0):.1f} %" for a in ACCOUNTS)
        lines.append(f"| {method} | {cells} | {100 * discarded:.1f} % |")
    return lines
