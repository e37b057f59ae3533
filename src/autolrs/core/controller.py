"""The AutoLRS state machine: told each step's loss, it answers with actions.

Phases::

    [range test] -> stage 1 -> stage 2 -> ... -> [final decay or hold] -> done
    stage = k trials of tau' steps, each from the stage snapshot -> exploit the best for tau steps

The controller is pure: no tensors, no I/O, no wall clock. Given the same seed and the same
observations it makes the same decisions, and :meth:`StageController.state_dict` (JSON-safe)
captures everything needed to continue exactly where it stopped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from autolrs.core._rng import rng_from_state, rng_state, spawn
from autolrs.core.actions import STAGE, WINNER, Action, Discard, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.config import Config
from autolrs.core.forecast import CurveFit, Forecaster
from autolrs.core.level import GUARD_WINDOW, RECENT, CommittedLevel, robust_std
from autolrs.core.phases.base import (
    Validation,
    Abort,
    BasePhase,
    Context,
    Edge,
    EventLog,
    Loss,
    Phase,
    Spent,
    Transition,
)
from autolrs.core.phases.stage import StageEnd, StageOutcome, TrialPlan, TrialResult, Winner
from autolrs.core.phases.checkpoints import before_next, checkpoints
from autolrs.core.phases.final import Final
from autolrs.core.phases.range_test import RangeTest
from autolrs.core.phases.trials import Trials, plan_trials
from autolrs.core.phases.warmup import Warmup
from autolrs.core.planning import decay_length, first_tau, plan_stage, range_test_length
from autolrs.core.range_test import divergence_index, suggest_range, sweep_lrs
from autolrs.core.run import Run, TauPlan
from autolrs.core.search import Searcher
from autolrs.core.selection import fallback_lr, select
from autolrs.core.space import SearchSpace
from autolrs.core.strategies import (
    ForecasterFactory,
    SearcherFactory,
    forecaster_factory,
    searcher_factory,
)

__all__ = ["Phase", "StageController", "validate_lr_range", "validate_total_steps"]

RANGE_SLOTS = ("range_a", "range_b")
_TWIN_LOG_RATIO = math.log(1.25)  # rates closer than this count as the same rate
_MIN_SEARCH_BUDGET = 30  # below this many steps (and no lr_range) nothing is searched
_FAULT_RETRIES = 1  # non-finite results a sweep or a trial may roll back from, if calm before
_EXPLODED = 1e6  # a trial loss this many times the stage's start has diverged (any config)


def validate_total_steps(total_steps: Any) -> int | None:
    """Checks ``total_steps``: None or an integer >= 1.

    Raises:
        ValueError: If it is not None or a positive whole number.
    """
    if total_steps is None:
        return None
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer, float)):
        raise ValueError(
            f"total_steps must be a positive integer or None, got {total_steps!r} "
            f"({type(total_steps).__name__})"
        )
    if isinstance(total_steps, float) and not (
        math.isfinite(total_steps) and total_steps.is_integer()
    ):
        raise ValueError(
            f"total_steps must be a positive integer or None, got {total_steps!r}; "
            "pass None when the number of steps is not known"
        )
    if int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
    return int(total_steps)


def validate_lr_range(lr_range: Any) -> tuple[float, float] | None:
    """Checks ``lr_range``: None or two numbers with 0 < low < high < inf.

    Raises:
        ValueError: If it is not None or a valid interval.
    """
    if lr_range is None:
        return None
    try:
        low, high = lr_range
    except (TypeError, ValueError):
        raise ValueError(
            f"lr_range must be a pair (low, high) of learning rates, got {lr_range!r}; "
            "pass None to let autolrs find the range with a short range test"
        ) from None
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"lr_range {name} must be a number, got {value!r} in {lr_range!r}")
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low < high):
        raise ValueError(
            f"lr_range must satisfy 0 < low < high < inf, got {lr_range!r}"
            + ("; the bounds look reversed" if 0 < high < low else "")
        )
    return low, high


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class StageController:
    """AutoLRS as an ask/tell state machine.

    Call :meth:`start` once before the first training step and carry out the actions it
    returns. After every training step call :meth:`tell_loss` with that step's loss and carry
    out the returned actions; when they end with :class:`~autolrs.core.actions.Evaluate`, call
    the validation function and :meth:`tell_validation` with its value, and carry out what that
    returns.

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
        searcher: Builds each stage's searcher (default: the one ``config`` names).
        forecaster: Builds the forecaster that scores trials (default: the one ``config``
            names).

    Raises:
        ValueError: If ``total_steps`` or ``lr_range`` is invalid.
        TypeError: If ``config`` is not a :class:`Config`.
    """

    VERSION = 1

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
        tau0 = first_tau(config, self.total_steps)
        self._rng = np.random.default_rng(seed)
        self._custom_searcher = searcher
        self._custom_forecaster = forecaster
        self._make_searcher = searcher or searcher_factory(config)
        self._make_forecaster = forecaster or forecaster_factory(config)
        self._searcher: Searcher | None = None
        self._events = EventLog()
        self._phase: BasePhase | None = None
        self._run = Run(
            taus=TauPlan(tau0, max(tau0, int(round(tau0 * config.tau_max_factor)))),
            space=SearchSpace(None if lr_range is None else list(lr_range)),
            default_lr=None if default_lr is None else float(default_lr),
        )
        self._bind()
        self._s: dict[str, Any] = {
            "phase": (
                Phase.WARMUP
                if config.warmup_steps > 0
                else Phase.RANGE_TEST if lr_range is None else Phase.TRIAL
            ),
            "plan": None,
            "results": [],
            "winner": None,
            "winner_slot": False,
            "exploit": None,
        }

    # ================================================================== public view
    @property
    def step(self) -> int:
        """Training steps told so far (trials included)."""
        return int(self._run.step)

    @property
    def phase(self) -> str:
        """Current phase (see :class:`Phase`)."""
        if self._phase is not None:
            return self._phase.name
        return str(self._s["phase"])

    @property
    def lr(self) -> float | None:
        """The learning rate the next training step uses."""
        return self._run.lr

    @property
    def stage(self) -> int:
        """Index of the current stage (1-based; 0 before the first)."""
        return int(self._run.stage)

    @property
    def in_trial(self) -> bool:
        """True while the model may still be rolled back (range test or a candidate's trial)."""
        if self._phase is not None:
            return self._phase.in_trial
        return self._s["phase"] in (Phase.RANGE_TEST, Phase.TRIAL)

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
        return self.total_steps is not None and self.step >= self.total_steps

    @property
    def failure(self) -> str | None:
        """Set when training kept diverging beyond ``Config.max_rollbacks``."""
        return self._run.failure

    @property
    def needs_finite_check(self) -> bool:
        """Whether the next :meth:`tell_loss` will commit the model's state to a snapshot.

        The executor should then pass ``model_finite`` (are all parameters finite after the
        step?) so that a non-finite model is never committed.
        """
        s, phase = self._s, self._s["phase"]
        if self._phase is not None:
            return self._phase.outlook().needs_finite_check
        if phase == Phase.EXPLOIT:
            e = s["exploit"]
            return self._run.step + 1 >= e["end_step"] or e["done"] + 1 in self._exploit_checks(e)
        return False

    @property
    def quiet_steps(self) -> int:
        """How many upcoming steps can be told later, in one batch (:meth:`tell_losses`).

        Within that many steps the controller will change nothing but the learning rate (as
        :meth:`planned_lr` says) unless a loss is abnormal (non-finite, exploding, above the
        divergence bound). An executor may therefore buffer that many losses without reading
        them (no device synchronisation) and tell them all at the step after.
        """
        s, phase = self._s, self._s["phase"]
        if self._phase is not None:
            return self._phase.outlook().quiet_steps
        if phase == Phase.EXPLOIT:
            e = s["exploit"]
            left = e["end_step"] - self._run.step - 1
            return max(0, min(left, before_next(self._exploit_checks(e), e["done"])))
        return 1 << 30

    def planned_lr(self, ahead: int) -> float:
        """Learning rate of the training step ``ahead`` steps after the next one.

        Exact within :attr:`quiet_steps` (the range test's sweep and the final decay change it
        every step); ``planned_lr(0)`` is :attr:`lr`.
        """
        s, phase = self._s, self._s["phase"]
        if self._phase is not None:
            return self._phase.outlook().planned_lr(ahead)
        return float(self._run.lr)

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
        s = self._s
        self._run.step += steps
        self._emit("wasted", steps=steps, phase=self.phase)
        if self._phase is not None:
            self._phase.observe(Spent(steps))
        if self._phase is None and s["phase"] == Phase.EXPLOIT:
            e = s["exploit"]
            e["start_step"] = e["checkpoint_step"] = self._run.step
            e["end_step"] = max(e["end_step"], self._run.step + 1)

    def pop_events(self) -> list[dict[str, Any]]:
        """Events recorded since the last call (JSON-safe dicts with an ``"event"`` key)."""
        return self._events.pop()

    # ================================================================== protocol
    def start(self) -> tuple[Action, ...]:
        """Actions to carry out before the first training step.

        Raises:
            RuntimeError: If called twice.
        """
        if self._run.started:
            raise RuntimeError("StageController.start() was already called")
        self._run.started = True
        self._emit(
            "start",
            config=self.config.to_dict(),
            total_steps=self.total_steps,
            lr_range=self._run.space.range,
        )
        if self.config.warmup_steps > 0:
            return self._enter(Warmup(self._ctx))
        return self._after_warmup()

    def _after_warmup(self) -> tuple[Action, ...]:
        """The first phase of the method proper: a range test, or the first stage."""
        if self._run.space.range is None:
            if self.total_steps is not None and self.total_steps < _MIN_SEARCH_BUDGET:
                return self._enter(Final(self._ctx))
            return self._enter(RangeTest(self._ctx))
        return self._begin_stage(None)

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
        s = self._s
        if not self._run.started:
            raise RuntimeError("call StageController.start() before telling losses")
        if self.awaiting_validation:
            raise RuntimeError("a validation loss was requested: call tell_validation() first")
        loss = float(loss)
        self._run.step += 1
        phase = s["phase"]
        if self._phase is not None:
            return self._apply(self._phase.observe(Loss(loss, model_finite)))
        return self._exploit_tell(loss, model_finite)

    def tell_validation(self, value: float) -> tuple[Action, ...]:
        """Records the validation loss asked for by an :class:`Evaluate` action.

        Raises:
            RuntimeError: If no validation loss was requested.
        """
        if not self.awaiting_validation or self._phase is None:
            raise RuntimeError("no validation loss was requested")
        return self._apply(self._phase.observe(Validation(value)))

    def abort_trial(self, reason: str) -> tuple[Action, ...]:
        """Rolls back and restarts the running trial (e.g. after the validation function raised).

        Outside a trial this only clears a pending validation request.

        Returns:
            The actions restoring a consistent state.
        """
        if self._phase is not None:
            return self._apply(self._phase.observe(Abort(reason)))
        return ()

    # ================================================================== phase graph
    def _bind(self) -> None:
        """(Re)builds what the phases see: after construction and after loading a state."""
        self._ctx = Context(
            self.config,
            self.total_steps,
            self.validation,
            self._run,
            self._rng,
            self._make_searcher,
            self._make_forecaster,
            self._events,
        )

    def _enter(self, phase: Any, *handoff: Any) -> tuple[Action, ...]:
        """Makes ``phase`` the current phase and begins it."""
        self._phase = phase
        self._s["phase"] = phase.name
        return self._apply(phase.begin(*handoff))

    def _apply(self, transition: Transition) -> tuple[Action, ...]:
        """The transition's actions, and, when it ends the phase, those of the next."""
        if transition.next is None:
            return transition.actions
        self._phase = None
        return transition.actions + self._follow(transition.next, transition.handoff)

    def _follow(self, edge: str, handoff: Any) -> tuple[Action, ...]:
        if edge == Edge.METHOD:
            return self._after_warmup()
        if edge == Edge.FINAL:
            return self._enter(Final(self._ctx))
        if edge == Edge.STAGE:
            return self._begin_stage(handoff)
        if edge == Edge.EXPLOIT:
            outcome: StageOutcome = handoff
            s = self._s
            s["plan"] = outcome.plan.to_dict()
            s["results"] = outcome.results
            s["winner"] = None if outcome.winner is None else outcome.winner.to_dict()
            s["winner_slot"] = outcome.winner_slot
            s["exploit"] = None
            self._searcher = outcome.searcher
            return self._decide()
        raise AssertionError(f"unknown edge {edge!r}")

    # ================================================================== stages
    def _begin_stage(self, end: StageEnd | None) -> tuple[Action, ...]:
        """The next stage's trials (after ``end`` of the previous), or the final phase."""
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

    def _choose(self, exclude: list[float]) -> TrialResult | None:
        healthy = [r for r in self._s["results"] if not r.diverged and r.lr not in exclude]
        if not healthy:
            return None
        posterior = None
        if self.config.select == "posterior" and self._searcher is not None:
            posterior = self._searcher.posterior_mean
        return select(
            healthy,
            prefer_larger_within=self.config.prefer_larger_within,
            posterior_mean=posterior,
        )

    def _fallback_lr(self) -> float:
        """A learning rate well below everything that diverged in this stage."""
        s = self._s
        tried = [r.lr for r in s["results"]]
        if s["exploit"] is not None:
            tried.append(s["exploit"]["lr"])
        return fallback_lr(tried)

    def _decide(self) -> tuple[Action, ...]:
        s = self._s
        plan = s["plan"]
        chosen = self._choose([])
        actions: list[Action] = []
        winner = s["winner"]
        from_winner = 0
        if chosen is None:
            lr = self._fallback_lr()
            self._run.space.below(lr)
            actions.append(Restore(STAGE))
            reason = "every candidate diverged"
        else:
            lr = chosen.lr
            reason = None
            if winner is not None and winner["index"] == chosen.index:
                from_winner = winner["steps"]
                if not winner["live"]:
                    actions.append(Restore(WINNER))
            else:
                actions.append(Restore(STAGE))
        if s["winner_slot"]:
            actions.append(Discard(WINNER))
        s["winner"] = None
        s["winner_slot"] = False
        length = max(plan["tau"] - from_winner, 0)
        reference, reference_spread = self._run.level.reference, None
        if from_winner and chosen is not None and chosen.level is not None:
            reference, reference_spread = chosen.level, chosen.level_spread
        s["exploit"] = {
            "reference": reference,
            "reference_spread": reference_spread,
            "lr": lr,
            "start_step": self._run.step,
            "checkpoint_step": self._run.step,
            "end_step": self._run.step + length,
            "lift": False,  # whether the next loss is the first after a rollback
            "kept_steps": from_winner,
            "excluded": [],
            "losses": [],
            "done": 0,
        }
        s["phase"] = Phase.EXPLOIT
        self._run.lr = lr
        self._decision(
            lr,
            chosen,
            exploit_steps=length,
            kept_winner_steps=from_winner,
            reason=reason,
            candidates=[[r.lr, r.value] for r in s["results"]],
            converged=len(s["results"]) < plan["candidates"],
        )
        if from_winner:
            self._segment(
                "kept_trial", self._run.step - from_winner, lr=lr, committed=True, virtual=True
            )
        actions.append(SetLR(lr))
        if length == 0:
            return tuple(actions) + self._end_stage()
        return tuple(actions)

    def _exploit_tell(self, loss: float, model_finite: bool) -> tuple[Action, ...]:
        s = self._s
        e = s["exploit"]
        stage_end = self._run.step >= e["end_step"]
        if not _finite(loss) or (stage_end and not model_finite):
            return self._rollback_exploit(
                "non-finite loss" if not _finite(loss) else "non-finite parameters", diverged=True
            )
        if e["lift"]:
            e["lift"] = False
            # The first loss after a rollback is computed on the restored state, before any step
            # at the new rate: a restored state clearly above the reference is the new start.
            if e["reference"] is not None:
                e["reference"] = self._run.level.lifted(loss, e["reference"])
        e["losses"] = (e["losses"] + [loss])[-RECENT:]
        e["done"] += 1
        checkpoint = not stage_end and e["done"] in self._exploit_checks(e)
        if checkpoint and not model_finite:
            return self._rollback_exploit("non-finite parameters", diverged=True)
        if (stage_end or checkpoint) and self._stage_got_worse(e):
            if stage_end:
                return self._fail_stage(e)
            return self._rollback_exploit(
                f"loss rose above the stage start with lr {e['lr']:.3g}", ceiling=True
            )
        if checkpoint:
            return self._checkpoint_exploit(e)
        if not stage_end:
            return ()
        return self._end_stage()

    def _exploit_checks(self, e: dict[str, Any]) -> list[int]:
        """Exploit steps (counted from the exploit's start) at which the stage guard looks and,
        when the stage is healthy, the model becomes the stage's new rollback point: half-way,
        in a phase of at least ``2 * GUARD_WINDOW`` steps."""
        return checkpoints(e["end_step"] - e["start_step"], parts=2)

    def _checkpoint_exploit(self, e: dict[str, Any]) -> tuple[Action, ...]:
        """Commits the healthy exploit so far: a later rollback loses only the steps after it."""
        s = self._s
        for loss in e["losses"]:
            self._record_committed(loss)
        e["losses"] = []
        self._segment("exploit", e["checkpoint_step"], lr=e["lr"], committed=True)
        e["checkpoint_step"] = self._run.step
        return (Snapshot(STAGE),)

    def _stage_got_worse(self, e: dict[str, Any]) -> bool:
        """Whether the exploit phase's recent losses are clearly above where it started.

        It started at the stage's start level, or, when it continues the kept winner, at the
        level the winner's trial had reached. An exploit phase shorter than 4 steps is judged
        at its end on the losses it has: a rate at the edge of stability can look best in a
        short trial and blow the model up in the next few steps, and a stage left in that state
        would become every later stage's starting point.
        """
        return self._run.level.got_worse(
            e["losses"],
            e.get("reference"),
            reference_spread=e.get("reference_spread"),
            z=self.config.stage_guard,
            length=e["end_step"] - e["start_step"],
        )

    def _fail_stage(self, e: dict[str, Any]) -> tuple[Action, ...]:
        """The stage ended worse than it started: roll it back and search lower from now on."""
        s = self._s
        self._register_rollback(
            Phase.EXPLOIT, f"the stage ended above its start with lr {e['lr']:.3g}"
        )
        self._lower_ceiling(e["lr"])
        self._segment("exploit", e["checkpoint_step"], lr=e["lr"], committed=False)
        e["start_step"] = e["checkpoint_step"] = self._run.step
        self._run.rollbacks = 0
        actions: tuple[Action, ...] = (Restore(STAGE),)
        return actions + self._advance_stage(last_lr=None)

    def _lower_ceiling(self, failed_lr: float) -> None:
        """Keeps later searches below a learning rate that made a stage worse."""
        if self._run.space.lower_ceiling(failed_lr):
            self._emit("ceiling", lr=failed_lr, search_range=self._run.space.range)

    def _end_stage(self) -> tuple[Action, ...]:
        s = self._s
        e = s["exploit"]
        self._run.rollbacks = 0
        for loss in e["losses"]:  # the stage is committed: its losses become the new reference
            self._record_committed(loss)
        if self._run.step > e["checkpoint_step"]:
            self._segment("exploit", e["checkpoint_step"], lr=e["lr"], committed=True)
        self._shift_at_edge(e["lr"])
        return self._advance_stage(last_lr=e["lr"])

    def _shift_at_edge(self, lr: float) -> None:
        """With ``Config.edge_shift``: a committed rate at an edge of the search range moves
        the range that way (up: capped below any rate that diverged or failed a stage)."""
        above = any(r.diverged for r in self._s["results"] if r.lr > lr)
        if self._run.space.shift_at_edge(lr, self.config.edge_shift, diverged_above=above):
            self._emit("range_shift", lr=lr, search_range=self._run.space.range)

    def _advance_stage(self, last_lr: float | None) -> tuple[Action, ...]:
        self._phase = None
        return self._begin_stage(StageEnd(last_lr, self._s["results"]))

    def _record_committed(self, loss: float) -> None:
        self._run.level.record(loss)

    def _register_rollback(self, phase: str, reason: str) -> bool:
        return self._ctx.register_rollback(phase, reason)

    def _rollback_exploit(
        self, reason: str, *, ceiling: bool = False, diverged: bool = False
    ) -> tuple[Action, ...]:
        """Restores the stage's rollback point and goes on with another of its candidates.

        Args:
            reason: Why, for the event log.
            ceiling: The rate made the stage worse: later stages search below half of it.
            diverged: The rate gave a non-finite loss or parameters: this stage goes on only
                with lower rates (the ceiling is kept: the cause may have been one bad batch).
        """
        s = self._s
        e = s["exploit"]
        self._register_rollback(Phase.EXPLOIT, reason)
        if ceiling:
            self._lower_ceiling(e["lr"])
        self._segment("exploit", e["checkpoint_step"], lr=e["lr"], committed=False)
        e["excluded"].append(e["lr"])
        if ceiling or diverged:
            e["excluded"] += [r.lr for r in s["results"] if r.lr >= e["lr"]]
        # A rate that just failed rules out its near twins (within 25 %): the search may have
        # tried rates a few per cent apart, and the next of them would only fail the same way.
        e["excluded"] += [
            r.lr for r in s["results"] if abs(math.log(r.lr / e["lr"])) < _TWIN_LOG_RATIO
        ]
        chosen = self._choose(e["excluded"])
        lr = chosen.lr if chosen is not None else self._fallback_lr()
        remaining = max(e["end_step"] - self._run.step, 1)
        e.update(
            reference=self._run.level.reference,
            reference_spread=None,
            lr=lr,
            start_step=self._run.step,
            checkpoint_step=self._run.step,
            end_step=self._run.step + remaining,
            kept_steps=0,
            losses=[],
            done=0,
            lift=True,
        )
        self._run.lr = lr
        self._decision(lr, chosen, exploit_steps=remaining, reason=f"rollback: {reason}")
        return (Restore(STAGE), SetLR(lr))

    # ================================================================== events
    def _decision(
        self,
        lr: float,
        chosen: TrialResult | None,
        *,
        exploit_steps: int,
        reason: str | None,
        kept_winner_steps: int = 0,
        candidates: list[list[Any]] | None = None,
        converged: bool = False,
    ) -> None:
        """Emits a ``decision`` event: the stage exploits ``lr`` (a stage's choice, or the
        re-decision after a rollback, which lists no candidates)."""
        self._emit(
            "decision",
            stage=self._run.stage,
            lr=lr,
            forecast=None if chosen is None else chosen.value,
            exploit_steps=exploit_steps,
            kept_winner_steps=kept_winner_steps,
            reason=reason,
            candidates=candidates or [],
            converged=converged,
        )

    def _segment(
        self, kind: str, start: int, lr: float, *, end: int | None = None, **fields: Any
    ) -> None:
        """Emits a ``segment`` event: steps ``start``..``end`` (default: now) trained at ``lr``."""
        self._emit(
            "segment",
            kind=kind,
            start=start,
            end=self._run.step if end is None else end,
            lr=lr,
            **fields,
        )

    def _emit(self, event: str, **fields: Any) -> None:
        self._ctx.emit(event, **fields)

    # ================================================================== state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe, versioned state; :meth:`load_state_dict` continues exactly from it."""
        return {
            "version": self.VERSION,
            "config": self.config.to_dict(),
            "total_steps": self.total_steps,
            "validation": self.validation,
            "state": self._v1_inner(),
            "searcher": self._searcher_state(),
            "rng": rng_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output.

        The saved config and budget replace the constructor's: a resumed run continues with the
        settings it started with.

        Raises:
            StateDictError: If the state is of another version or misses keys.
        """
        from autolrs.exceptions import StateDictError

        if not isinstance(state, dict):
            raise StateDictError(f"controller state must be a dict, got {type(state).__name__}")
        version = state.get("version")
        if version != self.VERSION:
            raise StateDictError(
                f"controller state has version {version!r}; this autolrs reads version "
                f"{self.VERSION}. Resume with the autolrs release that wrote it."
            )
        missing = [
            k for k in ("config", "total_steps", "state", "searcher", "rng") if k not in state
        ]
        if missing:
            raise StateDictError(f"controller state misses key(s) {missing}")
        inner = state["state"]
        missing_inner = sorted(
            (set(_V1_RUN_KEYS) | set(_V1_PHASE_KEYS) | {"trial", "awaiting_validation"})
            - set(inner)
        )
        if missing_inner:
            raise StateDictError(f"controller state misses field(s) {missing_inner}")
        try:
            config = Config.from_dict(state["config"])
        except (TypeError, ValueError) as err:
            raise StateDictError(f"controller state holds an invalid config: {err}") from err
        self.config = config
        self.total_steps = state["total_steps"]
        self.validation = bool(state.get("validation", self.validation))
        self._make_searcher = self._custom_searcher or searcher_factory(config)
        self._make_forecaster = self._custom_forecaster or forecaster_factory(config)
        inner = copy.deepcopy(inner)
        _upgrade(inner)
        self._run = _run_from_v1(inner)
        self._s = {k: inner[k] for k in _V1_PHASE_KEYS}
        self._s["results"] = [TrialResult.from_dict(r) for r in inner["results"]]
        self._rng = rng_from_state(state["rng"])
        self._events = EventLog()
        self._bind()
        self._phase = None
        if inner["phase"] == Phase.TRIAL:
            self._phase = Trials.from_dict(
                self._ctx,
                {
                    **{k: inner[k] for k in ("plan", "trial", "results", "winner", "winner_slot")},
                    "awaiting_validation": inner["awaiting_validation"],
                    "searcher": state["searcher"],
                },
            )
        elif inner["phase"] == Phase.WARMUP:
            self._phase = Warmup.from_dict(self._ctx, inner["warmup"])
        elif inner["phase"] == Phase.RANGE_TEST:
            self._phase = RangeTest.from_dict(self._ctx, inner["range_test"])
        elif inner["phase"] in (Phase.FINAL, Phase.DONE):
            self._phase = Final.from_dict(
                self._ctx,
                {
                    **inner["final"],
                    "done": inner["phase"] == Phase.DONE,
                    "overrun_reported": bool(inner.get("overrun_reported", False)),
                },
            )
        if state["searcher"] is None or self._phase is not None:
            self._searcher = None
        else:
            plan = self._s["plan"]
            self._searcher = self._make_searcher(plan["search_low"], plan["search_high"], None)
            self._searcher.load_state_dict(state["searcher"])

    def _searcher_state(self) -> dict[str, Any] | None:
        if isinstance(self._phase, Trials):
            return self._phase.searcher.state_dict()
        return None if self._searcher is None else self._searcher.state_dict()

    def _v1_inner(self) -> dict[str, Any]:
        r = self._run
        inner = {
            "started": r.started,
            "step": r.step,
            "lr": r.lr,
            "stage": r.stage,
            "nominal_tau": r.taus.nominal,
            "tau_max": r.taus.maximum,
            "stages_at_max": r.taus.stages_at_max,
            "search_range": None if r.space.range is None else list(r.space.range),
            "recent": list(r.level.recent),
            "stage_reference": r.level.reference,
            "stage_spread": r.level.spread,
            "lr_cap": r.space.cap,
            "range_auto": r.space.auto,
            "initial_loss": r.level.initial,
            "last_lr": r.last_lr,
            "rollbacks": r.rollbacks,
            "failure": r.failure,
            "default_lr": r.default_lr,
        }
        phase = copy.deepcopy({k: v for k, v in self._s.items() if k != "results"})
        phase["results"] = [t.to_dict() for t in self._s["results"]]
        phase["phase"] = self.phase
        phase["trial"], phase["awaiting_validation"] = None, False
        if isinstance(self._phase, Trials):
            trials = self._phase.to_dict()
            del trials["searcher"]
            phase.update(trials)
        phase["final"], phase["overrun_reported"] = None, False
        if isinstance(self._phase, Final):
            phase["final"] = self._phase.to_dict()
            phase["overrun_reported"] = phase["final"].pop("overrun_reported")
            del phase["final"]["done"]
        phase["warmup"] = self._phase.to_dict() if isinstance(self._phase, Warmup) else None
        phase["range_test"] = (
            self._phase.to_dict() if isinstance(self._phase, RangeTest) else None
        )
        return {**inner, **phase}


_V1_RUN_KEYS = (
    "started", "step", "lr", "stage", "nominal_tau", "tau_max", "stages_at_max", "search_range",
    "recent", "stage_reference", "stage_spread", "lr_cap", "range_auto", "initial_loss",
    "last_lr", "rollbacks", "failure", "default_lr",
)
_V1_PHASE_KEYS = ("phase", "plan", "results", "winner", "winner_slot", "exploit")


def _run_from_v1(s: dict[str, Any]) -> Run:
    return Run(
        taus=TauPlan(int(s["nominal_tau"]), int(s["tau_max"]), int(s["stages_at_max"])),
        step=int(s["step"]),
        lr=s["lr"],
        stage=int(s["stage"]),
        last_lr=s["last_lr"],
        rollbacks=int(s["rollbacks"]),
        failure=s["failure"],
        level=CommittedLevel(
            list(s["recent"]), s["stage_reference"], s["stage_spread"], s["initial_loss"]
        ),
        space=SearchSpace(
            None if s["search_range"] is None else list(s["search_range"]),
            s["lr_cap"],
            bool(s["range_auto"]),
        ),
        default_lr=s["default_lr"],
        started=bool(s["started"]),
    )


def _upgrade(s: dict[str, Any]) -> None:
    """Fills in, in a state written before retries, phase checkpoints and the warm-up, the fields
    they use."""
    s.setdefault("warmup", None)
    for phase_state in (s.get("exploit"), s.get("final")):
        if phase_state is not None:
            phase_state.setdefault("checkpoint_step", phase_state["start_step"])
    if s.get("exploit") is not None:
        s["exploit"].setdefault("lift", False)
    if s.get("trial") is not None:
        s["trial"].setdefault("retries", 0)
    rt = s.get("range_test")
    if rt is not None:
        rt.setdefault("origin", rt["start_step"])
        for key, value in (("first_index", 0), ("retries", 0), ("refined", False)):
            rt.setdefault(key, value)
