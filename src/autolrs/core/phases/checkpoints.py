"""Where a committing phase (exploit, final) snapshots a healthy model on its way."""

from __future__ import annotations

import math

from autolrs.core.stage_guard import GUARD_WINDOW

__all__ = ["before_next", "checkpoints"]


def checkpoints(length: int, parts: int = 4) -> list[int]:
    """Steps into a phase of ``length`` steps at which a healthy model is committed, so that a
    rollback loses only the steps after it: up to ``parts - 1`` evenly spaced points, at least
    ``GUARD_WINDOW`` steps apart (none in a phase shorter than ``2 * GUARD_WINDOW``)."""
    parts = min(parts, length // GUARD_WINDOW)
    if parts < 2:
        return []
    return [length * k // parts for k in range(1, parts)]


def before_next(points: list[int], done: int) -> int | float:
    """Steps that can pass before the next of ``points`` after ``done`` (inf: none left)."""
    ahead = [p for p in points if p > done]
    return ahead[0] - done - 1 if ahead else math.inf
