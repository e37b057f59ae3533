"""What crosses phases: the state of the run as a whole, as opposed to the state of one phase.

A phase (warm-up, range test, trials, exploit, final) keeps its own state and is thrown away when
it ends; :class:`Run` is what the next phase starts from: the step counter, the stage index and
the stage lengths to come, the last committed learning rate, the rollback count and a failure,
the committed loss level and the search space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autolrs.core.level import CommittedLevel
from autolrs.core.space import SearchSpace

__all__ = ["Run", "TauPlan"]


@dataclass
class TauPlan:
    """Stage lengths: tau doubles (``Config.tau_growth``) each stage up to ``maximum``.

    Attributes:
        nominal: tau of the next stage under the doubling schedule (the budget may shorten it).
        maximum: The largest tau.
        stages_at_max: Stages that ran at the largest tau (the paper's objective switches to the
            validation loss after the first).
    """

    nominal: int
    maximum: int
    stages_at_max: int = 0

    def advance(self, growth: float) -> None:
        """A stage ended: the next one is ``growth`` times longer, up to the maximum."""
        if self.nominal >= self.maximum:
            self.stages_at_max += 1
        self.nominal = min(int(round(self.nominal * growth)), self.maximum)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "nominal": self.nominal,
            "maximum": self.maximum,
            "stages_at_max": self.stages_at_max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TauPlan:
        """Rebuilds :meth:`to_dict`'s output."""
        return cls(int(data["nominal"]), int(data["maximum"]), int(data["stages_at_max"]))


@dataclass
class Run:
    """The state every phase reads and the controller carries from one phase to the next.

    Attributes:
        taus: Stage lengths to come.
        step: Training steps told so far (trials included).
        lr: The learning rate the next training step uses.
        stage: Index of the current stage (1-based; 0 before the first).
        last_lr: The rate the last completed stage committed (None before any).
        rollbacks: Rollbacks since the last commit (``Config.max_rollbacks`` bounds them).
        failure: Why the run gave up (None while it goes on).
        level: The committed loss level and its noise.
        space: The learning-rate interval stages search.
        default_lr: The rate to hold when the budget is too small to search at all.
        started: Whether the controller was started.
        best_validation: The lowest validation loss the exploit phases' checks saw
            (``Config.overfit_guard``).
        train_at_best: The training loss level at that check.
        warmed_up: Whether the warm-up before the first stage (``Config.warmup_fraction``) ran.
        validation_rises: Consecutive checks whose smoothed value lay above the lowest
            smoothed value by more than the guard's margin while the training loss lay below
            its level at the best check.
        recent_validation: The latest checks' values (the smoothing and noise windows).
        smoothed_best: The lowest smoothed value (median of the window) so far.
        held_lr: The rate the first stage held, when it held one (the optimizer's own or the
            range test's pick): the search after it looks above it (``Config.search_upward``).
        discarded: Steps the search threw away so far (range test, the ramp's failed segment,
            losing trials): ``Config.discard_budget`` bounds it.
        ramp_lr: The rate the ramp settled at (``Config.ramp_segment_fraction``): the first
            stage searches around it.
    """

    taus: TauPlan
    step: int = 0
    lr: float | None = None
    stage: int = 0
    last_lr: float | None = None
    rollbacks: int = 0
    failure: str | None = None
    level: CommittedLevel = field(default_factory=CommittedLevel)
    space: SearchSpace = field(default_factory=SearchSpace)
    default_lr: float | None = None
    started: bool = False
    best_validation: float | None = None
    train_at_best: float | None = None
    validation_rises: int = 0
    warmed_up: bool = False
    recent_validation: list[float] = field(default_factory=list)
    smoothed_best: float | None = None
    held_lr: float | None = None
    ramp_lr: float | None = None
    discarded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "started": self.started,
            "step": self.step,
            "lr": self.lr,
            "stage": self.stage,
            "taus": self.taus.to_dict(),
            "last_lr": self.last_lr,
            "rollbacks": self.rollbacks,
            "failure": self.failure,
            "level": self.level.to_dict(),
            "space": self.space.to_dict(),
            "default_lr": self.default_lr,
            "best_validation": self.best_validation,
            "train_at_best": self.train_at_best,
            "validation_rises": self.validation_rises,
            "warmed_up": self.warmed_up,
            "recent_validation": list(self.recent_validation),
            "smoothed_best": self.smoothed_best,
            "held_lr": self.held_lr,
            "ramp_lr": self.ramp_lr,
            "discarded": self.discarded,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """Rebuilds :meth:`to_dict`'s output."""
        return cls(
            taus=TauPlan.from_dict(data["taus"]),
            step=int(data["step"]),
            lr=data["lr"],
            stage=int(data["stage"]),
            last_lr=data["last_lr"],
            rollbacks=int(data["rollbacks"]),
            failure=data["failure"],
            level=CommittedLevel.from_dict(data["level"]),
            space=SearchSpace.from_dict(data["space"]),
            default_lr=data["default_lr"],
            started=bool(data["started"]),
            best_validation=data.get("best_validation"),
            train_at_best=data.get("train_at_best"),
            validation_rises=int(data.get("validation_rises", 0)),
            warmed_up=bool(data.get("warmed_up", False)),
            recent_validation=[float(v) for v in data.get("recent_validation", [])],
            smoothed_best=data.get("smoothed_best"),
            held_lr=data.get("held_lr"),
            ramp_lr=data.get("ramp_lr"),
            discarded=int(data.get("discarded", 0)),
        )
