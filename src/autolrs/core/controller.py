"""The AutoLRS state machine: told each step's loss, it answers with actions.

The controller only knows the phase graph (see ``docs/architecture.md``); each phase is its own
object in ``core/phases/``. It holds the :class:`~autolrs.core.run.Run` (what crosses phases) and
the current phase, tells the phase each observation, follows the edge a phase names when it
ends (:meth:`StageController._follow`), and serialises both (:mod:`autolrs.core.state`).

The controller is pure: no tensors, no I/O, no wall clock. Given the same seed and the same
observations it makes the same decisions, and :meth:`StageController.state_dict` (JSON-safe)
captures everything needed to continue exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autolrs.core._rng import rng_from_state, rng_state
from autolrs.core.actions import Action, SetLR
from autolrs.core.arguments import validate_lr_range, validate_total_steps
from autolrs.core.config import Config
from autolrs.core.decision import Decision, Outlook, constant
from autolrs.core.observations import Abort, Loss, Losses, Observation, Spent, Start, Validation
from autolrs.core.phases.base import BasePhase, Context, Edge, PendingEvents, Phase, Transition
from autolrs.core.phases.exploit import Exploit
from autolrs.core.phases.final import Final
from autolrs.core.phases.ramp import Ramp, ramp_plan
from autolrs.core.phases.range_test import RangeTest
from autolrs.core.phases.stage import StageEnd, TrialResult
from autolrs.core.phases.trial_plan import first_stage_searches, plan_trials
from autolrs.core.phases.trials import Trials
from autolrs.core.phases.warmup import Warmup, warmup_target
from autolrs.core.planning import tau_plan, warmup_length
from autolrs.core.run import Run
from autolrs.core.space import SearchSpace
from autolrs.core.state import VERSION, phase_from_dict, read
from autolrs.core.strategies import (
    ForecasterFactory,
    SearcherFactory,
    forecaster_factory,
    searcher_factory,
)

__all__ = ["Phase", "StageController", "validate_lr_range", "validate_total_steps"]

_MIN_SEARCH_BUDGET = 30  # below this many steps (and no lr_range) nothing is searched


class StageController:
    """AutoLRS as an ask/tell state machine.

    Tell it a :class:`~autolrs.core.observations.Start`, then each step's
    :class:`~autolrs.core.observations.Loss` (or a batch of them,
    :class:`~autolrs.core.observations.Losses`), and, when an action asks for one, the
    :class:`~autolrs.core.observations.Validation`; :meth:`tell` answers each with a
    :class:`~autolrs.core.decision.Decision`. Executors (:class:`autolrs.AutoLRS`,
    :func:`autolrs.testing.drive`, both through :class:`~autolrs.core.executor.Executor`) call
    only :meth:`tell`, once per observation.

    The other protocol methods are thin conveniences kept for tests that step the controller
    by hand (``tests/core``, the golden traces, the property tests): :meth:`start`,
    :meth:`tell_loss`, :meth:`tell_losses`, :meth:`tell_validation` and :meth:`abort_trial` are
    what :meth:`tell` runs for ``Start``, ``Loss``, ``Losses``, ``Validation`` and ``Abort``,
    returning only the actions (the events then wait for :meth:`pop_events`, and
    :attr:`quiet_steps`, :attr:`needs_finite_check`, :meth:`planned_lr` and :attr:`failure`
    read what the decision's outlook and failure carry).

    Args:
        config: The method's settings (default ``Config()``).
        total_steps: Optimizer steps the whole run may take, trials included; stages are
            planned inside it. None: the paper's absolute stage lengths, forever.
        lr_range: ``(low, high)`` search interval; None runs a range test first.
        validation: Whether a validation function is available (needed for a validation-loss
            objective; without one the training loss is used).
        seed: Seed of every random choice.
        default_lr: Learning rate to hold when the budget is too small to search at all
            (fewer than 30 steps and no ``lr_range``); default: the geometric mean of
            ``Config.range_test_bounds``.
        searcher: Builds each stage's searcher (default: the one ``config`` names; see
            :mod:`autolrs.core.strategies`).
        forecaster: Builds the forecaster that scores trials (default: the one ``config``
            names).

    Raises:
        ValueError: If ``total_steps`` or ``lr_range`` is invalid.
        TypeError: If ``config`` is not a :class:`Config`.
    """

    VERSION = VERSION

    def __init__(
        self,
        config: Config | None = None,
        *,
        total_steps: int | None = None,
        lr_range: tuple[float, float] | None = None,
        validation: bool = False,
        seed: int | None = None,
        default_lr: float | None = None,
        searcher: SearcherFactory | None = None,
        forecaster: ForecasterFactory | None = None,
    ) -> None:
        if config is None:
            config = Config()
        if not isinstance(config, Config):
            raise TypeError(f"config must be an autolrs.Config, got {type(config).__name__}")
        self.config = config
        self.total_steps = validate_total_steps(total_steps)
        self.validation = bool(validation)
        lr_range = validate_lr_range(lr_range)
        self._rng = np.random.default_rng(seed)
        self._searcher, self._forecaster = searcher, forecaster
        self._run = Run(
            taus=tau_plan(config, self.total_steps),
            space=SearchSpace(None if lr_range is None else list(lr_range)),
            default_lr=None if default_lr is None else float(default_lr),
        )
        self._phase: BasePhase | None = None
        self._events = PendingEvents()
        self._bind()

    # ================================================================== public view
    @property
    def step(self) -> int:
        """Training steps told so far (trials included)."""
        return self._run.step

    @property
    def phase(self) -> str:
        """Current phase (see :class:`Phase`); before :meth:`start`, the one it will begin."""
        if self._phase is not None:
            return self._phase.name
        if self._warms_up():
            return Phase.WARMUP
        return Phase.RANGE_TEST if self._run.space.range is None else Phase.TRIAL

    @property
    def lr(self) -> float | None:
        """The learning rate the next training step uses."""
        return self._run.lr

    @property
    def stage(self) -> int:
        """Index of the current stage (1-based; 0 before the first)."""
        return self._run.stage

    @property
    def in_trial(self) -> bool:
        """True while the model may still be rolled back (range test or a candidate's trial)."""
        if self._phase is None:
            return self.phase in (Phase.RANGE_TEST, Phase.TRIAL)
        return self._phase.in_trial

    @property
    def awaiting_validation(self) -> bool:
        """True between an :class:`Evaluate` action and :meth:`tell_validation`."""
        return self._phase is not None and self._phase.awaiting_validation

    @property
    def search_range(self) -> tuple[float, float] | None:
        """The learning-rate interval searched (None until the range test has found it)."""
        r = self._run.space.range
        return None if r is None else (float(r[0]), float(r[1]))

    @property
    def finished(self) -> bool:
        """True once ``total_steps`` steps have been told."""
        return self._ctx.finished

    @property
    def failure(self) -> str | None:
        """Set when training kept diverging beyond ``Config.max_rollbacks``."""
        return self._run.failure

    def outlook(self) -> Outlook:
        """What may happen before the next observation must be looked at (see :class:`Outlook`)."""
        if self._phase is None:
            return Outlook(0, False, constant(self._run.lr or 0.0))
        return self._phase.outlook()

    @property
    def needs_finite_check(self) -> bool:
        """Whether the next :meth:`tell_loss` will commit the model's state to a snapshot: the
        executor then passes ``model_finite`` so that a non-finite model is never committed."""
        return self.outlook().needs_finite_check

    @property
    def quiet_steps(self) -> int:
        """How many upcoming steps can be told later, in one batch (:meth:`tell_losses`): within
        them only the learning rate changes (:meth:`planned_lr`) unless a loss is abnormal."""
        return self.outlook().quiet_steps

    def planned_lr(self, ahead: int) -> float:
        """Learning rate of the step ``ahead`` steps after the next one (exact within
        :attr:`quiet_steps`; ``planned_lr(0)`` is :attr:`lr`)."""
        return self.outlook().planned_lr(ahead)

    # ================================================================== protocol
    def tell(self, observation: Observation) -> Decision:
        """Tells one observation; returns the decision (actions, outlook, events, failure).

        Raises:
            RuntimeError: If the observation comes out of order (see :meth:`start`,
                :meth:`tell_loss`, :meth:`tell_validation`).
            TypeError: If ``observation`` is not one of :mod:`autolrs.core.observations`.
        """
        if isinstance(observation, Start):
            actions = self.start()
        elif isinstance(observation, Loss):
            actions = self.tell_loss(observation.value, model_finite=observation.model_finite)
        elif isinstance(observation, Losses):
            actions = self.tell_losses(
                list(observation.values), model_finite=observation.model_finite
            )
        elif isinstance(observation, Validation):
            actions = self.tell_validation(observation.value)
        elif isinstance(observation, Abort):
            actions = self.abort_trial(observation.reason)
        else:
            raise TypeError(
                f"tell() takes Start, Loss, Losses, Validation or Abort, got {observation!r}"
            )
        return Decision(actions, self.outlook(), tuple(self.pop_events()), self.failure)

    def start(self) -> tuple[Action, ...]:
        """Actions to carry out before the first training step.

        Raises:
            RuntimeError: If called twice.
        """
        if self._run.started:
            raise RuntimeError("StageController.start() was already called")
        self._run.started = True
        self._ctx.emit(
            "start",
            config=self.config.to_dict(),
            total_steps=self.total_steps,
            lr_range=self._run.space.range,
        )
        if self._warms_up():
            return self._enter(Warmup(self._ctx))
        return self._follow(Edge.METHOD, None)

    def _warms_up(self) -> bool:
        """Whether the run starts with a warm-up (``Config.warmup_steps``, as the original)."""
        return self.config.warmup_steps > 0

    def _warms_up_before_stages(self) -> bool:
        """Whether a warm-up (``Config.warmup_fraction``) comes now, before the first stage:
        after the range test, which must sweep from the initial model."""
        cfg, run = self.config, self._run
        if cfg.warmup_steps > 0 or run.warmed_up or run.stage > 0 or run.last_lr is not None:
            return False
        if first_stage_searches(self._ctx):
            return False  # its trials warm up on their own
        return warmup_length(cfg, self.total_steps, warmup_target(self._ctx)) > 0

    def tell_loss(self, loss: float, *, model_finite: bool = True) -> tuple[Action, ...]:
        """Records the loss of the training step just taken; returns the actions to carry out.

        Args:
            loss: The step's training loss (a non-finite value rolls back: retried once in a
                calm sweep or trial, otherwise handled as divergence).
            model_finite: Whether every parameter is finite after the step; only consulted when
                :attr:`needs_finite_check` was True.

        Raises:
            RuntimeError: If :meth:`start` was not called, or a validation value is awaited.
        """
        if self._phase is None:
            raise RuntimeError("call StageController.start() before telling losses")
        if self.awaiting_validation:
            raise RuntimeError("a validation loss was requested: call tell_validation() first")
        observation = Loss(float(loss), model_finite)
        self._run.step += 1
        return self._apply(self._phase.observe(observation))

    def tell_losses(
        self, losses: list[float], *, model_finite: bool | Callable[[], bool] = True
    ) -> tuple[Action, ...]:
        """Tells the losses of several steps at once (see :attr:`quiet_steps`).

        If an abnormal loss ends a phase before the last one, the steps after it were spent on
        a state that is now abandoned: they are counted as spent and the actions that roll back
        are returned.

        Args:
            losses: One loss per step, oldest first.
            model_finite: Whether the parameters are finite after the last step, or a callable
                that says so (called only when a snapshot will be committed).
        """
        actions: tuple[Action, ...] = ()
        for i, loss in enumerate(losses):
            last = i == len(losses) - 1
            finite = True
            if last and self.needs_finite_check:
                finite = model_finite() if callable(model_finite) else bool(model_finite)
            actions = self.tell_loss(loss, model_finite=finite)
            if not last and any(not isinstance(a, SetLR) for a in actions):
                self._waste(len(losses) - i - 1)
                return actions
        return actions

    def _waste(self, steps: int) -> None:
        """Counts ``steps`` already taken on an abandoned state as spent."""
        self._run.step += steps
        self._ctx.emit("wasted", steps=steps, phase=self.phase)
        assert self._phase is not None  # losses are told only after start()
        self._phase.observe(Spent(steps))

    def tell_validation(self, value: float) -> tuple[Action, ...]:
        """Records the validation loss asked for by an :class:`Evaluate` action.

        Raises:
            RuntimeError: If no validation loss was requested.
        """
        if self._phase is None or not self._phase.awaiting_validation:
            raise RuntimeError("no validation loss was requested")
        return self._apply(self._phase.observe(Validation(value)))

    def abort_trial(self, reason: str) -> tuple[Action, ...]:
        """Rolls back and restarts the running trial (e.g. after the validation function raised).

        In the range test the sweep restarts; elsewhere nothing happens.

        Returns:
            The actions restoring a consistent state.
        """
        if self._phase is None:
            return ()
        return self._apply(self._phase.observe(Abort(reason)))

    def pop_events(self) -> list[dict[str, Any]]:
        """Events recorded since the last call (JSON-safe dicts with an ``"event"`` key)."""
        return self._events.pop()

    # ================================================================== phase graph
    def _bind(self) -> None:
        """(Re)builds what the phases see: after construction and after loading a state."""
        self._ctx = Context(
            self.config,
            self.total_steps,
            self.validation,
            self._run,
            self._rng,
            self._searcher or searcher_factory(self.config),
            self._forecaster or forecaster_factory(self.config),
            self._events,
        )

    def _enter(self, phase: Any, *handoff: Any) -> tuple[Action, ...]:
        """Makes ``phase`` the current phase and begins it."""
        self._phase = phase
        return self._apply(phase.begin(*handoff))

    def _apply(self, transition: Transition) -> tuple[Action, ...]:
        """The transition's actions, and, when it ends the phase, those of the next."""
        if transition.next is None:
            return transition.actions
        return transition.actions + self._follow(transition.next, transition.handoff)

    def _follow(self, edge: str, handoff: Any) -> tuple[Action, ...]:
        """Enters the phase behind ``edge`` (the phase graph)."""
        ctx, run = self._ctx, self._run
        if edge == Edge.METHOD:  # after the warm-up (or at the start)
            if run.space.range is not None:
                return self._stage(None)
            if self.total_steps is not None and self.total_steps < _MIN_SEARCH_BUDGET:
                return self._enter(Final(ctx))
            if ramp_plan(ctx) is not None:  # the ramp finds the range as it trains
                return self._enter(Ramp(ctx))
            return self._enter(RangeTest(ctx))
        if edge == Edge.STAGE:
            return self._stage(handoff)
        if edge == Edge.EXPLOIT:
            return self._enter(Exploit.start(ctx, handoff), handoff)
        if edge == Edge.FINAL:  # handoff "early": the exploit phase saw overfitting
            return self._enter(Final(ctx, early=handoff == "early"))
        raise ValueError(f"a phase named an unknown edge {edge!r}; known: {vars(Edge)}")

    def _stage(self, end: StageEnd | None) -> tuple[Action, ...]:
        """The next stage's trials (after ``end`` of the previous one), or the final phase."""
        if end is None and ramp_plan(self._ctx) is not None:
            return self._enter(Ramp(self._ctx))
        if end is None and self._warms_up_before_stages():
            self._run.warmed_up = True
            return self._enter(Warmup(self._ctx))
        previous: list[TrialResult] = []
        if end is not None:
            if end.last_lr is not None:
                self._run.last_lr = end.last_lr
            self._run.taus.advance(self.config.tau_growth)
            previous = end.results
        plan = plan_trials(self._ctx)
        if plan is None:
            return self._enter(Final(self._ctx))
        self._run.stage += 1
        return self._enter(Trials.start(self._ctx, plan), previous)

    # ================================================================== state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe, versioned state; :meth:`load_state_dict` continues exactly from it."""
        return {
            "version": VERSION,
            "config": self.config.to_dict(),
            "total_steps": self.total_steps,
            "validation": self.validation,
            "rng": rng_state(self._rng),
            "state": {
                "run": self._run.to_dict(),
                "phase": self.phase,
                "phase_state": None if self._phase is None else self._phase.to_dict(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output (version 2, or version 1, which is upgraded).

        The saved config and budget replace the constructor's: a resumed run continues with the
        settings it started with. Events not yet collected are dropped.

        Raises:
            StateDictError: If the state is of another version, misses keys or is malformed.
        """
        state, self.config, self._run = read(state)
        self.total_steps, inner = state["total_steps"], state["state"]
        self.validation = bool(state.get("validation", self.validation))
        self._rng = rng_from_state(state["rng"])
        self._events = PendingEvents()
        self._bind()
        self._phase = phase_from_dict(self._ctx, inner["phase"], inner["phase_state"])
