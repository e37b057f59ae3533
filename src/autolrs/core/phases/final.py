"""Final: the rest of the budget, without searching.

With a budget the last stage's rate (or, when no stage ran, a rate from the search range or the
default) decays linearly to zero over the steps left (``Config.final_decay_fraction`` > 0) or is
held. The phase commits checkpoints on its way; a fault restores the latest and runs the rest of
the schedule at half the rate. When the budget is spent the phase is *done*: it goes on holding
the last rate, should the executor tell more steps (reported once as an overrun). A checkpoint
is never committed on a diverged loss: when the median of the last 3 losses lies
``Config.divergence_factor`` times above the phase's level and its noise (the last stage's start,
or the phase's first loss when no stage ran, raised at each commit to the losses then), the
phase goes back to its latest checkpoint at half the rate, as after a non-finite loss.

Edges: none; this is the last phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from autolrs.core import codec
from autolrs.core.actions import BEST, STAGE, Action, Discard, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.level import EXPLODED
from autolrs.core.overfitting import check_due, quiet_before_check
from autolrs.core.phases.base import (
    Abort,
    BasePhase,
    Context,
    Loss,
    Observation,
    Outlook,
    Phase,
    Spent,
    Transition,
    Validation,
    constant,
)
from autolrs.core.phases.checkpoints import before_next, checkpoints
from autolrs.core.planning import decay_length

__all__ = ["Final"]

_EARLY_DECAY_PARTS = 20  # an early decay (overfitting) lasts 1/20 of the budget


def _rate(lr0: float, decay: bool, start: int, end: int, step: int, early: bool = False) -> float:
    """The rate of the step after ``step``: ``lr0``, or linearly down towards 0 at ``end``; an
    early decay (overfitting) is 0 from ``end`` on."""
    if not decay:
        return float(lr0)
    length = max(end - start, 1)
    done = max(step - start, 0)
    if early and done >= length:
        return 0.0
    done = min(done, length - 1)
    return float(lr0) * (length - done) / length


class Final(BasePhase):
    """The final decay or hold.

    Attributes:
        start_step: Where the phase started.
        checkpoint_step: Where its latest checkpoint was committed.
        end_step: Where the budget ends.
        lr0: The rate it starts from (halved after each fault).
        decay: Whether the rate decays (else it is held).
        done: Whether the budget is spent.
        overrun_reported: Whether steps past the budget were reported.
        early: Whether the decay started early (overfitting): it lasts a twentieth of the
            budget (at most ``final_decay_fraction`` of it), then the rate holds at zero.
        decay_end: Where the decay reaches zero.
        awaiting: Whether an overfitting check asked for an evaluation.
        verifying: Whether an early decay is under way from the ``BEST`` state, which is kept
            until a check at the decay's end says whether the decay improved on it.
        reference: The loss level a divergence is judged against (None until the first loss).
        tail: The last 3 losses since the latest restore.
    """

    def __init__(self, ctx: Context, **state: Any) -> None:
        super().__init__(ctx)
        self.start_step: int = state.get("start_step", 0)
        self.checkpoint_step: int = state.get("checkpoint_step", self.start_step)
        self.end_step: int = state.get("end_step", 0)
        self.lr0: float = state.get("lr0", 0.0)
        self.decay: bool = state.get("decay", False)
        self.done: bool = state.get("done", False)
        self.overrun_reported: bool = state.get("overrun_reported", False)
        self.early: bool = state.get("early", False)
        self.decay_end: int = state.get("decay_end", self.end_step)
        self.awaiting: bool = state.get("awaiting", False)
        self.verifying: bool = state.get("verifying", False)
        self.reference: float | None = state.get("reference")
        self.tail: list[float] = list(state.get("tail", []))

    @property
    def name(self) -> str:  # type: ignore[override]
        return Phase.DONE if self.done else Phase.FINAL

    def begin(self) -> Transition:
        """Starts the decay (or hold) over the steps left."""
        ctx, run = self.ctx, self.ctx.run
        assert ctx.total_steps is not None  # the final phase exists only with a budget
        remaining = max(ctx.total_steps - run.step, 0)
        self.start_step = self.checkpoint_step = run.step
        self.end_step = run.step + remaining
        self.lr0 = self._first_rate()
        length = decay_length(ctx.config, ctx.total_steps)
        self.decay = length > 0
        self.decay_end = self.end_step
        if self.early and self.decay:
            # From the state with the lowest validation loss: a short anneal, then no more
            # training that would overfit again.
            short = max(1, min(length, ctx.total_steps // _EARLY_DECAY_PARTS))
            self.decay_end = min(self.end_step, run.step + short)
            self.verifying = run.overfit.best_validation is not None and ctx.validation
        elif self.early:
            self.lr0 = 0.0  # no decay configured: early stopping holds the best state as it is
        self.done = remaining == 0
        run.lr = self.rate()
        ctx.emit("final", start=run.step, end=run.step + remaining, lr=self.lr0, decay=self.decay)
        if self.done:
            ctx.emit("done", lr=run.lr)
        # An early stop without a decay to verify keeps the best state as it is: drop its copy.
        dropped = (Discard(BEST),) if self.early and not self.verifying else ()
        return Transition((Snapshot(STAGE), *dropped, SetLR(run.lr)))

    def _first_rate(self) -> float:
        """The last stage's rate; without one (a budget too short for a stage): with
        ``Config.try_optimizer_lr`` the optimizer's own rate when the space admits it (not below
        the range, below half a rate known to break training); else the top of a
        range found by a sweep that reached divergence (its lowest-loss rate times
        ``Config.range_headroom``, capped below divergence: an LR finder's pick), else the
        middle of the range (a sweep that never diverged does not say where the top is safe),
        else the default."""
        run, cfg = self.ctx.run, self.ctx.config
        bounds = cfg.range_test_bounds
        if run.last_lr is not None:
            return run.last_lr
        usable = run.default_lr is not None and run.space.admits(run.default_lr)
        if cfg.try_optimizer_lr and usable:
            return run.default_lr  # the user's own rate, when nothing was compared
        if run.space.range is not None:
            smooth = cfg.try_optimizer_lr and cfg.expand_factor is not None
            start = run.space.start_rate(run.default_lr, bounds[1], smooth=smooth)
            return run.space.pick(bounds[1]) if start is None else start
        if run.default_lr is not None:
            return run.default_lr
        return math.sqrt(bounds[0] * bounds[1])

    def rate(self, step: int | None = None) -> float:
        """The rate of the step after ``step`` (default: now)."""
        step = self.ctx.run.step if step is None else step
        return _rate(self.lr0, self.decay, self.start_step, self.decay_end, step, self.early)

    def _commits_after(self, step: int) -> bool:
        """Whether a checkpoint is committed once ``step`` steps of the run are told."""
        done = step - self.start_step
        return done in checkpoints(self.end_step - self.start_step)

    @property
    def awaiting_validation(self) -> bool:
        return self.awaiting

    def _checking(self) -> bool:
        """Whether overfitting checks go on (not once the decay started early)."""
        return not (self.early or self.done)

    def _verify_due(self) -> bool:
        """Whether the early decay has ended and its check is due."""
        return self.verifying and self.ctx.run.step >= self.decay_end

    def _verified(self, value: float) -> Transition:
        """The check at the early decay's end: keep the decayed model unless its loss lies beyond
        the guard's margin above the lowest smoothed value (then back to the ``BEST`` state; the
        rate stays at zero). Within the margin the annealed model is kept."""
        ctx, run = self.ctx, self.ctx.run
        self.verifying = False
        guard = run.overfit
        best = guard.best_validation
        kept = math.isfinite(value) and not guard.beyond_margin(value, ctx.config.overfit_guard)
        undone = None if kept else self.start_step  # the early decay, back to the best check
        ctx.emit("early_decay", value=value, best=best, kept=kept, early_stopped_from=undone)
        if kept:
            return Transition((Discard(BEST),))
        if not self.done:  # the early decay, all of it after the best check
            self._segment(committed=False, early_stopped=True)
        self.tail = []  # losses of the state left behind
        return Transition((Restore(BEST), Discard(BEST), Snapshot(STAGE)))

    def _validation(self, value: float) -> Transition:
        self.awaiting = False
        if self.verifying:
            return self._verified(value)
        verdict = self.ctx.observe_check(value, [])
        if verdict == "best":
            return Transition((Snapshot(BEST),))
        if verdict != "overfit":
            return Transition()
        ctx, run = self.ctx, self.ctx.run
        assert ctx.total_steps is not None  # checks run only with a budget
        best_step = run.overfit.best_step  # None: a state saved before it was kept
        ctx.emit("overfitting", lr=run.lr, best=run.overfit.best_validation,
                 early_stopped_from=best_step)
        ctx.register_rollback(self.name, "the validation loss rose: the model overfits")
        ctx.early_stop_segments("decay" if self.decay else "hold", self.checkpoint_step,
                                self.rate(self.checkpoint_step), lr_end=run.lr)
        self.checkpoint_step = run.step
        run.rollbacks = 0
        self.tail = []  # losses of the state left behind
        length = max(1, min(decay_length(ctx.config, ctx.total_steps), ctx.total_steps // 20))
        self.lr0, self.early = float(run.lr or self.lr0), True
        self.start_step = self.checkpoint_step = run.step
        self.decay_end = min(self.end_step, run.step + length)
        if not self.decay:  # no decay configured: the best state as it is, rate zero
            self.lr0 = 0.0
            run.lr = 0.0
            return Transition((Restore(BEST), Discard(BEST), Snapshot(STAGE), SetLR(0.0)))
        self.verifying = True
        run.lr = self.rate()
        return Transition((Restore(BEST), Snapshot(STAGE), SetLR(run.lr)))

    def observe(self, observation: Observation) -> Transition:
        if isinstance(observation, Validation):
            return self._validation(observation.value)
        if isinstance(observation, Abort):
            return self._aborted(observation.reason)
        if isinstance(observation, Spent) and not self.done:
            self._spent()
        if not isinstance(observation, Loss):
            return Transition()
        ctx, run, loss = self.ctx, self.ctx.run, observation.value
        at_end = not self.done and run.step >= self.end_step
        checkpoint = not at_end and not self.done and self._commits_after(run.step)
        reason = self._fault_in(loss, observation.model_finite, commits=at_end or checkpoint)
        if reason is not None:
            return self._fault(reason)
        run.level.record(loss)
        if self.done:
            if ctx.total_steps is not None and not self.overrun_reported:
                self.overrun_reported = True
                ctx.emit("overrun", total_steps=ctx.total_steps, lr=run.lr)
            return Transition()
        if at_end or checkpoint:
            run.rollbacks = 0
            self._committed()
            self._segment(committed=True)
        if at_end:
            self.done = True
            ctx.emit("done", step=run.step, lr=run.lr)
            if self._verify_due():
                self.awaiting = True
                return Transition((Snapshot(STAGE), Evaluate()))
            kept = (Discard(BEST),) if run.overfit.best_validation is not None else ()
            return Transition((Snapshot(STAGE), *kept))
        run.lr = self.rate()
        actions: tuple[Action, ...] = (SetLR(run.lr),) if self.decay else ()
        if self._verify_due() or (self._checking() and check_due(ctx.check_budget, run.step)):
            self.awaiting = True
            actions += (Evaluate(),)
        return Transition(((Snapshot(STAGE),) if checkpoint else ()) + actions)

    def _spent(self) -> None:
        """Steps lost to an abandoned state: the decay's schedule goes on, they are spent."""
        self.checkpoint_step = self.ctx.run.step
        self.end_step = max(self.end_step, self.ctx.run.step + 1)
        if not self.early:
            self.decay_end = self.end_step

    def _aborted(self, reason: str) -> Transition:
        """The validation function raised during an overfitting check: back to the latest
        checkpoint (the error then propagates; the schedule goes on if the caller does). At the
        early decay's end that check is not made again: the decay's latest checkpoint stays."""
        self.awaiting = False
        dropped: tuple[Action, ...] = (Discard(BEST),) if self.verifying else ()
        self.verifying = False
        self.tail = []  # losses of the state left behind
        self.ctx.register_rollback(self.name, reason)
        self._segment(committed=False)
        self.ctx.run.lr = self.rate()
        return Transition((Restore(STAGE), *dropped, SetLR(self.ctx.run.lr)))

    def _fault_in(self, loss: float, model_finite: bool, *, commits: bool) -> str | None:
        """Why the state after ``loss`` must not be kept (None: it may): a non-finite loss, or,
        where the step commits a checkpoint, non-finite parameters or a diverged loss."""
        if not math.isfinite(loss):
            return "non-finite loss"
        if commits and not model_finite:
            return "non-finite parameters"
        diverged = None if self.done else self._diverged(loss)
        return diverged if commits else None

    def _diverged(self, loss: float) -> str | None:
        """Records ``loss``; what diverged when the median of the last 3 losses lies
        ``Config.divergence_factor`` times above the phase's level and its noise, or exploded
        (:data:`~autolrs.core.level.EXPLODED`) (None: neither, or no factor is configured).

        The level is the last stage's start (the phase's first loss when no stage ran), raised
        to the median of the last losses at each commit: a loss that rises slowly and for good
        (a curriculum, a growing regulariser) is no divergence.
        """
        level, factor = self.ctx.run.level, self.ctx.config.divergence_factor
        if self.reference is None:
            self.reference = level.reference if level.reference is not None else loss
        self.tail = (self.tail + [loss])[-3:]
        if factor is None:
            return None
        recent, reference = float(np.median(self.tail)), self.reference
        if abs(recent) > EXPLODED * max(abs(reference), 1.0):
            return f"the loss exploded to {recent:.4g}"
        bound = factor * level.ceiling(reference)
        if reference > 0 and recent > bound:
            return (f"the loss diverged: {recent:.4g} > {bound:.4g} ({factor:g} x its level "
                    f"{reference:.4g} and its noise)")
        return None

    def _committed(self) -> None:
        """A checkpoint is committed: the level rises to the median of the last losses."""
        if self.tail and self.reference is not None:
            self.reference = max(self.reference, float(np.median(self.tail)))

    def _fault(self, reason: str) -> Transition:
        """Back to the latest checkpoint; the rest of the schedule runs at half the rate."""
        self.tail = []
        self.ctx.register_rollback(self.name, reason)
        if not self.done:
            self._segment(committed=False)
        self.lr0 = float(self.lr0) / 2.0
        self.ctx.run.lr = self.rate()
        return Transition((Restore(STAGE), SetLR(self.ctx.run.lr)))

    def _segment(self, *, committed: bool, early_stopped: bool = False) -> None:
        """Records the steps since the latest checkpoint, which starts anew here
        (``early_stopped``: undone by early stopping, the ``early_stopped`` account's)."""
        run = self.ctx.run
        self.ctx.segment(
            "decay" if self.decay else "hold",
            self.checkpoint_step,
            lr=self.rate(self.checkpoint_step),
            lr_end=run.lr,
            committed=committed,
            **({"early_stopped": True} if early_stopped else {}),
        )
        self.checkpoint_step = run.step

    def outlook(self) -> Outlook:
        run = self.ctx.run
        if self.done:
            # The check at an early decay's end may still be awaited when the budget ends.
            return Outlook(0 if self.awaiting else 1 << 30, False, constant(run.lr or 0.0))
        left = self.end_step - run.step - 1
        points = checkpoints(self.end_step - self.start_step)
        quiet = quiet_before_check(self.ctx.check_budget, run.step) if self._checking() else None
        if self.verifying:
            quiet = max(0, self.decay_end - run.step - 1)
        if self.awaiting:
            left = 0
        elif quiet is not None:
            left = min(left, quiet)
        quiet = max(0, min(left, before_next(points, run.step - self.start_step)))
        rates = (
            partial(_ahead, self.lr0, self.start_step, self.decay_end, run.step, self.early)
            if self.decay
            else constant(run.lr or 0.0)
        )
        return Outlook(
            quiet_steps=int(quiet),
            needs_finite_check=(
                run.step + 1 >= self.end_step or self._commits_after(run.step + 1)
                # a check may snapshot the best state
                or (self._checking() and check_due(self.ctx.check_budget, run.step + 1))
            ),
            rates=rates,
        )

    def to_dict(self) -> dict[str, Any]:
        return codec.to_dict(self, _Saved)

    @classmethod
    def from_dict(cls, ctx: Context, data: dict[str, Any]) -> Final:
        """Rebuilds :meth:`to_dict`'s output (a key missing from an old state: the
        constructor's default)."""
        return cls(ctx, **codec.fields_from(_Saved, data, partial=True))


@dataclass
class _Saved:
    """What the final phase saves (:mod:`autolrs.core.codec`; see :class:`Final`)."""

    start_step: int
    checkpoint_step: int
    end_step: int
    lr0: float
    decay: bool
    done: bool
    overrun_reported: bool
    early: bool
    decay_end: int
    awaiting: bool
    verifying: bool
    reference: float | None
    tail: list[float]


def _ahead(lr0: float, start: int, end: int, step: int, early: bool, ahead: int) -> float:
    return _rate(lr0, True, start, end, step + ahead, early)
