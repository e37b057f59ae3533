"""What the trials phase hands the exploit phase, and the exploit phase the next stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TrialResult"]


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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        """Rebuilds :meth:`to_dict`'s output."""
        return cls(**data)
