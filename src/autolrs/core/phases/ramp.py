"""Ramp: the first stage's rate found by training upward, keeping the steps.

It runs at every budget with ``Config.ramp()`` (``ramp_segment_fraction``), and in the default
where the budget is too small for the range test and the first search
(``Config.small_budget_ramp``, :func:`~autolrs.core.planning.ramp_fraction`: about 150 to 400
steps); then it stands in for both, and the stages after it hold the rate it settled at.

The rate rises by ``Config.expand_factor`` per segment of ``Config.ramp_segment_fraction`` of the
budget. It begins 100x (``expand_steps`` steps) below the optimizer's rate, or, when a range is
known (``lr_range`` given), at its low end. After each segment the model is judged on the
validation loss (without ``val_fn``: the mean training loss of the segment's second half): a
segment whose score did not rise beyond ``Config.expand_margin`` of the best so far is kept
and the rate rises; the first that rose (or gave a non-finite result) is rolled back, and the
ramp settles ``Config.ramp_edge_steps`` steps below that rate (below its first rate too, unless a
range is known). If that was the ramp's very first
rate, it starts again 10x lower instead (the optimizer's rate was far too high). Only rolled-back
segments are discarded: the steps kept are an exponential warm-up. Without a range test, the
ramp sets the search space (from the lower of its first rate and the settled one to the rate
that failed; a non-finite failure caps the search at half of it). A given range also caps the
ramp. With ``Config.ramp()`` the stages then search upward from the settled rate
(:func:`~autolrs.core.phases.trial_plan.expand_center`); in the default they hold it.

Edges: at its end, :data:`Edge.STAGE` (the first stage), having set ``Run.last_lr`` to the
settled rate (the stages treat it as committed) and ``Run.ramped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autolrs.core import codec
from autolrs.core.actions import STAGE, Action, Evaluate, Restore, SetLR, Snapshot
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
)
from autolrs.core.planning import ramp_fraction

__all__ = ["Ramp", "ramp_plan"]

_RETRIES = 1  # a failing validation function re-runs the segment once


@dataclass
class _Saved:
    """What a ramp saves (:mod:`autolrs.core.codec`; see :class:`Ramp`)."""

    lr: float
    first: float
    segment: int
    last_step: int
    start_step: int
    done: int
    before: float | None
    losses: list[float]
    path: list[list[float | None]]
    awaiting: bool
    retries: int
    descents: int


def ramp_plan(ctx: Context) -> tuple[float, int, int] | None:
    """The ramp's first rate, segment length and last step (None: no ramp with these settings,
    or too small a budget for three segments before the stages)."""
    cfg, run = ctx.config, ctx.run
    fraction = ramp_fraction(cfg, ctx.total_steps, range_test=run.space.range is None)
    if fraction is None or ctx.total_steps is None or cfg.expand_factor is None:
        return None
    if run.last_lr is not None:
        return None  # a stage committed, or the ramp ran
    space = run.space
    segment = max(cfg.min_trial_steps // 2, int(round(fraction * ctx.total_steps)))
    last = run.step + int(cfg.ramp_max_fraction * ctx.total_steps)
    # Config.ramp() needs three segments; the default's small-budget ramp room to climb from
    # 100x below the optimizer's rate to 100x above it (under about 150 steps it has not).
    small = cfg.ramp_segment_fraction is None
    if last - run.step < (2 * cfg.expand_steps + 1 if small else 3) * segment:
        return None
    if space.range is not None and not (space.auto and space.floor is None):
        low = space.floor if space.floor is not None else space.bounds[0]
    elif run.default_lr is not None:
        low = run.default_lr / cfg.expand_factor**cfg.expand_steps  # from well below the hint
    else:
        return None  # nowhere to start from: the range test finds the range
    return float(low), segment, last


class Ramp(BasePhase):
    """The ramp.

    Attributes:
        lr: The current segment's rate.
        first: The ramp's first rate (within a given range it never settles below it).
        segment: Steps per segment.
        last_step: The step by which the ramp ends even if every segment helped.
        start_step: Where the current segment began.
        done: Steps done in the current segment.
        before: The score the current segment must beat (None: measured at the segment's start).
        losses: The current segment's training losses.
        path: ``[rate, score]`` of each judged segment.
        awaiting: Whether an evaluation was asked for.
        retries: Segments re-run after the validation function failed.
        descents: Times the first rate did not help and the ramp started 10x lower.
    """

    name = Phase.RAMP
    in_trial = True

    def __init__(self, ctx: Context, **state: Any) -> None:
        super().__init__(ctx)
        self.lr: float = float(state.get("lr", 0.0))
        self.first: float = float(state.get("first", self.lr))
        self.segment: int = int(state.get("segment", 1))
        self.last_step: int = int(state.get("last_step", 0))
        self.start_step: int = int(state.get("start_step", 0))
        self.done: int = int(state.get("done", 0))
        self.before: float | None = state.get("before")
        self.losses: list[float] = [float(v) for v in state.get("losses", [])]
        self.path: list[list[float | None]] = [list(p) for p in state.get("path", [])]
        self.awaiting: bool = bool(state.get("awaiting", False))
        self.retries: int = int(state.get("retries", 0))
        self.descents: int = int(state.get("descents", 0))

    @property
    def awaiting_validation(self) -> bool:
        return self.awaiting

    def begin(self) -> Transition:
        """Starts the first segment (measuring where it starts when ``val_fn`` is given)."""
        plan = ramp_plan(self.ctx)
        assert plan is not None  # the controller enters the ramp only when it has a plan
        self.lr, self.segment, self.last_step = plan
        self.first = self.lr
        self.start_step, self.done = self.ctx.run.step, 0
        self.ctx.run.lr = self.lr
        actions: tuple[Action, ...] = (Snapshot(STAGE), SetLR(self.lr))
        if self.ctx.validation:
            self.awaiting = True
            return Transition((*actions, Evaluate()))
        return Transition(actions)

    # ------------------------------------------------------------------ observations
    def observe(self, observation: Observation) -> Transition:
        if isinstance(observation, Loss):
            return self._loss(observation.value, observation.model_finite)
        if isinstance(observation, Validation):
            return self._validation(observation.value)
        if isinstance(observation, Abort):
            return self._abort(observation.reason)
        if isinstance(observation, Spent):
            self.done += observation.steps
        return Transition()

    def _loss(self, loss: float, model_finite: bool) -> Transition:
        self.done += 1
        at_end = self.done >= self.segment
        if not math.isfinite(loss) or (at_end and not model_finite):
            reason = "non-finite loss" if not math.isfinite(loss) else "non-finite parameters"
            return self._settle(failed=reason, diverged=True)
        self.losses.append(float(loss))
        if not at_end:
            return Transition()
        if self.ctx.validation:
            self.awaiting = True
            return Transition((Evaluate(),))
        half = self.losses[len(self.losses) // 2 :]
        return self._judge(sum(half) / len(half))

    def _validation(self, value: float) -> Transition:
        self.awaiting = False
        if self.done == 0 and self.before is None:  # the ramp's start
            self.before = float(value) if math.isfinite(value) else None
            return Transition()
        return self._judge(float(value))

    def _judge(self, score: float) -> Transition:
        """Commits a segment that lowered the score and raises the rate; settles otherwise."""
        self.path.append([self.lr, score if math.isfinite(score) else None])
        if not math.isfinite(score):
            return self._settle(failed="non-finite score", diverged=True)
        if self.before is not None and score > self.before + self._margin():
            return self._settle(failed=f"score {score:.4g} above {self.before:.4g}")
        ctx, run = self.ctx, self.ctx.run
        ctx.segment("warmup", self.start_step, lr=self.lr, committed=True, ramp=True)
        run.rollbacks = 0
        run.level.recent = (run.level.recent + self.losses[-4:])[-4:]
        self.before = score if self.before is None else min(score, self.before)
        self.losses, self.done = [], 0
        self.start_step = run.step
        factor = ctx.config.expand_factor
        assert factor is not None  # ramp_plan requires it
        top = min(run.space.ceiling, ctx.config.range_test_bounds[1])
        if run.space.range is not None and not run.space.auto:
            top = min(top, run.space.range[1])  # a given range is a bound
        if run.step + self.segment > self.last_step or self.lr * factor > top:
            return self._end(self.lr, reason="every segment helped")
        self.lr *= factor
        run.lr = self.lr
        return Transition((Snapshot(STAGE), SetLR(self.lr)))

    def _margin(self) -> float:
        """How far the score may rise in a segment before the rate counts as too high: the
        expanding search's noise margin (``Config.expand_margin``) of the score."""
        assert self.before is not None
        return self.ctx.config.expand_margin * abs(self.before)

    def _settle(self, failed: str, *, diverged: bool = False, descend: bool = True) -> Transition:
        """Rolls the failing segment back and settles ``ramp_edge_steps`` below its rate (or,
        when it was the ramp's first rate and ``descend``, starts the ramp 10x lower).
        ``diverged``: the failure was a non-finite result, not a loss that rose."""
        cfg = self.ctx.config
        factor = cfg.expand_factor
        assert factor is not None  # ramp_plan requires it
        lower = self.lr / factor**2
        first_failed = self._nothing_kept() and self.descents < cfg.expand_steps
        if descend and first_failed and self._fits(lower):
            # Its very first rate did not help: the hint was far too high; start lower.
            self.descents += 1
            self.first = lower
            return self._rerun(failed, lr=lower)
        self._roll_back(failed)
        settled = self.lr / factor**cfg.ramp_edge_steps
        return self._end(settled, reason=failed, failed_lr=self.lr, diverged=diverged,
                         restore=True)

    def _roll_back(self, reason: str) -> None:
        """Records the current segment as thrown away."""
        ctx = self.ctx
        ctx.segment("ramp", self.start_step, lr=self.lr, committed=False)
        ctx.run.discarded += ctx.run.step - self.start_step
        ctx.emit("rollback", phase=Phase.RAMP, reason=reason, restored=STAGE, lr=self.lr)

    def _rerun(self, reason: str, *, lr: float) -> Transition:
        """Rolls the current segment back and runs a segment at ``lr`` from the same state."""
        self._roll_back(reason)
        run = self.ctx.run
        self.awaiting, self.done, self.losses, self.start_step = False, 0, [], run.step
        self.lr = run.lr = lr
        return Transition((Restore(STAGE), SetLR(lr)))

    def _nothing_kept(self) -> bool:
        """Whether no segment has been committed yet (the failure is the ramp's first rate)."""
        return self.lr == self.first

    def _fits(self, lr: float) -> bool:
        """Whether a segment at ``lr`` is worth running: not below the lowest rate swept, and
        with the ramp's time left."""
        cfg = self.ctx.config
        left = self.last_step - self.ctx.run.step
        return lr >= cfg.range_test_bounds[0] and left >= 2 * self.segment

    def _end(
        self, settled: float, *, reason: str, failed_lr: float | None = None,
        diverged: bool = False, restore: bool = False,
    ) -> Transition:
        ctx, run = self.ctx, self.ctx.run
        known = run.space.range is not None
        # Within a known range (given, or found by the range test), never below its low end,
        # where the ramp began; else as far below the ramp's first rate as the edge asks (a
        # first rate 100x below a far too high hint can still lie within two steps of the
        # rate that failed), down to the lowest rate a sweep tries.
        floor = self.first if known else min(self.first, ctx.config.range_test_bounds[0])
        run.last_lr = run.lr = max(settled, floor)
        run.ramped = True
        if not known:  # no range test ran: the ramp bounds the search
            factor = ctx.config.expand_factor
            assert factor is not None  # ramp_plan requires it
            top = self.lr if failed_lr is None else failed_lr
            # A non-finite result is divergence; a loss that only stopped falling is not, so
            # the stages may still look a little above it.
            cap = top * (1.0 if diverged else factor**2)
            run.space.found(min(self.first, run.last_lr), top, cap, informative=True)
        ctx.emit("ramp", lr=run.last_lr, failed_lr=failed_lr, reason=reason, path=self.path,
                 segment=self.segment, optimizer_lr=run.default_lr)
        actions: tuple[Action, ...] = (Restore(STAGE),) if restore else ()
        return Transition((*actions, SetLR(run.lr)), next=Edge.STAGE)

    def _abort(self, reason: str) -> Transition:
        """The validation function failed: the segment runs again once, then the ramp settles."""
        if self.retries >= _RETRIES:
            return self._settle(failed=f"validation failed twice ({reason})", descend=False)
        self.retries += 1
        return self._rerun(reason, lr=self.lr)

    # ------------------------------------------------------------------ outlook and state
    def outlook(self) -> Outlook:
        return Outlook(
            quiet_steps=0 if self.awaiting else max(0, self.segment - self.done - 1),
            needs_finite_check=self.done + 1 >= self.segment,
            rates=constant(self.lr),
        )

    def to_dict(self) -> dict[str, Any]:
        return codec.to_dict(self, _Saved)

    @classmethod
    def from_dict(cls, ctx: Context, data: dict[str, Any]) -> Ramp:
        """Rebuilds :meth:`to_dict`'s output."""
        return cls(ctx, **codec.fields_from(_Saved, data))

