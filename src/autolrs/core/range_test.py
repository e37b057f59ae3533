"""Finding a search interval for the learning rate when the user gives none.

A short exponential sweep (a learning-rate range test, Smith 2017) raises the learning rate
every step from ``range_test_bounds[0]`` until the loss diverges or the sweep ends. The learning
rate at which the smoothed loss was lowest, times a small headroom (capped at the divergence
point), bounds the search from above; the interval reaches ``range_decades`` decades below it.
The sweep's steps are real optimizer steps and count as spent; the model then resumes from an
early checkpoint of the sweep (a short warm-up) or from where the sweep started.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import median_abs_deviation

__all__ = ["RangeSuggestion", "sweep_lrs", "suggest_range"]


def sweep_lrs(low: float, high: float, steps: int) -> list[float]:
    """The exponentially spaced learning rates of a sweep of ``steps`` steps."""
    if steps < 2:
        raise ValueError(f"a range test needs at least 2 steps, got {steps!r}")
    return [low * (high / low) ** (i / (steps - 1)) for i in range(steps)]


@dataclass(frozen=True)
class RangeSuggestion:
    """The interval a range test found.

    Attributes:
        low: Lower end of the search interval.
        high: Upper end of the search interval.
        diverged_lr: Learning rate at which the loss diverged (None if it never did).
        best_lr: Learning rate at which the smoothed loss was lowest.
        stop_index: Index of the sweep step at which the sweep ended.
        informative: Whether the sweep diverged or its loss fell clearly below its start; if
            not, its lowest point is noise (a sweep too fast for the loss to respond).
        fell: Whether its loss fell clearly below its start (:func:`_fell`): only then does
            its lowest point say where rates train (a sweep that diverged without falling
            bounds the rate from above, nothing more).
    """

    low: float
    high: float
    diverged_lr: float | None
    best_lr: float
    stop_index: int
    informative: bool = True
    fell: bool = True


def smooth(losses: Sequence[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (non-finite values propagate as inf)."""
    out: list[float] = []
    avg = 0.0
    for i, value in enumerate(losses):
        if not math.isfinite(value):
            out.append(math.inf)
            continue
        avg = beta * avg + (1.0 - beta) * value
        out.append(avg / (1.0 - beta ** (i + 1)))
    return out


def divergence_index(
    losses: Sequence[float], *, ratio: float = 2.0, beta: float = 0.6, patience: int = 1
) -> int | None:
    """Index of the first step at which a sweep has diverged, or None.

    Diverged means: a non-finite loss, or the smoothed loss above ``ratio`` times its running
    minimum (and above the first smoothed value) for ``patience`` consecutive steps.
    """
    s = smooth(losses, beta)
    best = math.inf
    above = 0
    for i, (raw, value) in enumerate(zip(losses, s)):
        if not math.isfinite(raw):
            return i
        best = min(best, value)
        threshold = max(ratio * best, s[0]) if best > 0 else s[0] + abs(best) * (ratio - 1.0)
        if i > 0 and value > threshold:
            above += 1
            if above >= patience:
                return i
        else:
            above = 0
    return None


def _fell(losses: Sequence[float], smoothed: Sequence[float]) -> bool:
    """Whether the smoothed loss fell clearly below its start: by 1 % and by three times the
    smoothed loss's noise."""
    raw = np.asarray([v for v in losses if math.isfinite(v)], dtype=float)
    if raw.size < 4 or not math.isfinite(smoothed[0]):
        return True  # too little to tell: trust the lowest point
    # The noise of one loss, from the differences of neighbours (robust to the trend); the
    # smoothing (beta 0.6) halves it.
    noise = float(median_abs_deviation(np.diff(raw), scale="normal")) / math.sqrt(2.0)
    smoothed_noise = 0.5 * noise
    lowest = min(v for v in smoothed if math.isfinite(v))
    return smoothed[0] - lowest > max(3.0 * smoothed_noise, 0.01 * abs(smoothed[0]))


def suggest_range(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    decades: float,
    ratio: float = 2.0,
    headroom: float = 0.5,
) -> RangeSuggestion:
    """Derives a search interval from a (possibly truncated) sweep.

    The sweep's best learning rate is the one at which the smoothed loss was lowest before the
    sweep diverged. Plain SGD diverges just above it; adaptive optimizers (Adam) often do not
    diverge at all but stall at a high loss, so the best point, not the divergence, anchors the
    interval: ``high = min(headroom * best, diverged)`` and ``low = high / 10**decades``. A fast
    sweep finds its lowest loss close to the edge of stability (the loss has had too few steps
    at each rate to fall earlier), so the default headroom is below one.

    Args:
        lrs: The sweep's learning rates, increasing.
        losses: The training loss after each sweep step (as many as were run).
        decades: Width of the interval in decades.
        ratio: Divergence threshold over the running minimum of the smoothed loss.
        headroom: Multiple of the best point at which the interval ends.
    """
    n = len(losses)
    if n == 0:
        raise ValueError("the range test recorded no loss")
    lrs = list(lrs)[:n]
    s = smooth(losses, 0.6)
    stop = divergence_index(losses, ratio=ratio)
    end = stop if stop is not None else n - 1
    finite = [v if math.isfinite(v) else math.inf for v in s[: end + 1]]
    best_index = int(np.argmin(finite)) if finite else 0
    best = lrs[best_index]
    diverged = lrs[stop] if stop is not None else None
    high = best * headroom
    if diverged is not None:
        high = min(high, diverged)
    low = high / 10.0**decades
    fell = _fell(losses[: end + 1], s[: end + 1])
    informative = diverged is not None or fell
    return RangeSuggestion(
        low=low,
        high=high,
        diverged_lr=diverged,
        best_lr=best,
        stop_index=end,
        informative=informative,
        fell=fell,
    )
