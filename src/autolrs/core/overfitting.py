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
value (:meth:`OverfitGuard.beyond_margin`): on a small data set the decay can go on
overfitting, while within the margin the annealed model is the better bet.

:class:`OverfitGuard` holds the checks' record (saved with the run) and applies the rule; it is
told plain values (the guard's margin, the losses), so that this module knows no phase.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from autolrs.core import codec

__all__ = [
    "CHECKS",
    "RISES",
    "Check",
    "OverfitGuard",
    "check_due",
    "check_steps",
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


def check_due(budget: int | None, step: int) -> bool:
    """Whether a check is due after ``step`` steps.

    Args:
        budget: The step budget the checks are spread over; None when there are none (the
            guard off, no validation function or no budget).
        step: Steps told so far.
    """
    if not budget:
        return False
    steps = check_steps(budget)
    at = bisect.bisect_left(steps, step)
    return at < len(steps) and steps[at] == step


def quiet_before_check(budget: int | None, step: int) -> int | None:
    """Steps after ``step`` that are told before the one after which a check is due (None:
    no check is due any more; ``budget`` as in :func:`check_due`)."""
    if not budget:
        return None
    steps = check_steps(budget)
    at = bisect.bisect_right(steps, step)
    return steps[at] - step - 1 if at < len(steps) else None


def _noise(values: Sequence[float]) -> float:
    """The checks' standard deviation around a local trend (0 with fewer than three)."""
    curvature = np.abs(np.diff(np.asarray(values, dtype=float), n=2))
    return float(np.median(curvature)) / _SECOND_DIFFERENCE_MAD if curvature.size else 0.0


@dataclass(frozen=True)
class Check:
    """What one check found.

    Attributes:
        verdict: ``"best"`` (a new lowest value: snapshot it), ``"overfit"`` (the model
            overfits) or None.
        event: The ``validation_check`` event's fields.
    """

    verdict: str | None
    event: dict[str, Any]


@dataclass
class OverfitGuard:
    """The checks' record and the overfitting rule (saved inline in the run's state).

    Attributes:
        best_validation: The lowest validation loss the checks saw.
        train_at_best: The training loss level at that check.
        validation_rises: Consecutive checks whose smoothed value lay above the lowest
            smoothed value by more than the guard's margin while the training loss lay below
            its level at the best check.
        recent_validation: The latest checks' values (the smoothing and noise windows).
        smoothed_best: The lowest smoothed value (median of the window) so far.
        best_step: The step of the lowest check (where early stopping returns to).
    """

    best_validation: float | None = codec.since(None, default=None)
    train_at_best: float | None = codec.since(None, default=None)
    validation_rises: int = codec.since(0, default=0)
    recent_validation: list[float] = codec.since([], default_factory=list)
    smoothed_best: float | None = codec.since(None, default=None)
    best_step: int | None = codec.since(None, default=None)

    def beyond_margin(self, value: float, margin: float | None) -> bool:
        """Whether ``value`` lies more than ``margin`` (``Config.overfit_guard``, a fraction)
        above the lowest smoothed validation loss."""
        best = self.smoothed_best
        if best is None or margin is None:
            return False
        return value - best > margin * abs(best)  # a validation loss may be negative

    def clearly_above(self, value: float, margin: float | None) -> bool:
        """Whether ``value`` lies beyond the margin and more than ``NOISE_Z`` times the checks'
        noise above the lowest smoothed validation loss: what a rise is."""
        best = self.smoothed_best
        if best is None or not self.beyond_margin(value, margin):
            return False
        return value - best > NOISE_Z * _noise(self.recent_validation)

    def observe(
        self, value: float, training: Sequence[float], margin: float, committed: Sequence[float]
    ) -> Check | None:
        """Records one check's validation ``value``.

        Args:
            value: The validation loss.
            training: The recent training losses (the last ``TRAIN_WINDOW`` are averaged).
            margin: ``Config.overfit_guard``.
            committed: The committed losses, averaged instead when ``training`` is empty.

        Returns:
            What the check found; None for a non-finite value (a fault of the validation
            function, not evidence of overfitting: nothing is recorded).
        """
        if not math.isfinite(value):
            return None
        recent = list(training[-TRAIN_WINDOW:]) or list(committed[-TRAIN_WINDOW:])
        train = float(np.mean(recent)) if recent else math.inf
        verdict = None
        if self.best_validation is None or value < self.best_validation:
            self.best_validation, self.train_at_best = value, train
            verdict = "best"
        self.recent_validation = (self.recent_validation + [value])[-NOISE_WINDOW:]
        smoothed = float(np.median(self.recent_validation[-SMOOTHING:]))
        training_fell = self.train_at_best is None or train < self.train_at_best
        if self.smoothed_best is None or smoothed < self.smoothed_best:
            self.smoothed_best = smoothed
            self.validation_rises = 0
        elif self.clearly_above(smoothed, margin) and training_fell:
            self.validation_rises += 1
        else:
            self.validation_rises = 0
        event = {"value": value, "smoothed": smoothed, "best": self.best_validation,
                 "rises": self.validation_rises}
        return Check("overfit" if self.validation_rises >= RISES else verdict, event)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OverfitGuard:
        """Rebuilds :meth:`to_dict`'s output (old states lack some keys: their defaults)."""
        guard: OverfitGuard = codec.from_dict(cls, data)
        return guard
