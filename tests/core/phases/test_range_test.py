"""The range-test phase alone."""

from __future__ import annotations

import math

from autolrs.core import Config, Discard, Restore, SetLR, Snapshot
from autolrs.core.actions import STAGE
from autolrs.core.observations import Abort, Loss
from autolrs.core.phases.base import Edge
from autolrs.core.phases.range_test import RANGE_SLOTS, RangeTest
from tests.core.phases.helpers import context, events

CFG = Config(range_test_steps=40)


def told(phase, loss=1.0, finite=True):
    phase.ctx.run.step += 1
    return phase.observe(Loss(loss, finite))


def sweep_loss(lr: float) -> float:
    """Falls until 1e-2, explodes above 1."""
    return 2.0 - 0.2 * min(math.log10(lr / 1e-7), 5.0) + (1e3 if lr > 1.0 else 0.0)


def test_the_sweep_rises_every_step_and_snapshots_once_a_decade():
    phase = RangeTest(context(CFG))
    first = phase.begin()
    assert first.actions == (Snapshot(STAGE), SetLR(1e-7))
    assert phase.every == 5  # 40 steps over 8 decades
    snapshots = []
    for k in range(12):
        outlook = phase.outlook()
        t = told(phase, sweep_loss(phase.ctx.run.lr))
        committed = [a for a in t.actions if isinstance(a, Snapshot)]
        assert bool(committed) == outlook.needs_finite_check
        snapshots += [(k + 1, a.slot) for a in committed]
        assert t.actions[-1] == SetLR(phase.lrs[k + 1])
    assert snapshots == [(5, RANGE_SLOTS[0]), (10, RANGE_SLOTS[1])]


def test_divergence_ends_the_sweep_with_a_found_range():
    ctx = context(CFG)
    phase = RangeTest(ctx)
    phase.begin()
    t = told(phase, sweep_loss(ctx.run.lr))
    while t.next is None:
        t = told(phase, sweep_loss(ctx.run.lr))
    assert t.next == Edge.STAGE
    assert isinstance(t.actions[0], Restore)
    assert t.actions[1:] == tuple(Discard(s) for s in RANGE_SLOTS)
    low, high = ctx.run.space.range
    assert ctx.run.space.auto and high <= ctx.run.space.cap and high / low == 10**CFG.range_decades
    assert events(ctx, "range_test")[0]["high"] == high


def test_a_fault_in_a_calm_sweep_resumes_from_the_newest_checkpoint():
    phase = RangeTest(context(CFG))
    phase.begin()
    for _ in range(7):
        told(phase, 1.0)
    t = told(phase, math.nan)
    assert t.actions == (Restore(RANGE_SLOTS[0]), SetLR(phase.lrs[5])) and t.next is None
    assert len(phase.losses) == 5 and phase.retries == 1


def test_an_abort_restarts_the_sweep_from_its_snapshot():
    phase = RangeTest(context(CFG))
    phase.begin()
    for _ in range(7):
        told(phase, 1.0)
    t = phase.observe(Abort("validation raised"))
    assert t.actions == (Restore(STAGE), SetLR(1e-7))
    assert phase.losses == [] and phase.checkpoints == []


def test_the_outlook_plans_the_sweep_until_the_next_checkpoint():
    phase = RangeTest(context(CFG))
    phase.begin()
    told(phase)
    outlook = phase.outlook()
    assert outlook.quiet_steps == 3
    assert [outlook.planned_lr(k) for k in range(4)] == phase.lrs[1:5]


def test_a_saved_sweep_goes_on_where_it_stopped():
    phase = RangeTest(context(CFG))
    phase.begin()
    for _ in range(6):
        told(phase, 1.0)
    copy = RangeTest.from_dict(phase.ctx, phase.to_dict())
    assert copy.to_dict() == phase.to_dict()
    assert told(copy).actions == (SetLR(phase.lrs[7]),)
