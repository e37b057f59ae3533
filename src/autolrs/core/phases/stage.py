"""What the trials phase hands the exploit phase, and the exploit phase the next stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolrs.core import codec
from autolrs.core.search import Searcher

__all__ = ["StageEnd", "StageOutcome", "TrialPlan", "TrialResult", "Winner", "summary"]


@dataclass(frozen=True)
class TrialPlan:
    """How the stage's trials run.

    Attributes:
        trial_steps: tau', steps per trial.
        candidates: k, trials planned.
        tau: The stage's exploit length.
        mode: ``"train"`` or ``"validation"``: which loss series scores a trial.
        val_every: Steps between evaluations in validation mode.
        anneal_steps: Steps of the decay that ends each trial (``Config.anneal_fraction``).
        horizon: Where the forecast is read (steps, or evaluations in validation mode).
        start_step: The step at which the stage started.
        search_low: Lower end of the stage's search interval.
        search_high: Upper end.
        ramp_steps: Steps of the linear warm-up that starts each trial (the first stage's
            expanding search, before anything was trained at a rate of its own).
    """

    trial_steps: int
    candidates: int
    tau: int
    mode: str
    val_every: int | None
    anneal_steps: int = codec.since(0)
    horizon: int
    start_step: int
    search_low: float
    search_high: float
    ramp_steps: int = codec.since(0, default=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialPlan:
        """Rebuilds :meth:`to_dict`'s output."""
        plan: TrialPlan = codec.from_dict(cls, data)
        return plan


@dataclass(frozen=True)
class TrialResult:
    """How one candidate learning rate did in its trial.

    Attributes:
        index: The trial's position in its stage (0-based).
        lr: The candidate's learning rate.
        value: Its score, the forecast loss at the stage's horizon (None when it diverged).
        diverged: Whether it diverged.
        reason: Why it diverged.
        early_stopped: Whether it was stopped early (it could not beat the best).
        steps: Steps it trained.
        start_step: The step at which it started.
        level: The median of its last 3 losses (where a kept winner's model stands).
        level_spread: Their robust spread.
    """

    index: int
    lr: float
    value: float | None
    diverged: bool
    reason: str | None
    early_stopped: bool
    steps: int
    start_step: int
    level: float | None
    level_spread: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        """Rebuilds :meth:`to_dict`'s output."""
        result: TrialResult = codec.from_dict(cls, data)
        return result


@dataclass(frozen=True)
class Winner:
    """The best candidate so far, whose trained state is kept (``Config.keep_winner``).

    Attributes:
        index: Its trial's index.
        steps: Steps it trained (they count towards the exploit phase when it is chosen).
        live: Whether the model is still its state (it was the stage's last trial); else its
            state is in the ``WINNER`` slot.
    """

    index: int
    steps: int
    live: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Winner:
        """Rebuilds :meth:`to_dict`'s output."""
        winner: Winner = codec.from_dict(cls, data)
        return winner


@dataclass
class StageOutcome:
    """What the trials phase hands the exploit phase (edge ``EXPLOIT``).

    Attributes:
        plan: The stage's plan.
        results: The trials' results, in order.
        winner: The kept winner (None: none kept).
        winner_slot: Whether the ``WINNER`` slot holds a state to discard.
        searcher: The stage's searcher (for ``Config.select="posterior"``).
    """

    plan: TrialPlan
    results: list[TrialResult]
    winner: Winner | None
    winner_slot: bool
    searcher: Searcher


@dataclass
class StageEnd:
    """What the exploit phase hands the next stage (edge ``STAGE``).

    Attributes:
        last_lr: The rate the stage committed; when it failed and was rolled back, the
            previous stage's rate, at most half the one that failed (None: keep the previous).
        results: The stage's trial results (warm-start priors for the next stage's search).
    """

    last_lr: float | None
    results: list[TrialResult] = field(default_factory=list)


def summary(y: list[float]) -> dict[str, Any]:
    """The summary of a trial's loss series in its ``candidate`` event."""
    if not y:
        return {"n": 0}
    arr = np.asarray(y, dtype=float)
    return {
        "n": int(arr.size),
        "first": float(arr[0]),
        "last": float(arr[-1]),
        "min": float(arr.min()),
        "mean": float(arr.mean()),
    }
