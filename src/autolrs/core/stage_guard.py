"""The stage guard (``Config.stage_guard``): the rule that an exploit phase made the model worse,
and how far the rate retreats when it did.

An exploit phase is judged against where it started: the stage's start level, or the level the
kept winner's trial had reached (:meth:`StageGuard.start_from`). At its half-way checkpoint and
at its end, a mean of its last :data:`GUARD_WINDOW` losses that lies more than
``stage_guard`` standard errors (and 2 %) above that reference says the stage got worse
(:meth:`StageGuard.got_worse`): the phase rolls back and goes on at a lower rate, or, at its
end, the stage is undone. The rate retreats to half the one that failed (:func:`halved`), but,
with the expanding search, never below the range the range test found.

:class:`StageGuard` keeps the reference (saved inline in the exploit phase's state); it is told
plain values (the committed level, the settings), so that this module knows no phase.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolrs.core import codec
from autolrs.core.level import CommittedLevel, robust_std

__all__ = [
    "GUARD_WINDOW", "RETREAT", "SETTLED_WINDOW", "StageGuard", "can_retreat", "counts", "halved",
]

GUARD_WINDOW = 8
"""Exploit losses the stage guard averages (and the least distance between checkpoints)."""

SETTLED_WINDOW = 3
"""The latest losses whose median must not lie above the reference for a checkpoint to be kept
(:meth:`StageGuard.settled`)."""

RETREAT = 2.0
"""After the stage guard fires, the rate goes on no lower than the failed one / ``RETREAT``."""


@dataclass
class StageGuard:
    """Where an exploit phase started, which its losses are judged against.

    Attributes:
        reference: The level the phase started from (the stage's start, or the kept winner's).
        reference_spread: The kept winner's noise (stands in while few losses are known).
        lift: Whether the next loss is the first after a rollback (computed on the restored
            state, before any step at the new rate).
    """

    reference: float | None = codec.since(None, default=None)
    reference_spread: float | None = codec.since(None, default=None)
    lift: bool = codec.since(False, default=False)

    def start_from(
        self,
        start: float | None,
        kept_level: float | None = None,
        kept_spread: float | None = None,
        *,
        cooled: bool = False,
        ramped: bool = False,
        expanding: bool = False,
    ) -> None:
        """Sets the reference: the stage's ``start``, or a kept winner's level.

        A kept trial's level becomes the reference when the trial was not cooled; with an
        expanding search only when it ended at or below the stage's start (a hold whose rate
        broke the model within its trial, digits SGD at 0.316 from 1.75 to 2.40, is judged
        against where it started). A cooled winner's last losses sit in its cooldown's dip,
        which the full rate leaves again; after the first search (its trials warm up) it must
        keep half its progress: a rate that breaks the model later only returns to the stage's
        start (digits: SGD at 0.316 from 1.35 back to 2.30).

        Args:
            start: The stage's start level (None: unknown).
            kept_level: The kept winner's level (None: no winner kept, or no level known).
            kept_spread: The noise of the kept winner's last losses.
            cooled: Whether the stage's trials ended in a decay (``Config.anneal_fraction``).
            ramped: Whether they began with a warm-up ramp (the first expanding search).
            expanding: Whether the search is the expanding one (``Config.expand_factor``).
        """
        self.reference, self.reference_spread = start, None
        if kept_level is None:
            return
        lifts = start is not None and kept_level > start and expanding
        if not cooled and not lifts:
            self.reference, self.reference_spread = kept_level, kept_spread
        elif cooled and ramped and start is not None:
            self.reference = 0.5 * (start + min(kept_level, start))

    def first_loss(self, loss: float, level: CommittedLevel) -> None:
        """Tells the loss of a step: the first after a rollback lifts the reference to a
        restored state clearly above it (:meth:`CommittedLevel.lifted`)."""
        if not self.lift:
            return
        self.lift = False
        if self.reference is not None:
            self.reference = level.lifted(loss, self.reference)

    def got_worse(
        self, losses: Sequence[float], level: CommittedLevel, z: float | None, length: int
    ) -> bool:
        """Whether an exploit phase's recent losses lie clearly above where it started.

        A phase shorter than 4 steps is judged at its end on the losses it has: a rate at the
        edge of stability can look best in a short trial and blow the model up in the next few
        steps, and a stage left in that state would become every later stage's starting point.

        Args:
            losses: The phase's losses since its last checkpoint.
            level: The committed level (its noise).
            z: ``Config.stage_guard`` (None: never).
            length: The phase's length; one shorter than 4 steps is judged on what it has.
        """
        reference = self.reference
        needed = min(4, max(length, 1))
        if z is None or reference is None or len(losses) < needed:
            return False
        window = np.asarray(losses[-GUARD_WINDOW:], dtype=float)
        margin = max(0.02 * abs(reference), z * self.noise(losses, level) / math.sqrt(len(window)))
        return float(np.mean(window)) > reference + margin

    def settled(self, losses: Sequence[float], level: CommittedLevel, z: float | None) -> bool:
        """Whether the latest losses show a state worth keeping as the rollback point: the
        median of the last :data:`SETTLED_WINDOW` lies no further above the reference than
        :meth:`got_worse` allows a mean of that many, with the committed level's noise (a
        spike in the window does not widen it). A checkpoint that is not settled is skipped,
        and a later rollback goes back further. The guard judges a mean over
        :data:`GUARD_WINDOW` losses, which a blow-up in the last few steps does not yet move
        enough: on digits from 1/20 of the tuned rate a hold at 0.5 fell to 1.14, blew up to
        3.56 and sat at 2.5 two steps before its check; the check passed, that state became the
        rollback point, and every rollback after it went back to a dead network (2.31, chance
        level), whatever the rate. True without a reference, a guard (``z`` None) or losses."""
        recent = [v for v in losses[-SETTLED_WINDOW:] if math.isfinite(v)]
        if self.reference is None or z is None or not recent:
            return True
        margin = max(0.02 * abs(self.reference), z * level.noise / math.sqrt(len(recent)))
        return float(np.median(recent)) <= self.reference + margin

    def noise(self, losses: Sequence[float], level: CommittedLevel) -> float:
        """The noise the guard allows for on an exploit phase's recent ``losses``: the committed
        level's, or the window's robust spread when larger; with fewer than 4 losses and no
        committed noise, the kept winner's spread stands in."""
        noise = level.noise
        if len(losses[-GUARD_WINDOW:]) >= 4:
            # A robust spread of the window: a spike is a symptom, not noise to allow for.
            noise = max(noise, robust_std(losses[-GUARD_WINDOW:]))
        elif noise == 0.0:
            # Fewer than 4 losses have no robust spread: the winner's last losses stand in.
            noise = self.reference_spread or robust_std(losses[-GUARD_WINDOW:])
        return noise

    def z_needed(self, losses: Sequence[float], level: CommittedLevel, length: int) -> float:
        """The ``stage_guard`` z below which :meth:`got_worse` fires on these losses: the
        window's excess over the reference in standard errors of the guard's noise
        (:meth:`got_worse` with ``z`` is True exactly when ``z < z_needed(...)``, up to rounding
        at the boundary). Used to measure how far a check is from firing.

        Returns:
            0.0 when no z fires (too few losses, no reference, or the mean within the 2 %
            floor); inf when every z fires (an excess above the floor with no noise).
        """
        reference = self.reference
        if reference is None or len(losses) < min(4, max(length, 1)):
            return 0.0
        window = np.asarray(losses[-GUARD_WINDOW:], dtype=float)
        excess = float(np.mean(window)) - reference
        if excess <= 0.02 * abs(reference):
            return 0.0
        noise = self.noise(losses, level)
        if noise == 0.0:
            return math.inf
        return excess * math.sqrt(len(window)) / noise

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageGuard:
        """Rebuilds :meth:`to_dict`'s output."""
        guard: StageGuard = codec.from_dict(cls, data)
        return guard


def counts(expanding: bool) -> bool:
    """Whether the stage guard's rollbacks count towards ``Config.max_rollbacks``: not with
    the expanding search, whose guard goes down a step at a time (a loss that rose but stayed
    finite is no divergence: on digits under injected faults four such rollbacks in a row,
    0.0316 down to 0.00395, raised DivergenceError)."""
    return not expanding


def halved(lr: float, floor: float | None, expanding: bool) -> float:
    """Half of ``lr``, but with an expanding search never below the range's ``floor``
    (``SearchSpace.floor``): a rate at or below it stays. One guard's halving after another
    must not compound into a rate that cannot train (a regression whose rate fell from 2.5e-5
    to 2.5e-7 this way)."""
    half = lr / RETREAT
    if not expanding or floor is None or half >= floor:
        return half
    return min(lr, floor)


def can_retreat(lr: float, floor: float | None, expanding: bool) -> bool:
    """Whether the guard has a lower rate to go on at: not from the range's floor
    (:func:`halved`), where rolling back to go on at the same rate would only repeat itself
    until the rollbacks ran out (a noisy loss at 0.00395, six stages in a row)."""
    return halved(lr, floor, expanding) < lr * (1 - 1e-9)
