"""The fair protocol's speed-up maths: the tuned cosine's curve, b*(score) and b*/B.

Every method is planned for the same budget B and scored at its end; the tuned cosine (rerun
over the committed grid's best learning rates at every budget) gives a score-versus-budget
curve, and a method's speed-up at B is the budget that curve needs for the method's final
score, over B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_EXTRAPOLATION",
    "SpeedUp",
    "budget_to_reach",
    "geomean",
    "monotone_envelope",
    "speedup",
]

MAX_EXTRAPOLATION = 2.0  # never extrapolate the curve beyond this factor outside its budgets


def monotone_envelope(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``(budget, score)`` sorted by budget, each score replaced by the lowest score at that
    budget or below (running minimum); points with a non-finite or non-positive score (a
    diverged grid) are dropped, as log-log interpolation cannot use them."""
    out: list[tuple[float, float]] = []
    for budget, score in sorted(points):
        if not (math.isfinite(score) and score > 0 and budget > 0):
            continue
        out.append((float(budget), min(score, out[-1][1]) if out else float(score)))
    return out


@dataclass(frozen=True)
class SpeedUp:
    """A method's speed-up at budget B: ``needed / budget``.

    Attributes:
        value: b*/B; when ``bound`` is set, the clipped value (a bound, not an estimate).
        needed: b*, the budget the tuned cosine's curve needs to reach the method's score.
        bound: ``""`` (interpolated, or extrapolated within the limit), ``">="`` (the method's
            score is better than the curve reaches within the limit: b* is at least this) or
            ``"<="`` (worse than the curve at its low limit: b* is at most this).
    """

    value: float
    needed: float
    bound: str = ""

    def __str__(self) -> str:
        return "-" if not math.isfinite(self.value) else f"{self.bound}{self.value:.2f}x"


def budget_to_reach(
    curve: list[tuple[float, float]], score: float, max_factor: float = MAX_EXTRAPOLATION
) -> tuple[float, str]:
    """b*(score): the budget at which the tuned cosine's curve reaches ``score``.

    ``curve`` holds ``(budget, score)`` points; its monotone envelope is used. Between two
    points b* is interpolated linearly in (log budget, log score); below the first or past the
    last point the nearest segment's slope extrapolates, never further than ``max_factor``
    outside the measured budgets: a clipped b* comes back with its bound (``">="``/``"<="``).
    With a single point there is no slope: b* is bounded by that point's budget. If the curve
    reaches ``score`` exactly on a flat stretch, b* is the first budget that reaches it.

    Returns:
        ``(b*, bound)``; ``(nan, "")`` without a usable curve.
    """
    env = monotone_envelope(curve)
    if not env:
        return math.nan, ""
    lo_budget, hi_budget = env[0][0], env[-1][0]
    if math.isnan(score):
        return math.nan, ""
    if not score > 0:  # a perfect score: better than anything the curve reaches
        return (hi_budget * max_factor if len(env) > 1 else hi_budget), ">="
    if math.isinf(score):  # diverged: worse than the whole curve
        return (lo_budget / max_factor if len(env) > 1 else lo_budget), "<="
    xs = [math.log(b) for b, _ in env]
    ys = [math.log(s) for _, s in env]
    y = math.log(score)
    first = next((i for i, v in enumerate(ys) if v <= y), None)
    if first is not None and ys[first] == y:
        return env[first][0], ""
    if first is not None and first > 0:  # ys[first - 1] > y > ys[first]
        i = first - 1
        x = xs[i] + (y - ys[i]) * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i])
        return math.exp(x), ""
    if len(env) == 1:
        return (lo_budget, "<=") if first == 0 else (hi_budget, ">=")
    if first == 0:  # worse than the curve's first point: extrapolate to lower budgets
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        limit = xs[0] - math.log(max_factor)
        x = xs[0] + (y - ys[0]) / slope if slope < 0 else -math.inf
        return (math.exp(x), "") if x >= limit else (lo_budget / max_factor, "<=")
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])  # better than its last: extrapolate upwards
    limit = xs[-1] + math.log(max_factor)
    x = xs[-1] + (y - ys[-1]) / slope if slope < 0 else math.inf
    return (math.exp(x), "") if x <= limit else (hi_budget * max_factor, ">=")


def speedup(curve: list[tuple[float, float]], score: float, budget: float) -> SpeedUp:
    """The speed-up of a method whose median final score at ``budget`` is ``score``:
    b*(score) / budget on the tuned cosine's ``curve`` (see :func:`budget_to_reach`)."""
    needed, bound = budget_to_reach(curve, score)
    return SpeedUp(needed / budget if math.isfinite(needed) else math.nan, needed, bound)


def geomean(values: list[float]) -> float:
    """Geometric mean of the finite positive ``values`` (nan when there are none)."""
    ok = [v for v in values if math.isfinite(v) and v > 0]
    return float(math.exp(np.mean(np.log(ok)))) if ok else math.nan
