"""The contract every phase follows, and what the controller gives it.

A phase is told observations (:class:`Loss`, :class:`Validation`, :class:`Abort`, :class:`Spent`)
and answers each with a :class:`Transition`: the actions to carry out and, when the phase has
ended, the edge to follow (:class:`Edge`) with what the next phase needs. It never calls another
phase: the controller follows the edge. Its :meth:`BasePhase.outlook` says what the executor may
do before the next observation without asking (:class:`Outlook`).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolrs.core.actions import STAGE, Action
from autolrs.core.config import Config
from autolrs.core.decision import Outlook, constant
from autolrs.core.observations import Abort, Loss, Observation, Spent, Validation
from autolrs.core.run import Run
from autolrs.core.strategies import ForecasterFactory, SearcherFactory

__all__ = [
    "Abort",
    "BasePhase",
    "Context",
    "Edge",
    "Loss",
    "Observation",
    "Outlook",
    "PendingEvents",
    "Phase",
    "Spent",
    "Transition",
    "Validation",
    "constant",
    "finite",
]


class Phase:
    """Names of the controller's phases (what :attr:`StageController.phase` reports)."""

    WARMUP = "warmup"
    RANGE_TEST = "range_test"
    RAMP = "ramp"
    TRIAL = "trial"
    EXPLOIT = "exploit"
    FINAL = "final"
    DONE = "done"


class Edge:
    """Where a phase that has ended hands over (the controller picks the phase behind it)."""

    METHOD = "method"
    """The method proper begins: a range test, the first stage, or (too small a budget to
    search) the final phase."""
    STAGE = "stage"
    """The next stage's trials, or the final phase when no stage fits the budget."""
    EXPLOIT = "exploit"
    """The stage's trials are over: exploit the chosen rate."""
    FINAL = "final"
    """The budget is spent but for the final decay (or hold)."""


# ---------------------------------------------------------------------- answers
@dataclass(frozen=True)
class Transition:
    """A phase's answer to an observation.

    Attributes:
        actions: To carry out, in order.
        next: The :class:`Edge` to follow when the phase has ended (None: it goes on).
        handoff: What the phase behind the edge starts from (see the edge).
    """

    actions: tuple[Action, ...] = ()
    next: str | None = None
    handoff: Any = None


def finite(value: object) -> bool:
    """Whether ``value`` is a finite real number (a validation function may return anything)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------------- context
class PendingEvents:
    """The controller's events recorded since the executor last collected them (in memory;
    :class:`autolrs.events.EventLog` is where an executor sends them: logger and file)."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    def pop(self) -> list[dict[str, Any]]:
        """The events recorded since the last call."""
        events, self.pending = self.pending, []
        return events


class Context:
    """What every phase may read and use: the settings, the run, the plug-ins, the event log.

    Args:
        config: The method's settings.
        total_steps: The step budget (None: none).
        validation: Whether a validation function is available.
        run: The state that crosses phases.
        rng: The controller's generator (each stage's searcher is spawned from it).
        make_searcher: Builds a stage's searcher.
        make_forecaster: Builds the forecaster that scores a trial.
        events: Where events go.
    """

    def __init__(
        self,
        config: Config,
        total_steps: int | None,
        validation: bool,
        run: Run,
        rng: np.random.Generator,
        make_searcher: SearcherFactory,
        make_forecaster: ForecasterFactory,
        events: PendingEvents,
    ) -> None:
        self.config = config
        self.total_steps = total_steps
        self.validation = validation
        self.run = run
        self.rng = rng
        self.make_searcher = make_searcher
        self.make_forecaster = make_forecaster
        self.events = events

    @property
    def check_budget(self) -> int | None:
        """The budget the overfitting guard's checks are spread over (None: no checks, with the
        guard off, no validation function or no budget)."""
        if self.config.overfit_guard is None or not self.validation:
            return None
        return self.total_steps

    @property
    def finished(self) -> bool:
        """True once ``total_steps`` steps have been told."""
        return self.total_steps is not None and self.run.step >= self.total_steps

    def emit(self, event: str, **fields: Any) -> None:
        """Records an event at the current step."""
        record = {"event": event, "step": self.run.step}
        record.update(fields)
        self.events.pending.append(record)

    def segment(
        self, kind: str, start: int, lr: float, *, end: int | None = None, **fields: Any
    ) -> None:
        """Emits a ``segment`` event: steps ``start``..``end`` (default: now) trained at ``lr``."""
        self.emit(
            "segment", kind=kind, start=start, end=self.run.step if end is None else end, lr=lr,
            **fields,
        )

    def early_stop_segments(self, kind: str, start: int, lr: float, **fields: Any) -> None:
        """Records steps ``start``..now as an early stop returning to the best check's state
        ends them: those up to that check were kept, those after it undone (``early_stopped``).
        A state saved before the check's step was kept: all of them undone, as then."""
        end, best = self.run.step, self.run.overfit.best_step
        split = start if best is None else min(max(best, start), end)
        if split > start:
            self.segment(kind, start, lr, end=split, committed=True, **fields)
        if end > split:
            self.segment(kind, split, lr, committed=False, early_stopped=best is not None,
                         **fields)

    def observe_check(self, value: float, training: list[float]) -> str | None:
        """Tells the overfitting guard (``Run.overfit``) one check's validation ``value`` with
        the recent ``training`` losses and emits its ``validation_check`` event.

        Returns:
            The guard's verdict: ``"best"``, ``"overfit"`` or None
            (:meth:`~autolrs.core.overfitting.OverfitGuard.observe`).
        """
        margin = self.config.overfit_guard
        assert margin is not None  # checks run only with the guard on
        check = self.run.overfit.observe(value, training, margin, self.run.level.recent)
        if check is None:
            return None
        self.emit("validation_check", **check.event)
        if check.verdict == "best":
            self.run.overfit.best_step = self.run.step
        return check.verdict

    def register_rollback(self, phase: str, reason: str, *, counts: bool = True) -> bool:
        """Counts a rollback to the stage snapshot; past ``Config.max_rollbacks`` records the
        run's failure and returns True. ``counts=False``: recorded, not counted (a loss that
        rose but stayed finite is no divergence)."""
        run = self.run
        run.rollbacks += int(counts)
        self.emit("rollback", phase=phase, reason=reason, restored=STAGE, lr=run.lr)
        if run.rollbacks > self.config.max_rollbacks:
            assert run.lr is not None  # a rollback happens only after a rate was set
            run.failure = (
                f"training diverged {run.rollbacks} times in a row ({reason}); the last "
                f"learning rate was {run.lr:.3g}. The model was restored to the last finite state."
            )
            return True
        return False


# ---------------------------------------------------------------------- the contract
class BasePhase(abc.ABC):
    """One phase of the method: its own state, told observations, answering transitions.

    Each subclass also has ``begin(...) -> Transition`` (what it starts from differs) and a
    ``from_dict(ctx, data)`` class method that rebuilds :meth:`to_dict`'s output.

    Attributes:
        name: The phase's name (see :class:`Phase`).
        in_trial: Whether the model may still be rolled back to the stage snapshot.
    """

    name: str = ""
    in_trial: bool = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def awaiting_validation(self) -> bool:
        """True between an Evaluate action and the :class:`Validation` it asked for."""
        return False

    @abc.abstractmethod
    def observe(self, observation: Observation) -> Transition:
        """Handles one observation (the run's step counter already counts a loss's step)."""

    @abc.abstractmethod
    def outlook(self) -> Outlook:
        """What may happen before the next observation needs to be looked at."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The phase's own state, JSON-safe."""
