"""What crosses phases: the state of the run as a whole, as opposed to the state of one phase.

A phase (warm-up, range test, trials, exploit, final) keeps its own state and is thrown away when
it ends; :class:`Run` is what the next phase starts from: the step counter, the stage index and
the stage lengths to come, the last committed learning rate, the rollback count and a failure,
the committed loss level and the search space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autolrs.core import codec
from autolrs.core.level import CommittedLevel
from autolrs.core.overfitting import OverfitGuard
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
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TauPlan:
        """Rebuilds :meth:`to_dict`'s output."""
        result: TauPlan = codec.from_dict(cls, data)
        return result


@dataclass(kw_only=True)
class Run:
    """The state every phase reads and the controller carries from one phase to the next.

    Attributes:
        started: Whether the controller was started.
        step: Training steps told so far (trials included).
        lr: The learning rate the next training step uses.
        stage: Index of the current stage (1-based; 0 before the first).
        taus: Stage lengths to come.
        last_lr: The rate the last completed stage committed, or where a ramp settled (None
            before either).
        rollbacks: Rollbacks since the last commit (``Config.max_rollbacks`` bounds them).
        failure: Why the run gave up (None while it goes on).
        level: The committed loss level and its noise.
        space: The learning-rate interval stages search.
        default_lr: The rate to hold when the budget is too small to search at all.
        overfit: The overfitting guard's record of the validation checks
            (``Config.overfit_guard``; saved inline: its keys sit in the run's dict).
        warmed_up: Whether the warm-up before the first stage (``Config.warmup_fraction``) ran.
        held_lr: The rate the first stage held, when it held one (the optimizer's own or the
            range test's pick): the search after it looks above it (``Config.search_upward``).
        discarded: Steps the search threw away so far (range test, the ramp's failed segment,
            losing trials): ``Config.discard_budget`` bounds it.
        ramped: Whether a ramp found the first rate.
    """

    started: bool = False
    step: int = 0
    lr: float | None = None
    stage: int = 0
    taus: TauPlan
    last_lr: float | None = None
    rollbacks: int = 0
    failure: str | None = None
    level: CommittedLevel = field(default_factory=CommittedLevel)
    space: SearchSpace = field(default_factory=SearchSpace)
    default_lr: float | None = None
    overfit: OverfitGuard = codec.inline(default_factory=OverfitGuard)
    warmed_up: bool = codec.since(False, default=False)
    held_lr: float | None = codec.since(None, default=None)
    discarded: int = codec.since(0, default=0)
    ramped: bool = codec.since(False, default=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (:mod:`autolrs.core.codec`: the fields in their order)."""
        return codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """Rebuilds :meth:`to_dict`'s output (fields added later read their ``since`` value
        from states that lack them)."""
        run: Run = codec.from_dict(cls, data)
        return run
