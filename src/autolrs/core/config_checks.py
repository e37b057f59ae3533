"""Field checks for :class:`~autolrs.core.config.Config`: each raises a ``ValueError`` that names
the field, the values it accepts and the value it got."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["at_least", "in_range", "is_real", "positive_int"]


def is_real(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(cfg: Any, name: str, minimum: int = 1) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"Config.{name} must be an integer >= {minimum}, got {value!r}")


def in_range(
    cfg: Any, name: str, low: float, high: float, *, closed_low: bool = False,
    optional: bool = False,
) -> None:
    value = getattr(cfg, name)
    if optional and value is None:
        return
    ok = is_real(value) and (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bracket = "[" if closed_low else "("
        raise ValueError(f"Config.{name} must lie in {bracket}{low}, {high}], got {value!r}")


def at_least(
    cfg: Any, name: str, low: float, *, strict: bool = False, optional: bool = False
) -> None:
    value = getattr(cfg, name)
    if optional and value is None:
        return
    ok = is_real(value) and (value > low if strict else value >= low)
    if not ok:
        op = ">" if strict else ">="
        raise ValueError(f"Config.{name} must be a finite number {op} {low}, got {value!r}")
