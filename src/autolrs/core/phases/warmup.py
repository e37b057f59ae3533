"""Warm-up: the original callback's optional linear ramp before anything else.

Step ``i`` (0-based) trains at ``warmup_lr * (i + 1) / warmup_steps`` (``Config.warmup_steps``,
``Config.warmup_lr``); the steps count as spent. Nothing is committed until the ramp ends, so a
fault restarts it from the start, at half the rate.

Edges: at its end, :data:`Edge.METHOD` (or :data:`Edge.FINAL` when the budget is spent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from autolrs.core import codec
from autolrs.core.actions import STAGE, Restore, SetLR, Snapshot
from autolrs.core.phases.base import (
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
from autolrs.core.planning import warmup_length

__all__ = ["Warmup", "warmup_target"]


def _rate(lr: float, length: int, done: int) -> float:
    """The ramp's rate for its step ``done`` (0-based)."""
    done = min(done, length - 1)
    return float(lr) * (done + 1) / length


@dataclass
class _Saved:
    """What a warm-up saves (:mod:`autolrs.core.codec`; see :class:`Warmup`)."""

    length: int
    lr: float
    done: int
    start_step: int


class Warmup(BasePhase):
    """The linear warm-up.

    Attributes:
        length: Steps of the ramp.
        lr: The rate it ends at (halved after each fault).
        done: Steps done in the current pass.
        start_step: The step at which the current pass started.
    """

    name = Phase.WARMUP

    def __init__(
        self, ctx: Context, *, length: int = 0, lr: float = 0.0, done: int = 0, start_step: int = 0
    ) -> None:
        super().__init__(ctx)
        self.length = length
        self.lr = lr
        self.done = done
        self.start_step = start_step

    def begin(self) -> Transition:
        """Starts the ramp (snapshotting the state it may restart from)."""
        cfg, run = self.ctx.config, self.ctx.run
        lr = warmup_target(self.ctx)
        assert lr is not None  # the controller enters the warm-up only with a rate to end at
        length = warmup_length(cfg, self.ctx.total_steps, lr)
        self.length, self.lr, self.done, self.start_step = length, lr, 0, run.step
        run.lr = self.rate(0)
        return Transition((Snapshot(STAGE), SetLR(run.lr)))

    def rate(self, done: int) -> float:
        """The rate of the ramp's step ``done`` (0-based)."""
        return _rate(self.lr, self.length, done)

    def _ends_after(self, done: int) -> bool:
        """Whether the ramp ends (and commits) once ``done`` steps of it are done."""
        return done >= self.length

    def observe(self, observation: Observation) -> Transition:
        """A loss moves the ramp on; a fault restarts it at half the rate."""
        if isinstance(observation, Spent):
            self.start_step = self.ctx.run.step
        if not isinstance(observation, Loss):
            return Transition()
        ctx, run = self.ctx, self.ctx.run
        loss = observation.value
        at_end = self._ends_after(self.done + 1)
        if not math.isfinite(loss) or (at_end and not observation.model_finite):
            # Nothing was committed since the warm-up began: start it again, to half the rate.
            reason = "non-finite loss" if not math.isfinite(loss) else "non-finite parameters"
            ctx.register_rollback(Phase.WARMUP, f"{reason} in the warm-up")
            ctx.segment("warmup", self.start_step, lr=self.rate(0), committed=False)
            self.lr, self.done, self.start_step = float(self.lr) / 2.0, 0, run.step
            run.lr = self.rate(0)
            return Transition((Restore(STAGE), SetLR(run.lr)))
        self.done += 1
        if not at_end:
            run.lr = self.rate(self.done)
            return Transition((SetLR(run.lr),))
        run.rollbacks = 0
        ctx.segment("warmup", self.start_step, lr=self.rate(0), lr_end=run.lr, committed=True)
        return Transition(next=Edge.FINAL if ctx.finished else Edge.METHOD)

    def outlook(self) -> Outlook:
        return Outlook(
            quiet_steps=max(0, self.length - self.done - 1),
            needs_finite_check=self._ends_after(self.done + 1),
            rates=partial(_offset_rate, self.lr, self.length, self.done),
        )

    def to_dict(self) -> dict[str, Any]:
        return codec.to_dict(self, _Saved)

    @classmethod
    def from_dict(cls, ctx: Context, data: dict[str, Any]) -> Warmup:
        """Rebuilds :meth:`to_dict`'s output."""
        return cls(ctx, **codec.fields_from(_Saved, data))


def warmup_target(ctx: Context) -> float | None:
    """The rate a warm-up ends at: ``Config.warmup_lr``; else the optimizer's own rate, unless
    the range test found it unusable (above half the divergence point or below the range: then
    the rate the first stage holds instead, :meth:`SearchSpace.start_rate`)."""
    cfg, run = ctx.config, ctx.run
    if cfg.warmup_lr is not None:
        return cfg.warmup_lr
    smooth = cfg.expand_factor is not None
    return run.space.start_rate(run.default_lr, cfg.range_test_bounds[1], smooth=smooth)


def _offset_rate(lr: float, length: int, done: int, ahead: int) -> float:
    return _rate(lr, length, done + ahead)
