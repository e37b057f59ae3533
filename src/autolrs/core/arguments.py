"""Checks of the controller's arguments (shared with the executors that pass them on)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["validate_lr_range", "validate_total_steps"]


def validate_total_steps(total_steps: Any) -> int | None:
    """Checks ``total_steps``: None or an integer >= 1.

    Raises:
        ValueError: If it is not None or a positive whole number.
    """
    if total_steps is None:
        return None
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer, float)):
        raise ValueError(
            f"total_steps must be a positive integer or None, got {total_steps!r} "
            f"({type(total_steps).__name__})"
        )
    if isinstance(total_steps, float) and not (
        math.isfinite(total_steps) and total_steps.is_integer()
    ):
        raise ValueError(
            f"total_steps must be a positive integer or None, got {total_steps!r}; "
            "pass None when the number of steps is not known"
        )
    if int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
    return int(total_steps)


def validate_lr_range(lr_range: Any) -> tuple[float, float] | None:
    """Checks ``lr_range``: None or two numbers with 0 < low < high < inf.

    Raises:
        ValueError: If it is not None or a valid interval.
    """
    if lr_range is None:
        return None
    try:
        low, high = lr_range
    except (TypeError, ValueError):
        raise ValueError(
            f"lr_range must be a pair (low, high) of learning rates, got {lr_range!r}; "
            "pass None to let autolrs find the range with a short range test"
        ) from None
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"lr_range {name} must be a number, got {value!r} in {lr_range!r}")
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low < high):
        raise ValueError(
            f"lr_range must satisfy 0 < low < high < inf, got {lr_range!r}"
            + ("; the bounds look reversed" if 0 < high < low else "")
        )
    return low, high
