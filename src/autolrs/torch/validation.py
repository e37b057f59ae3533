"""Watching ``val_fn``'s values for the two ways a validation function goes silently wrong.

A ``val_fn`` that returns an accuracy (higher is better) makes the overfitting guard take the
rising accuracy for a rising loss and the search prefer the worst candidate; one that returns
NaN every time makes every candidate look divergent, so the rate shrinks stage after stage.
:class:`ValidationWatch` sees every value (with the training loss around it) and says when
``val_fn`` stops being trusted; :class:`autolrs.AutoLRS` then warns once, naming ``val_fn``,
and falls back: candidates are scored by their recent training loss and the overfitting guard's
checks are skipped (what the method does without ``val_fn``), so a broken ``val_fn`` neither
lowers the rate nor rolls training back.

Example:
    >>> watch = ValidationWatch()
    >>> [watch.observe(v, t) for v, t in [(0.31, 2.1), (0.52, 1.6), (0.74, 1.2), (0.80, 1.0)]]
    [None, None, None, 'accuracy']
    >>> watch.trusted
    False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ValidationWatch", "training_level"]

NON_FINITE_LIMIT = 2  # non-finite values in a row (training finite) that end the trust
FIRST_CHECKS = 4  # a value rising at each of the first checks while training falls: accuracy
FIRST_RISE = 0.1  # ... by more than this fraction in all (the overfitting guard's margin)
CORRELATED_CHECKS = 6  # checks needed before values in [0, 1] are judged by their correlation
EARLY_CHECKS = 8  # the pattern is looked for only among the first checks (later: overfitting)
ANTI_CORRELATION = -0.9  # values in [0, 1] this anti-correlated with training: accuracy
TRAIN_WINDOW = 5  # training losses averaged into the level a value is compared with


def _rising(values: Sequence[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def training_level(losses: Sequence[float]) -> float:
    """The mean of the latest finite training losses (NaN when there is none)."""
    recent = [v for v in list(losses)[-TRAIN_WINDOW:] if math.isfinite(v)]
    return float(np.mean(recent)) if recent else math.nan


class ValidationWatch:
    """Decides, from ``val_fn``'s values and the training loss, whether to keep trusting it.

    Attributes:
        trusted: False once ``val_fn`` looked like an accuracy or kept returning NaN/inf.
        reason: Why it stopped being trusted (``"accuracy"`` or ``"non_finite"``).
        values: The first checks' ``(value, training level)`` pairs (finite ones only).
    """

    def __init__(self) -> None:
        self.trusted = True
        self.reason: str | None = None
        self.values: list[tuple[float, float]] = []
        self.non_finite = 0
        self.rising_ok = True  # False once a search's evaluation is among the first checks

    def observe(self, value: float, train: float, *, committed: bool = True) -> str | None:
        """Records one value of ``val_fn`` and the training level at it.

        Args:
            committed: False for a search's evaluation of a trial's rate: the rising rule is
                not applied to it (a search evaluates other rates one after another, and a
                larger rate that overfits sooner rises while the training loss falls); the
                correlation rule is (a real loss moves with the training loss across rates
                too).

        Returns:
            The reason when this value ends the trust (``"accuracy"`` or ``"non_finite"``),
            otherwise None.
        """
        if not self.trusted:
            return None
        if not math.isfinite(value):
            self.non_finite = self.non_finite + 1 if math.isfinite(train) else 0
            return self._distrust("non_finite") if self.non_finite >= NON_FINITE_LIMIT else None
        self.non_finite = 0
        if len(self.values) >= EARLY_CHECKS or not math.isfinite(train):
            return None
        self.values.append((value, train))
        self.rising_ok = self.rising_ok and committed
        return self._distrust("accuracy") if self._looks_like_accuracy() else None

    def _distrust(self, reason: str) -> str:
        self.trusted, self.reason = False, reason
        return reason

    def _looks_like_accuracy(self) -> bool:
        """The value rose clearly, at each of the first checks, while the training loss fell;
        or the values stay in [0, 1] and move against the training loss (rising overall while
        it falls, strongly anti-correlated). Noise in a real validation loss does neither: it
        does not rise at three checks in a row by more than the guard's margin, nor keep a
        correlation below -0.9 over six checks."""
        values = [v for v, _ in self.values]
        trains = [t for _, t in self.values]
        if self.rising_ok and len(values) == FIRST_CHECKS and _rising(values) and _rising(
                [-t for t in trains]):
            return values[-1] - values[0] > FIRST_RISE * abs(values[0])
        if not self.rising_ok and len(values) == FIRST_CHECKS and self._above_the_start():
            return True
        if len(values) < CORRELATED_CHECKS or not all(0.0 <= v <= 1.0 for v in values):
            return False
        if values[-1] <= values[0] or trains[-1] >= trains[0]:
            return False
        if np.std(values) == 0 or np.std(trains) == 0:
            return False
        return float(np.corrcoef(values, trains)[0, 1]) <= ANTI_CORRELATION

    def _above_the_start(self) -> bool:
        """A search's first evaluations: the first measures the stage's start, the next ones
        trials of several rates from there. Every trial that trained (its training loss below
        the start's) ended *above* the start's value: an accuracy rises as training goes on,
        while a loss falls in a trial that trains (on a real loss, a trial that breaks training
        ends above the start, but its training loss rises too)."""
        (v0, t0), rest = self.values[0], self.values[1:FIRST_CHECKS]
        return all(v > v0 and t < t0 for v, t in rest)

    def message(self) -> str:
        """The warning that says why ``val_fn`` is no longer trusted and what to do."""
        fallback = (
            " From now on autolrs does not call val_fn: candidates are scored by their recent "
            "training loss and nothing watches for overfitting (as without val_fn)."
        )
        if self.reason == "non_finite":
            return (
                f"val_fn returned NaN/inf {self.non_finite} times in a row while the training "
                "loss stayed finite: val_fn is broken (a division by zero, an empty validation "
                "set, a NaN in its data?), not the training. Fix val_fn so that it returns a "
                "finite validation loss." + fallback
            )
        pairs = ", ".join(f"{v:.4g} (training {t:.4g})" for v, t in self.values)
        return (
            f"val_fn's values move against the training loss from the first checks: {pairs}. "
            "It looks like an accuracy or a score (higher is better), but val_fn must return a "
            "loss (lower is better): return the validation loss, or 1 - accuracy."
            + fallback
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (part of :meth:`autolrs.AutoLRS.state_dict`)."""
        return {
            "trusted": self.trusted,
            "reason": self.reason,
            "values": [list(p) for p in self.values],
            "non_finite": self.non_finite,
            "rising_ok": self.rising_ok,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output."""
        self.trusted = bool(state.get("trusted", True))
        self.reason = state.get("reason")
        self.values = [(float(v), float(t)) for v, t in state.get("values", [])]
        self.non_finite = int(state.get("non_finite", 0))
        self.rising_ok = bool(state.get("rising_ok", True))
