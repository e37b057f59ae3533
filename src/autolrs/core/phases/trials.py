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
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from autolrs.core._rng import spawn
from autolrs.core.actions import STAGE, WINNER, Action, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.forecast import CurveFit
from autolrs.core.level import robust_std
from autolrs.core.phases.base import (
    Abort, BasePhase, Context, Edge, Loss, Observation, Outlook, Phase, Spent, Transition,
    Validation, constant, finite,
)
from autolrs.core.phases.stage import StageOutcome, TrialPlan, TrialResult, Winner
from autolrs.core.planning import decay_length, plan_stage
from autolrs.core.search import Searcher
from autolrs.core.selection import select

__all__ = ["Trial", "Trials", "anchored_rate", "incumbent_rule", "plan_trials"]

_FAULT_RETRIES = 1  # non-finite results a calm trial may roll back from
_EXPLODED = 1e6  # a trial loss this many times the stage's start has diverged (any config)


def _optimizer_lr(ctx: Context) -> float | None:
    """The optimizer's own rate when the first stage tries it first (``Config.try_optimizer_lr``):
    only before any stage committed, and only below half a rate known to break training."""
    run = ctx.run
    if not ctx.config.try_optimizer_lr or run.last_lr is not None or run.default_lr is None:
        return None
    return float(run.default_lr) if run.space.admits(run.default_lr) else None


def _held_first(ctx: Context) -> float | None:
    """The rate a first stage that holds trains at (before any commit, with
    ``Config.try_optimizer_lr``): the optimizer's own, or, when the range test found it
    unusable, the range's pick (:meth:`SearchSpace.pick`)."""
    user = _optimizer_lr(ctx)
    if user is not None or not ctx.config.try_optimizer_lr or ctx.run.space.range is None:
        return user
    return ctx.run.space.pick(ctx.config.range_test_bounds[1])


def anchored_rate(ctx: Context) -> float | None:
    """The rate the first stage held (the optimizer's own, or the range's pick when that one
    is unusable) when the next (or running) search follows it and looks only above it
    (``Config.search_upward``); None otherwise."""
    cfg, run = ctx.config, ctx.run
    previous = run.last_lr
    if not (cfg.search_upward and cfg.try_optimizer_lr and cfg.stage_candidates):
        return None
    if ctx.total_steps is None or previous is None:
        return None
    # The rate recorded when it was held (a state saved before it was recorded: the optimizer's).
    held = run.held_lr if run.held_lr is not None else run.default_lr
    if held is not None and math.isclose(previous, held, rel_tol=1e-9):
        return previous
    return None


def incumbent_rule(ctx: Context) -> dict[str, float | None]:
    """The keyword arguments of :func:`~autolrs.core.selection.select` for this stage: keep the
    held rate within ``keep_incumbent_within`` in an anchored search, else prefer larger rates
    within ``prefer_larger_within``."""
    held = anchored_rate(ctx)
    if held is not None and ctx.config.keep_incumbent_within is not None:
        return {"incumbent": held, "keep_incumbent_within": ctx.config.keep_incumbent_within}
    return {"prefer_larger_within": ctx.config.prefer_larger_within}


def _search_interval(ctx: Context) -> tuple[float, float]:
    """Where the next stage searches.

    The range, narrowed to the trust region around the previous stage's rate. A range the range
    test found is a guess, so the trust region may reach past it (never above half a rate known
    to break training); before any commit the range reaches up to the optimizer's rate when the
    first stage tries it.
    """
    cfg, run = ctx.config, ctx.run
    low, high = run.space.around(run.last_lr, cfg.trust_region)
    previous, factor, space = run.last_lr, cfg.trust_region, run.space
    staged = cfg.stage_candidates and ctx.total_steps is not None
    if space.auto and previous is not None and factor is not None and staged:
        ceiling = math.inf if space.cap is None else space.cap / 2.0
        if previous / factor < ceiling:
            low, high = previous / factor, min(previous * factor, ceiling)
    user = _optimizer_lr(ctx)
    if user is not None:
        high = max(high, user)
    if anchored_rate(ctx) is not None and factor is not None:
        assert previous is not None  # an anchored search follows a held rate
        # Holding the user's own rate: only larger rates are tried (see Config.search_upward).
        ceiling = math.inf if space.cap is None else space.cap / 2.0
        bound = math.inf if space.auto else space.bounds[1]
        top = min(previous * factor, ceiling, bound)
        if top > previous * 1.01:
            low, high = previous, top
    return low, high


def plan_trials(ctx: Context) -> TrialPlan | None:
    """The next stage's trials, fitted inside the budget (None: no stage fits any more)."""
    cfg, run = ctx.config, ctx.run
    remaining = None
    if ctx.total_steps is not None:
        remaining = ctx.total_steps - run.step - decay_length(cfg, ctx.total_steps)
    k = cfg.later_candidates if run.stage >= 1 and cfg.later_candidates else cfg.candidates
    if cfg.stage_candidates and ctx.total_steps is not None:
        k = cfg.stage_candidates[min(run.stage, len(cfg.stage_candidates) - 1)]
        if k == 1 and run.last_lr is None and _held_first(ctx) is None:
            k = cfg.candidates  # nothing to hold: no optimizer rate and no range
    plan = plan_stage(cfg, run.taus.nominal, run.taus.maximum, remaining, k)
    if plan is None:
        return None
    mode = "train"
    if ctx.validation and cfg.objective != "train":
        paper_switch = cfg.objective == "paper" and run.taus.stages_at_max < 1
        mode = "train" if paper_switch else "validation"
    trial_steps = plan.trial_steps
    anneal = 0
    if cfg.anneal_fraction is not None and plan.candidates > 1:
        anneal = min(trial_steps - 1, max(2, int(round(cfg.anneal_fraction * trial_steps))))
    val_every = None
    if mode == "validation":
        # Evaluate every val_every steps; a trial ends on an evaluation. An annealed trial is
        # judged by one evaluation at its end.
        val_every = trial_steps if anneal else max(1, trial_steps // cfg.val_points)
        trial_steps = (trial_steps // val_every) * val_every
    # The reference code forecasts a validation series at int(tau / val_every) evaluations.
    horizon = plan.tau if val_every is None else plan.tau // val_every
    low, high = _search_interval(ctx)
    return TrialPlan(
        trial_steps, plan.candidates, plan.tau, mode, val_every, anneal, horizon, run.step, low,
        high,
    )


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
    retries: int = 0

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
    ) -> None:
        super().__init__(ctx)
        self.plan = plan
        self.searcher = searcher
        self.trial = trial or Trial(0, 0.0, plan.start_step)
        self.results: list[TrialResult] = results or []
        self.winner = winner
        self.winner_slot = winner_slot
        self.awaiting = awaiting

    @classmethod
    def start(cls, ctx: Context, plan: TrialPlan) -> Trials:
        """The phase for a new stage, with a fresh searcher over the plan's interval."""
        return cls(ctx, plan, ctx.make_searcher(plan.search_low, plan.search_high, spawn(ctx.rng)))

    @property
    def awaiting_validation(self) -> bool:
        return self.awaiting

    def begin(self, previous: list[TrialResult]) -> Transition:
        """Starts the stage: its reference level, warm-start priors, the first trial."""
        ctx, cfg, plan = self.ctx, self.ctx.config, self.plan
        prev_reference = ctx.run.level.begin_stage()
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
        return Transition((Snapshot(STAGE), *self._next_trial()))

    def _next_trial(self) -> tuple[Action, ...]:
        low, high, previous = self.plan.search_low, self.plan.search_high, self.ctx.run.last_lr
        user = _optimizer_lr(self.ctx)
        if user is not None and not self.results:
            lr = user
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
            first = None if previous is not None else _held_first(self.ctx)
            lr = float(previous) if previous is not None else (high if first is None else first)
        else:
            lr = self.searcher.ask()
        if self.plan.candidates == 1 and not self.results and previous is None:
            self.ctx.run.held_lr = lr  # the first stage holds it: the search looks above it
        self.trial = Trial(len(self.results), lr, self.ctx.run.step)
        self.ctx.run.lr = lr
        return (SetLR(lr),)

    def rate(self, step: int) -> float:
        """The running trial's rate at its ``step``-th step (1-based)."""
        return _rate(self.trial.lr, self.plan.trial_steps, self.plan.anneal_steps, step)

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
        if plan.anneal_steps:
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
        if abs(loss) > _EXPLODED * max(abs(reference), 1.0):
            return f"loss exploded to {loss:.4g}"
        t.tail = (t.tail + [loss])[-3:]
        recent = level.diverged(t.tail, cfg.divergence_factor)
        if recent is None:
            return None
        return f"loss {recent:.4g} > {cfg.divergence_factor:g} x stage start {reference:.4g}"

    def _validation(self, value: float) -> Transition:
        t = self.trial
        self.awaiting = False
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
        self.awaiting = False
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
        self.results.append(
            TrialResult(
                index=t.index,
                lr=t.lr,
                value=value,
                diverged=diverged is not None,
                reason=diverged,
                early_stopped=early_stopped,
                steps=t.steps,
                start_step=t.start_step,
                level=float(np.median(t.tail)) if t.tail else None,
                level_spread=robust_std(t.tail) if len(t.tail) >= 3 else None,
            )
        )
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
            losses=_summary(t.y),
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
        healthy = [r for r in self.results if not r.diverged]
        is_best = (
            value is not None
            and select(healthy, **incumbent_rule(self.ctx)).index == t.index
        )
        last = len(self.results) >= self.plan.candidates
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
        if plan.anneal_steps:
            rates = partial(_ahead, t.lr, plan.trial_steps, plan.anneal_steps, t.steps + 1)
        return Outlook(quiet, self._commits_next(), rates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "trial": asdict(self.trial),
            "results": [r.to_dict() for r in self.results],
            "winner": None if self.winner is None else self.winner.to_dict(),
            "winner_slot": self.winner_slot,
            "awaiting_validation": self.awaiting,
            "searcher": self.searcher.state_dict(),
        }

    @classmethod
    def from_dict(cls, ctx: Context, data: dict[str, Any]) -> Trials:
        """Rebuilds :meth:`to_dict`'s output."""
        plan = TrialPlan.from_dict(data["plan"])
        searcher = ctx.make_searcher(plan.search_low, plan.search_high, None)
        searcher.load_state_dict(data["searcher"])
        winner = data["winner"]
        return cls(
            ctx,
            plan,
            searcher,
            trial=Trial(**{"retries": 0, **data["trial"]}),
            results=[TrialResult.from_dict(r) for r in data["results"]],
            winner=None if winner is None else Winner.from_dict(winner),
            winner_slot=bool(data["winner_slot"]),
            awaiting=bool(data["awaiting_validation"]),
        )


def _rate(lr: float, trial_steps: int, anneal: int, step: int) -> float:
    """A trial's rate at its ``step``-th step (1-based): constant, then, with
    ``Config.anneal_fraction``, decaying linearly over the trial's last ``anneal`` steps."""
    if step <= trial_steps - anneal:
        return float(lr)
    return float(lr) * (trial_steps + 1 - step) / (anneal + 1)


def _ahead(lr: float, trial_steps: int, anneal: int, first: int, ahead: int) -> float:
    return _rate(lr, trial_steps, anneal, first + ahead)


def _summary(y: list[float]) -> dict[str, Any]:
    """The event summary of a loss series."""
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
