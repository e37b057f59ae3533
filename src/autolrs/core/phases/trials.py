"""Trials: a stage tries ``k`` candidate learning rates for ``tau'`` steps each.

Each trial starts from the stage snapshot, trains at its rate and is scored by its loss series
extrapolated to the stage's horizon (the forecaster), or, with ``Config.anneal_fraction``, by its
loss after a short decay. The searcher proposes each rate and is told each score. A trial that
diverges is scored as such; a non-finite result in a calm trial is retried once. With
``Config.keep_winner`` the best trial's state is kept so that the exploit phase continues it.

Two options belong to this phase alone and stay although they lost in ablation:
``Config.anneal_fraction`` (cooled trials) and ``Config.later_candidates`` (cheaper later
searches): the next method work builds on them (see ``docs/architecture.md``).

Edges: after the stage's last trial, :data:`Edge.EXPLOIT` with a
:class:`~autolrs.core.phases.stage.StageOutcome`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from autolrs.core import codec
from autolrs.core.actions import STAGE, WINNER, Action, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.expand import ExpandSearcher
from autolrs.core.forecast import CurveFit
from autolrs.core.level import EXPLODED, trial_level
from autolrs.core.phases.base import (
    Abort,
    BasePhase,
    Context,
    Edge,
    Loss,
    Observation,
    Outlook,
    Phase,
    Spent,
    Transition,
    Validation,
    constant,
    finite,
)
from autolrs.core.phases.stage import StageOutcome, TrialPlan, TrialResult, Winner, summary
from autolrs.core.phases.trial_plan import (
    choose,
    eligible,
    held_first,
    new_searcher,
    optimizer_lr,
    restore_searcher,
    start_rate_said,
)
from autolrs.core.search import Searcher
from autolrs.core.selection import select

__all__ = ["Trial", "Trials", "trial_rate"]

_FAULT_RETRIES = 1  # non-finite results a calm trial may roll back from


@dataclass
class Trial:
    """The running trial.

    Attributes:
        index: Its position in the stage (0-based).
        lr: Its learning rate.
        start_step: Where it (or its retry) started.
        steps: Steps trained.
        x: Positions of the scored losses (steps, or evaluation indices).
        y: The scored losses.
        tail: The last 3 training losses.
        evals: Evaluations done.
        retries: Non-finite results rolled back from.
    """

    index: int
    lr: float
    start_step: int
    steps: int = 0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)
    evals: int = 0
    retries: int = codec.since(0, default=0)

    def restart(self, step: int) -> None:
        """Starts again from the stage snapshot at ``step`` (retries are kept)."""
        self.start_step, self.steps, self.evals = step, 0, 0
        self.x, self.y, self.tail = [], [], []


class Trials(BasePhase):
    """The stage's trials.

    Attributes:
        plan: How they run.
        trial: The running trial.
        results: The finished trials.
        winner: The best trial whose state is kept.
        winner_slot: Whether the ``WINNER`` slot holds a state.
        awaiting: Whether an evaluation was asked for.
        measuring: Whether that evaluation measures the stage's start (an expanding search in
            validation mode: the loss every trial starts from, which tells a rate far too small
            from one that does nothing).
        searcher: The stage's searcher.
    """

    name = Phase.TRIAL
    in_trial = True

    def __init__(
        self,
        ctx: Context,
        plan: TrialPlan,
        searcher: Searcher,
        trial: Trial | None = None,
        results: list[TrialResult] | None = None,
        winner: Winner | None = None,
        winner_slot: bool = False,
        awaiting: bool = False,
        measuring: bool = False,
    ) -> None:
        super().__init__(ctx)
        self.plan = plan
        self.searcher = searcher
        self.trial = trial or Trial(0, 0.0, plan.start_step)
        self.results: list[TrialResult] = results or []
        self.winner = winner
        self.winner_slot = winner_slot
        self.awaiting = awaiting
        self.measuring = measuring

    @classmethod
    def start(cls, ctx: Context, plan: TrialPlan) -> Trials:
        """The phase for a new stage, with a fresh searcher over the plan's interval (an
        :class:`~autolrs.core.expand.ExpandSearcher` from the held rate with
        ``Config.expand_factor``)."""
        return cls(ctx, plan, new_searcher(ctx, plan))

    @property
    def awaiting_validation(self) -> bool:
        return self.awaiting

    def begin(self, previous: list[TrialResult]) -> Transition:
        """Starts the stage: its reference level, warm-start priors, the first trial."""
        ctx, cfg, plan = self.ctx, self.ctx.config, self.plan
        prev_reference = ctx.run.level.begin_stage()
        said = start_rate_said(ctx)
        if said is not None:
            ctx.emit("start_rate", **said)
        healthy = [r for r in previous if not r.diverged]
        if cfg.warm_start and healthy and prev_reference is not None:
            for r in healthy:
                assert r.value is not None  # healthy results have a score
                self.searcher.add_prior(r.lr, r.value - prev_reference)
        ctx.emit(
            "stage",
            stage=ctx.run.stage,
            tau=plan.tau,
            trial_steps=plan.trial_steps,
            candidates=plan.candidates,
            mode=plan.mode,
            val_every=plan.val_every,
            anneal_steps=plan.anneal_steps,
            search_range=[plan.search_low, plan.search_high],
            reference_loss=ctx.run.level.reference,
        )
        actions = (Snapshot(STAGE), *self._next_trial())
        if isinstance(self.searcher, ExpandSearcher) and plan.mode == "validation":
            self.measuring = self.awaiting = True
            return Transition((*actions, Evaluate()))
        return Transition(actions)

    def _next_trial(self) -> tuple[Action, ...]:
        low, high, previous = self.plan.search_low, self.plan.search_high, self.ctx.run.last_lr
        user = optimizer_lr(self.ctx)
        if user is not None and not self.results and not isinstance(self.searcher, ExpandSearcher):
            lr = user  # (an expanding search starts at its centre: trial_plan.first_center)
        elif (
            self.ctx.config.start_at_previous
            and not self.results
            and previous is not None
            and low * (1 - 1e-9) <= previous <= high * (1 + 1e-9)
        ):
            # The natural baseline: carry on as before (clipped against rounding at the edges).
            lr = float(min(max(previous, low), high))
        elif self.plan.candidates == 1 and not self.results:
            # A stage that holds: the previous stage's rate, or, first, the range's pick.
            first = None if previous is not None else held_first(self.ctx)
            lr = float(previous) if previous is not None else (high if first is None else first)
        else:
            lr = self.searcher.ask()
        if self.plan.candidates == 1 and not self.results and previous is None:
            self.ctx.run.held_lr = lr  # the first stage holds it: the search looks above it
        self.trial = Trial(len(self.results), lr, self.ctx.run.step)
        self.ctx.run.lr = self.rate(1)  # a trial that warms up starts low
        return (SetLR(self.ctx.run.lr),)

    def rate(self, step: int) -> float:
        """The running trial's rate at its ``step``-th step (1-based)."""
        plan = self.plan
        return trial_rate(self.trial.lr, plan.trial_steps, plan.anneal_steps, step, plan.ramp_steps)

    # ------------------------------------------------------------------ observations
    def observe(self, observation: Observation) -> Transition:
        if isinstance(observation, Loss):
            return self._loss(observation.value, observation.model_finite)
        if isinstance(observation, Validation):
            return self._validation(observation.value)
        if isinstance(observation, Abort):
            return self._restart(observation.reason)
        if isinstance(observation, Spent):
            self.trial.start_step = self.ctx.run.step
        return Transition()

    def _commits_next(self) -> bool:
        """Whether the next step ends the trial with its state kept (so it must be finite)."""
        return bool(self.ctx.config.keep_winner) and self.trial.steps + 1 >= self.plan.trial_steps

    def _loss(self, loss: float, model_finite: bool) -> Transition:
        t, plan = self.trial, self.plan
        finite_check = self._commits_next()
        t.steps += 1
        if not math.isfinite(loss):
            return self._fault("non-finite loss")
        diverged = self._divergence(loss)
        if diverged is not None:
            return self._end(diverged=diverged)
        if finite_check and not model_finite:
            return self._fault("non-finite parameters")
        if plan.mode == "train":
            t.x.append(float(t.steps - 1))
            t.y.append(loss)
        elif t.steps % (plan.val_every or 1) == 0:
            self.awaiting = True
            return Transition((Evaluate(),))
        if t.steps >= plan.trial_steps:
            return self._end()
        if self._should_stop_early():
            return self._end(early_stopped=True)
        if plan.anneal_steps or plan.ramp_steps:
            lr = self.rate(t.steps + 1)
            if lr != self.ctx.run.lr:
                self.ctx.run.lr = lr
                return Transition((SetLR(lr),))
        return Transition()

    def _divergence(self, loss: float) -> str | None:
        """Why the running trial has diverged with this (finite) loss, or None.

        The stage's first loss also sets (or lifts) the stage's reference level.
        """
        cfg, t, level = self.ctx.config, self.trial, self.ctx.run.level
        if level.reference is None:
            level.reference = loss
        if level.initial is None:
            level.initial = loss
        if t.steps == 1 and not self.results:
            # The stage's first loss is computed before any step at a candidate's rate. When it
            # lies clearly above the committed level (the steps before the snapshot spiked), the
            # stage starts there: otherwise every candidate looks divergent and the guard judges
            # the stage against a level no rate can reach, ratcheting the ceiling down.
            level.reference = level.lifted(loss, level.reference)
        reference = level.reference
        if abs(loss) > EXPLODED * max(abs(reference), 1.0):
            return f"loss exploded to {loss:.4g}"
        t.tail = (t.tail + [loss])[-3:]
        recent = level.diverged(t.tail, cfg.divergence_factor)
        if recent is None:
            return None
        return f"loss {recent:.4g} > {cfg.divergence_factor:g} x stage start {reference:.4g}"

    def _validation(self, value: float) -> Transition:
        t = self.trial
        self.awaiting = False
        if self.measuring:  # the stage's start, before any trial step
            self.measuring = False
            if finite(value):
                assert isinstance(self.searcher, ExpandSearcher)  # only it measures
                self.searcher.reference = float(value)
            return Transition()
        if not finite(value):
            return self._fault("non-finite validation loss")
        t.x.append(float(t.evals))  # x = 0, 1, ... as in the reference code
        t.evals += 1
        t.y.append(float(value))
        if t.steps >= self.plan.trial_steps:
            return self._end()
        return Transition()

    def _fault(self, reason: str) -> Transition:
        """A non-finite result in a trial: divergence, or, once per trial, a one-off fault.

        A trial whose losses were calm so far (their recent mean at most the stage's start level
        plus its noise; always for the first loss, which no step at the candidate's rate has
        touched) is restarted from the stage snapshot: one bad batch must not veto a rate. A
        second non-finite result, or one after rising losses, is divergence.
        """
        t = self.trial
        if t.retries < _FAULT_RETRIES and self.ctx.run.level.calm(t.tail):
            t.retries += 1
            return self._restart(f"{reason} (retrying the candidate once)")
        return self._end(diverged=reason)

    def _restart(self, reason: str) -> Transition:
        """Rolls the running trial back to the stage snapshot and starts it again."""
        t, run = self.trial, self.ctx.run
        self.awaiting = self.measuring = False
        self.ctx.emit("rollback", phase=Phase.TRIAL, reason=reason, restored=STAGE, lr=t.lr)
        t.restart(run.step)
        run.lr = t.lr
        return Transition((Restore(STAGE), SetLR(self.rate(1))))

    def _early_stop_step(self) -> int | None:
        """The trial step at which early stopping is considered (None when it is off)."""
        frac, plan = self.ctx.config.early_stop_fraction, self.plan
        if frac is None or plan.mode != "train" or plan.anneal_steps:
            return None
        step = max(4, int(math.ceil(frac * plan.trial_steps)))
        return step if step < plan.trial_steps else None

    def _should_stop_early(self) -> bool:
        """Whether even an optimistic forecast of the running trial cannot beat the best."""
        t, plan = self.trial, self.plan
        if t.steps != self._early_stop_step():
            return False
        healthy = [r for r in self.results if not r.diverged]
        if not healthy:
            return False
        best = select(healthy).value
        fit = self.ctx.make_forecaster(False).fit(t.x, t.y, horizon=plan.horizon)
        optimistic = fit.predict(plan.horizon) - 2.0 * fit.noise
        return best is not None and optimistic > best

    # ------------------------------------------------------------------ the end of a trial
    def _end(self, *, diverged: str | None = None, early_stopped: bool = False) -> Transition:
        """Scores and records the running trial, then starts the next or ends the stage."""
        self.awaiting = False
        if diverged is None and not self.trial.y:
            diverged = "no observation"
        value, fit = (None, None) if diverged is not None else self._score()
        self._record(value, fit, diverged, early_stopped)
        return self._after(value, early_stopped)

    def _score(self) -> tuple[float, CurveFit | None]:
        """The running trial's score: its forecast at the horizon, or its loss after the decay."""
        t, plan = self.trial, self.plan
        if plan.anneal_steps:
            # Judged after the anneal: every candidate's noise is gone; what is left is progress.
            last = max(2, plan.anneal_steps // 2) if plan.mode == "train" else 1
            return float(np.mean(t.y[-last:])), None
        fit = self.ctx.make_forecaster(plan.mode == "validation").fit(
            t.x, t.y, horizon=plan.horizon
        )
        value = fit.predict(plan.horizon)
        initial = self.ctx.run.level.initial
        if plan.mode == "validation" and initial is not None and max(t.y) >= initial:
            value = float(t.y[-1])  # the reference code's divergence fallback
        return value, fit

    def _record(
        self, value: float | None, fit: CurveFit | None, diverged: str | None, early_stopped: bool
    ) -> None:
        """Adds the trial's result, tells the searcher, emits the candidate event."""
        ctx, t = self.ctx, self.trial
        level, level_spread = trial_level(t.tail)
        self.results.append(TrialResult(
            index=t.index, lr=t.lr, value=value, diverged=diverged is not None, reason=diverged,
            early_stopped=early_stopped, steps=t.steps, start_step=t.start_step, level=level,
            level_spread=level_spread,
        ))
        told, reference = value, ctx.run.level.reference
        if value is not None and ctx.config.warm_start and reference is not None:
            told = value - reference
        self.searcher.tell(t.lr, told, diverged=diverged is not None)
        ctx.emit(
            "candidate",
            stage=ctx.run.stage,
            index=t.index,
            lr=t.lr,
            start=t.start_step,
            end=ctx.run.step,
            steps=t.steps,
            mode=self.plan.mode,
            losses=summary(t.y),
            forecast=value,
            fit=None if fit is None else fit.to_dict(),
            diverged=diverged is not None,
            reason=diverged,
            early_stopped=early_stopped,
        )
        ctx.segment("trial", t.start_step, lr=t.lr, committed=False)

    def _after(self, value: float | None, early_stopped: bool) -> Transition:
        """Keeps the winner's state, then starts the next trial or hands the stage over."""
        cfg, t = self.ctx.config, self.trial
        healthy = eligible(self.results, self.searcher)
        is_best = (
            value is not None
            and any(r.index == t.index for r in healthy)
            and choose(self.ctx, healthy, self.searcher).index == t.index
        )
        last = len(self.results) >= self.plan.candidates or self.searcher.exhausted
        actions: list[Action] = []
        if cfg.keep_winner and is_best and not early_stopped:
            self.winner = Winner(t.index, t.steps, last)
            if not last:
                actions.append(Snapshot(WINNER))
                self.winner_slot = True
        if not last:
            actions.append(Restore(STAGE))
            return Transition(tuple(actions) + self._next_trial())
        outcome = StageOutcome(
            self.plan,
            self.results,
            self.winner,
            self.winner_slot,
            self.searcher,
        )
        return Transition(tuple(actions), next=Edge.EXPLOIT, handoff=outcome)

    # ------------------------------------------------------------------ outlook and state
    def outlook(self) -> Outlook:
        t, plan = self.trial, self.plan
        if self.awaiting:
            quiet = 0
        elif plan.mode == "validation":
            every = plan.val_every or 1
            quiet = max(0, every - (t.steps % every) - 1)
        else:
            left = plan.trial_steps - t.steps - 1
            check = self._early_stop_step()
            if check is not None and t.steps < check:
                left = min(left, check - t.steps - 1)
            quiet = max(0, left)
        rates = constant(self.ctx.run.lr or 0.0)
        if plan.anneal_steps or plan.ramp_steps:
            rates = partial(
                _ahead, t.lr, plan.trial_steps, plan.anneal_steps, plan.ramp_steps, t.steps + 1
            )
        return Outlook(quiet, self._commits_next(), rates)

    def to_dict(self) -> dict[str, Any]:
        return {**codec.to_dict(self, _Saved), "searcher": self.searcher.state_dict()}

    @classmethod
    def from_dict(cls, ctx: Context, data: dict[str, Any]) -> Trials:
        """Rebuilds :meth:`to_dict`'s output."""
        state = codec.fields_from(_Saved, data)
        plan = state.pop("plan")
        return cls(ctx, plan, restore_searcher(ctx, plan, data["searcher"]), **state)


@dataclass
class _Saved:
    """What the trials phase saves, besides its searcher (:mod:`autolrs.core.codec`)."""

    plan: TrialPlan
    trial: Trial
    results: list[TrialResult]
    winner: Winner | None
    winner_slot: bool
    awaiting: bool = codec.key("awaiting_validation")
    measuring: bool = codec.since(False)


def trial_rate(lr: float, trial_steps: int, anneal: int, step: int, ramp: int = 0) -> float:
    """A trial's rate at its ``step``-th step (1-based): rising linearly over its first
    ``ramp`` steps, constant, then, with ``Config.anneal_fraction``, decaying linearly over the
    trial's last ``anneal`` steps."""
    if step <= ramp:
        return float(lr) * step / (ramp + 1)
    if step <= trial_steps - anneal:
        return float(lr)
    return float(lr) * (trial_steps + 1 - step) / (anneal + 1)


def _ahead(lr: float, trial_steps: int, anneal: int, ramp: int, first: int, ahead: int) -> float:
    return trial_rate(lr, trial_steps, anneal, first + ahead, ramp)
