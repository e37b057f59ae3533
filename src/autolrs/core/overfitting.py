"""The overfitting guard (``Config.overfit_guard``): validation checks while the rate is held
or decays, and the rule that says the model has started to overfit.

With a validation function and a budget, the exploit and final phases evaluate it at the steps
:func:`check_steps` lists: densely early on, where a small data set is overfit within a few
epochs, then every ``total_steps / CHECKS`` steps. Each new lowest validation loss is
snapshotted (slot ``BEST``).

The model overfits when, at ``RISES`` checks in a row, the validation loss -- smoothed, the
median of the latest ``SMOOTHING`` checks -- lies above its lowest smoothed value by more than
the guard's margin and by more than ``NOISE_Z`` times the checks' noise (their standard
deviation around a local trend, from the second differences of the latest ``NOISE_WINDOW``, so
that a steady rise is not taken for noise), *while the training loss lies below its level at the
best check*: the gap between them widens. Each condition answers a measured false alarm: a
validation loss that rises with the training loss, as after a move to a larger rate, is that
rate's noise level; and without the smoothing and the noise term one lucky low check at a high
rate is a best that the next checks "rise" above (on digits at SGD 0.1, where one check differs
from the next by 30-100 %, dense checks without them stopped 3 of 10 runs early on such a check,
costing 14-66 % of their final score).

Then the model goes back to the ``BEST`` state and the rate decays to zero over ``1 / CHECKS``
of the budget: early stopping, as a schedule. A last check at the decay's end goes back to the
``BEST`` state when the decayed model's loss lies beyond the margin above the lowest smoothed
value (:func:`beyond_margin`): on a small data set the decay can go on overfitting, while within
the margin the annealed model is the better bet.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from autolrs.core.phases.base import Context

__all__ = [
    "CHECKS",
    "RISES",
    "check_due",
    "check_steps",
    "beyond_margin",
    "clearly_above",
    "observe_check",
    "quiet_before_check",
]

CHECKS = 20  # validation checks per budget, at the most widely spaced
EARLY_CHECKS = 200  # at the most densely spaced: every total_steps / EARLY_CHECKS steps
GROWTH = 8  # between those, the gap after a check at step s is s / GROWTH
RISES = 3  # consecutive checks above the margin that say the model overfits
TRAIN_WINDOW = 8  # training losses averaged into the training level at a check
SMOOTHING = 3  # checks whose median is compared with the lowest such median
NOISE_WINDOW = 6  # checks whose successive changes measure the checks' noise
NOISE_Z = 2.0  # a rise counts when above this many times that noise
_SECOND_DIFFERENCE_MAD = 0.6745 * math.sqrt(6.0)  # median |x[i+1] - 2 x[i] + x[i-1]| / sigma


@lru_cache(maxsize=32)
def check_steps(total_steps: int) -> tuple[int, ...]:
    """The steps of a ``total_steps`` budget at which a check is due.

    The gap after a check at step ``s`` is ``s / GROWTH``, kept between ``total_steps /
    EARLY_CHECKS`` and ``total_steps / CHECKS``: a geometric spacing, so that the step where the
    validation loss was lowest is known within an eighth of itself however early it falls (a
    few hundred rows are overfit within tens of steps), with about 40 checks per budget.
    """
    low = max(1, total_steps // EARLY_CHECKS)
    high = max(1, total_steps // CHECKS)
    steps, step = [], low
    while step <= total_steps:
        steps.append(step)
        step += min(high, max(low, step // GROWTH))
    return tuple(steps)


def _schedule(ctx: Context) -> tuple[int, ...] | None:
    if ctx.config.overfit_guard is None or not ctx.validation or ctx.total_steps is None:
        return None
    return check_steps(ctx.total_steps)


def check_due(ctx: Context, step: int) -> bool:
    """Whether a check is due after ``step`` steps (never with the guard off, or without a
    validation function or a budget)."""
    steps = _schedule(ctx)
    if not steps:
        return False
    at = bisect.bisect_left(steps, step)
    return at < len(steps) and steps[at] == step


def quiet_before_check(ctx: Context, step: int) -> int | None:
    """Steps after ``step`` that are told before the one after which a check is due (None:
    no check is due any more)."""
    steps = _schedule(ctx)
    if not steps:
        return None
    at = bisect.bisect_right(steps, step)
    return steps[at] - step - 1 if at < len(steps) else None


def _noise(values: Sequence[float]) -> float:
    """The checks' standard deviation around a local trend (0 with fewer than three)."""
    curvature = np.abs(np.diff(np.asarray(values, dtype=float), n=2))
    return float(np.median(curvature)) / _SECOND_DIFFERENCE_MAD if curvature.size else 0.0


def beyond_margin(ctx: Context, value: float) -> bool:
    """Whether ``value`` lies more than the guard's margin above the lowest smoothed
    validation loss."""
    best, margin = ctx.run.smoothed_best, ctx.config.overfit_guard
    if best is None or margin is None:
        return False
    return value - best > margin * abs(best)  # a validation loss may be negative


def clearly_above(ctx: Context, value: float) -> bool:
    """Whether ``value`` lies beyond the margin and more than ``NOISE_Z`` times the checks'
    noise above the lowest smoothed validation loss: what a rise is."""
    best = ctx.run.smoothed_best
    if best is None or not beyond_margin(ctx, value):
        return False
    return value - best > NOISE_Z * _noise(ctx.run.recent_validation)


def observe_check(ctx: Context, value: float, training: Sequence[float]) -> str | None:
    """Records one check's validation ``value`` with the recent ``training`` losses.

    Returns:
        ``"best"`` (a new lowest value: snapshot it), ``"overfit"`` (the model overfits) or None.
    """
    run = ctx.run
    assert ctx.config.overfit_guard is not None  # checks run only with the guard on
    if not math.isfinite(value):
        return None  # a fault of the validation function, not evidence of overfitting
    recent = list(training[-TRAIN_WINDOW:]) or run.level.recent[-TRAIN_WINDOW:]
    train = float(np.mean(recent)) if recent else math.inf
    verdict = None
    if run.best_validation is None or value < run.best_validation:
        run.best_validation, run.train_at_best = value, train
        verdict = "best"
    run.recent_validation = (run.recent_validation + [value])[-NOISE_WINDOW:]
    smoothed = float(np.median(run.recent_validation[-SMOOTHING:]))
    if run.smoothed_best is None or smoothed < run.smoothed_best:
        run.smoothed_best = smoothed
        run.validation_rises = 0
    elif clearly_above(ctx, smoothed) and (run.train_at_best is None or train < run.train_at_best):
        run.validation_rises += 1
    else:
        run.validation_rises = 0
    ctx.emit(
        "validation_check",
        value=value,
        smoothed=smoothed,
        best=run.best_validation,
        rises=run.validation_rises,
    )
    if run.validation_rises >= RISES:
        return "overfit"
    return verdict
