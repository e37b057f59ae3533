"""Range test: an exponential sweep that finds the search range when the user gives none.

The rate rises every step from ``Config.range_test_bounds[0]`` until the loss diverges or the
sweep ends (:mod:`autolrs.core.range_test` holds the maths). Along the way it snapshots two
checkpoints: the model resumes from an early one (a warm start) and a calm sweep that meets a
non-finite result retries once from the newest. A sweep too fast for the loss to respond is run
once more over the top decades.

Edges: at its end, :data:`Edge.STAGE` (the first stage), having set the run's search space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from autolrs.core import codec
from autolrs.core.actions import STAGE, Action, Discard, Restore, SetLR, Snapshot
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
)
from autolrs.core.phases.trial_plan import anchored_start
from autolrs.core.planning import range_test_length
from autolrs.core.range_test import (
    RangeSuggestion,
    divergence_index,
    suggest_range,
    sweep_lrs,
)

__all__ = ["RANGE_SLOTS", "RangeTest"]

RANGE_SLOTS = ("range_a", "range_b")
"""The snapshot slots of the sweep's checkpoints."""

_FAULT_RETRIES = 1  # non-finite results a calm sweep may roll back from


class RangeTest(BasePhase):
    """The learning-rate range test.

    Attributes:
        lrs: The sweep's rates, one per step.
        losses: The current pass's losses (None for a non-finite one), from sweep index 0.
        checkpoints: ``[slot, steps done, rate]`` of the snapshots taken.
        start_step: Where the current pass of the sweep started.
        origin: Where the sweep's first pass started (before any retry).
        first_index: The sweep index at ``start_step``.
        retries: Non-finite results rolled back from.
        refined: Whether this is the second, finer sweep.
        every: Steps between checkpoints (one per decade).
    """

    name = Phase.RANGE_TEST
    in_trial = True

    def __init__(self, ctx: Context, **state: Any) -> None:
        super().__init__(ctx)
        self.lrs: list[float] = list(state.get("lrs", []))
        self.losses: list[float | None] = list(state.get("losses", []))
        self.checkpoints: list[list[Any]] = [list(c) for c in state.get("checkpoints", [])]
        self.start_step: int = state.get("start_step", 0)
        self.origin: int = state.get("origin", self.start_step)
        self.first_index: int = state.get("first_index", 0)
        self.retries: int = state.get("retries", 0)
        self.refined: bool = state.get("refined", False)
        self.every: int = state.get("every", 1)

    def begin(self) -> Transition:
        """Starts the sweep (snapshotting the state the model resumes from)."""
        cfg, total, run = self.ctx.config, self.ctx.total_steps, self.ctx.run
        n = range_test_length(cfg, total)
        if total is not None:
            n = max(10, min(n, total // 3))
        lo, hi = cfg.range_test_bounds
        self.lrs = sweep_lrs(lo, hi, n)
        self._restart(every=max(1, int(round(n / math.log10(hi / lo)))))
        run.lr = self.lrs[0]
        return Transition((Snapshot(STAGE), SetLR(self.lrs[0])))

    def _restart(self, **changes: Any) -> None:
        """A new pass from sweep index 0, starting now."""
        step = self.ctx.run.step
        self.losses, self.checkpoints = [], []
        self.start_step = self.origin = step
        self.first_index = self.retries = 0
        for key, value in changes.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ observations
    def observe(self, observation: Observation) -> Transition:
        if isinstance(observation, Loss):
            return self._loss(observation.value, observation.model_finite)
        if isinstance(observation, Abort):
            self.ctx.emit(
                "rollback", phase=Phase.RANGE_TEST, reason=observation.reason, restored=STAGE
            )
            self._restart()
            self.ctx.run.lr = self.lrs[0]
            return Transition((Restore(STAGE), SetLR(self.lrs[0])))
        if isinstance(observation, Spent):
            self.start_step = self.ctx.run.step
        return Transition()

    def _checkpoint_after(self, done: int) -> bool:
        """Whether the sweep snapshots a checkpoint once ``done`` of its steps are done."""
        return done % self.every == 0

    def _loss(self, loss: float, model_finite: bool) -> Transition:
        checkpoint_due = self._checkpoint_after(len(self.losses) + 1)
        faulted = not math.isfinite(loss) or (checkpoint_due and not model_finite)
        if faulted and self._calm():
            reason = "non-finite loss" if not math.isfinite(loss) else "non-finite parameters"
            return self._retry(reason)
        self.losses.append(loss if math.isfinite(loss) else None)
        losses = self._values()
        if faulted or divergence_index(losses) is not None or len(losses) >= len(self.lrs):
            return self._finish()
        actions: list[Action] = []
        if checkpoint_due:
            # The first two checkpoints take a slot each, the third replaces the first, and
            # from then on each replaces the newest: the sweep keeps its second checkpoint (an
            # early warm start to resume from) and the newest (to retry from after a fault).
            # Resuming from later checkpoints was tried: on digits it reached the target in 3
            # of 12 seeds instead of 8.
            used = [c[0] for c in self.checkpoints]
            slot = RANGE_SLOTS[len(used) % 2]
            self.checkpoints = [c for c in self.checkpoints if c[0] != slot]
            self.checkpoints.append([slot, len(losses), self.lrs[len(losses) - 1]])
            actions.append(Snapshot(slot))
        self.ctx.run.lr = self.lrs[len(losses)]
        actions.append(SetLR(self.ctx.run.lr))
        return Transition(tuple(actions))

    def _values(self) -> list[float]:
        return [math.inf if v is None else v for v in self.losses]

    def _calm(self) -> bool:
        """Whether a non-finite result in the sweep may be a one-off fault, not divergence.

        The sweep is retried once from its latest checkpoint when, so far, its smoothed loss
        has stayed below 1.5 times its running minimum: a bad batch or an overflow should not
        end the sweep and make its interval. A second non-finite result is divergence.
        """
        if self.retries >= _FAULT_RETRIES:
            return False
        if not self.losses:
            return True  # the first loss comes before any step of the sweep
        return divergence_index(self._values(), ratio=1.5) is None

    def _retry(self, reason: str) -> Transition:
        """Rolls the sweep back to its latest checkpoint (or its start) and goes on from there."""
        run = self.ctx.run
        self.retries += 1
        slot, done = STAGE, 0
        if self.checkpoints:
            slot, done = max(self.checkpoints, key=lambda c: c[1])[:2]
        self.ctx.emit("rollback", phase=Phase.RANGE_TEST, reason=reason, restored=slot, lr=run.lr)
        self._segment(len(self.losses))  # up to the step that failed
        self.losses = self.losses[:done]
        self.start_step, self.first_index = run.step, done
        run.lr = self.lrs[done]
        return Transition((Restore(slot), SetLR(run.lr)))

    def _segment(self, end_index: int) -> None:
        """Records the current pass, up to sweep index ``end_index``, as not committed."""
        self.ctx.segment(
            "range_test",
            self.start_step,
            lr=self.lrs[self.first_index],
            lr_end=self.lrs[end_index],
            committed=False,
        )

    # ------------------------------------------------------------------ the end
    def _refine(self, top: float) -> Transition:
        """Sweeps again, as many steps over the top ``range_decades + 1`` decades of the first
        sweep, from the same start: the first was too fast for the loss to respond anywhere."""
        ctx, decades = self.ctx, self.ctx.config.range_decades
        ctx.emit(
            "range_refine",
            start=self.origin,
            end=ctx.run.step,
            lrs=self.lrs[: len(self.losses)],
            losses=self.losses,
            top=top,
        )
        self._segment(len(self.losses) - 1)
        lrs = sweep_lrs(top / 10.0 ** (decades + 1), top, len(self.lrs))
        self.lrs = lrs
        self._restart(refined=True, every=max(1, int(round(len(lrs) / (decades + 1)))))
        ctx.run.lr = lrs[0]
        return Transition((Restore(STAGE), *(Discard(slot) for slot in RANGE_SLOTS), SetLR(lrs[0])))

    def _finish(self) -> Transition:
        ctx, cfg, run = self.ctx, self.ctx.config, self.ctx.run
        losses = self._values()
        found = suggest_range(
            self.lrs, losses, decades=cfg.range_decades, headroom=cfg.range_headroom
        )
        n = len(self.lrs)
        if (
            not found.informative
            and self.lrs.index(found.best_lr) < 0.75 * found.stop_index
            and not self.refined
            and (ctx.total_steps is None or run.step + n <= ctx.total_steps // 3)
        ):
            return self._refine(self.lrs[found.stop_index])
        run.space.found(
            found.low, found.high, found.diverged_lr or cfg.range_test_bounds[1], found.informative,
            placed=found.fell,
        )
        resume_slot, resume_steps = self._resume_point(found)
        run.discarded += max(run.step - self.origin - resume_steps, 0)
        kept = [v for v in losses[:resume_steps] if math.isfinite(v)]
        run.level.recent = kept[-4:]
        self._report(found, resume_steps)
        actions = (Restore(resume_slot), *(Discard(slot) for slot in RANGE_SLOTS))
        return Transition(actions, next=Edge.STAGE)

    def _resume_point(self, found: RangeSuggestion) -> tuple[str, int]:
        """The slot and sweep steps the model resumes from: the latest checkpoint taken at least
        one decade below the high end (the sweep's progress up to there is a warm-up), or the
        start."""
        resume_slot, resume_steps = STAGE, 0
        for slot, steps_done, lr_at in sorted(self.checkpoints, key=lambda c: c[1]):
            if lr_at <= found.high / 10.0 and steps_done <= found.stop_index:
                resume_slot, resume_steps = slot, steps_done
        return resume_slot, resume_steps

    def _start_rate(self, found: RangeSuggestion) -> dict[str, Any]:
        """What the run does with the optimizer's own rate, for the range test's event (with
        ``Config.try_optimizer_lr``; else nothing): whether the sweep meant anything, the rate
        the run starts from and why it is not the optimizer's (None when it is)."""
        cfg, run = self.ctx.config, self.ctx.run
        if not cfg.try_optimizer_lr or run.default_lr is None:
            return {}
        anchored = anchored_start(self.ctx)
        if anchored is not None:
            pick = run.space.pick(cfg.range_test_bounds[1])
            return {"informative": found.informative, "optimizer_lr": run.default_lr,
                    "start_lr": anchored,
                    "start_reason": f"the first search starts one step below the range "
                                    f"test's pick ({pick:.3g}), whatever the optimizer's rate"}
        smooth = cfg.expand_factor is not None
        start = run.space.start_rate(run.default_lr, cfg.range_test_bounds[1], smooth=smooth)
        return {"informative": found.informative, "optimizer_lr": run.default_lr,
                "start_lr": start, "start_reason": run.space.why_not(run.default_lr)}

    def _report(self, found: RangeSuggestion, resume_steps: int) -> None:
        """Emits the range test's event and segments."""
        ctx, run = self.ctx, self.ctx.run
        ctx.emit(
            "range_test",
            start=self.origin,
            end=run.step,
            lrs=self.lrs[: len(self.losses)],
            losses=self.losses,
            low=found.low,
            high=found.high,
            diverged_lr=found.diverged_lr,
            best_lr=found.best_lr,
            resume_steps=resume_steps,
            **self._start_rate(found),
        )
        self._segment(len(self.losses) - 1)
        if resume_steps:
            ctx.segment(
                "warmup",
                self.origin,
                end=self.origin + resume_steps,
                lr=self.lrs[0],
                lr_end=self.lrs[resume_steps - 1],
                committed=True,
                virtual=True,
            )

    # ------------------------------------------------------------------ outlook and state
    def outlook(self) -> Outlook:
        done, every = len(self.losses), self.every
        to_checkpoint = every - (done % every) - 1
        return Outlook(
            quiet_steps=max(0, min(to_checkpoint, len(self.lrs) - done - 1)),
            needs_finite_check=self._checkpoint_after(done + 1),
            rates=partial(_sweep_rate, self.lrs, done),
        )

    def to_dict(self) -> dict[str, Any]:
        return codec.to_dict(self, _Saved)

    @classmethod
    def from_dict(cls, ctx: Context, data: dict[str, Any]) -> RangeTest:
        """Rebuilds :meth:`to_dict`'s output (a key missing from an old state: the
        constructor's default)."""
        return cls(ctx, **codec.fields_from(_Saved, data, partial=True))


@dataclass
class _Saved:
    """What a range test saves (:mod:`autolrs.core.codec`; see :class:`RangeTest`)."""

    lrs: list[float]
    losses: list[float | None]
    checkpoints: list[list[Any]]
    start_step: int
    origin: int
    first_index: int
    retries: int
    refined: bool
    every: int


def _sweep_rate(lrs: list[float], done: int, ahead: int) -> float:
    return float(lrs[min(done + ahead, len(lrs) - 1)])
