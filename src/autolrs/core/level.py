"""The committed loss level and its noise: what "calm", "diverged" and "worse" are measured by.

Every judgement the method makes about a loss compares it with the level training had reached
when it last committed a state (the stage's start), allowing for that level's noise:

* **lift**: the first loss after a restore lies clearly above the reference (more than the noise
  band): the restored state is the new start;
* **ceiling** (``reference + 3 x noise``): a trial whose recent losses stay below it is *calm*
  (a non-finite loss there may be a one-off fault), and ``divergence_factor`` times it is the
  *bound* above which a trial has diverged;
* **got worse** (the stage guard, :mod:`autolrs.core.stage_guard`, uses the level's noise): an
  exploit phase whose recent mean lies more than ``stage_guard`` standard errors (and 2 %) above
  where it started made the stage worse.

:class:`CommittedLevel` keeps the committed losses and the stage's reference; the rules are its
methods, so that each is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EXPLODED", "NOISE_BAND", "RECENT", "CommittedLevel", "robust_std", "trial_level"]

EXPLODED = 1e6
"""A loss this many times its reference level (at least 1 in size) has diverged, whatever the
configuration: a trial's, or the final decay's."""

RECENT = 32
"""Committed losses kept (the reference is the median of the last 8, the noise of the last 16)."""

NOISE_BAND = 3.0
"""Standard deviations of the committed level's noise a loss may lie above it and be 'calm'."""


def robust_std(values: Sequence[float]) -> float:
    """Standard deviation estimated from the median absolute deviation."""
    arr = np.asarray(values, dtype=float)
    return 1.4826 * float(np.median(np.abs(arr - np.median(arr))))


def trial_level(tail: Sequence[float]) -> tuple[float | None, float | None]:
    """The level a trial reached: the median of its last losses and their robust spread.

    Args:
        tail: The trial's last training losses.

    Returns:
        ``(level, spread)``: None for the level without losses, for the spread with fewer
        than 3.
    """
    level = float(np.median(tail)) if tail else None
    return level, robust_std(tail) if len(tail) >= 3 else None


@dataclass
class CommittedLevel:
    """The losses of committed training and the current stage's start level.

    Attributes:
        recent: The last :data:`RECENT` committed losses, oldest first.
        reference: The loss level the current stage started from (None before any is known).
        spread: The noise of that level (robust standard deviation; None with fewer than 4
            committed losses).
        initial: The first loss a trial saw (the reference code's divergence fallback in
            validation mode compares with it).
    """

    recent: list[float] = field(default_factory=list)
    reference: float | None = None
    spread: float | None = None
    initial: float | None = None

    @property
    def noise(self) -> float:
        """The spread, 0.0 when unknown."""
        return self.spread or 0.0

    def record(self, loss: float) -> None:
        """Adds the loss of a committed step."""
        self.recent.append(loss)
        if len(self.recent) > RECENT:
            del self.recent[0]

    def begin_stage(self) -> float | None:
        """A stage starts from the committed losses; returns the previous stage's reference."""
        previous = self.reference
        self.reference = float(np.median(self.recent[-8:])) if self.recent else None
        self.spread = robust_std(self.recent[-16:]) if len(self.recent) >= 4 else None
        return previous

    def ceiling(self, reference: float) -> float:
        """``reference`` plus the noise band: below it a loss is within the level's noise."""
        return reference + NOISE_BAND * self.noise

    def lifted(self, loss: float, reference: float) -> float:
        """``reference``, or ``loss`` less the noise band when that lies above it.

        Used for the first loss computed on a restored state (before any step at a new rate):
        a state clearly above the reference is the new start, or every rate looks divergent.
        """
        lifted = loss - NOISE_BAND * self.noise
        return lifted if lifted > reference else reference

    def calm(self, tail: Sequence[float]) -> bool:
        """Whether a trial's recent losses stayed within the stage's start level and noise."""
        if not tail or self.reference is None:
            return True
        return sum(tail) / len(tail) <= self.ceiling(self.reference)

    def diverged(self, tail: Sequence[float], factor: float | None) -> float | None:
        """The running mean of ``tail`` when it lies above ``factor`` times the ceiling, else None.

        A short running mean compared with the start level plus its noise, so that one unlucky
        batch late in training (tiny losses, large relative noise) is no divergence.
        """
        reference = self.reference
        if factor is None or reference is None or not reference > 0:
            return None
        bound = factor * self.ceiling(reference)
        recent = sum(tail) / len(tail)
        return recent if recent > bound else None

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "recent": list(self.recent),
            "reference": self.reference,
            "spread": self.spread,
            "initial": self.initial,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommittedLevel:
        """Rebuilds :meth:`to_dict`'s output."""
        return cls(list(data["recent"]), data["reference"], data["spread"], data["initial"])
