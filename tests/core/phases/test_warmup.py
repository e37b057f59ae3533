"""The warm-up phase alone."""

from __future__ import annotations

import math

import pytest

from autolrs.core import Config, Restore, SetLR, Snapshot
from autolrs.core.actions import STAGE
from autolrs.core.observations import Loss
from autolrs.core.phases.base import Edge, Phase
from autolrs.core.phases.warmup import Warmup
from tests.core.phases.helpers import context, events, rate

CFG = Config(warmup_steps=5, warmup_lr=0.1)


def told(phase, loss=1.0, finite=True):
    phase.ctx.run.step += 1
    return phase.observe(Loss(loss, finite))


def test_the_ramp_rises_linearly_and_hands_over_to_the_method():
    phase = Warmup(context(CFG))
    first = phase.begin()
    assert first.actions == (Snapshot(STAGE), SetLR(0.1 / 5))
    rates = [rate(first.actions)]
    for _ in range(4):
        t = told(phase)
        assert t.next is None
        rates.append(rate(t.actions))
    assert rates == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    end = told(phase)
    assert end.next == Edge.METHOD and end.actions == ()
    assert events(phase.ctx, "segment")[-1]["committed"]


def test_a_spent_budget_hands_over_to_the_final_phase():
    phase = Warmup(context(CFG, total_steps=3))
    phase.begin()
    assert phase.length == 3
    assert [told(phase).next for _ in range(3)] == [None, None, Edge.FINAL]


@pytest.mark.parametrize("bad", ["loss", "model"])
def test_a_fault_restarts_the_ramp_at_half_the_rate(bad):
    phase = Warmup(context(CFG))
    phase.begin()
    for _ in range(4):
        told(phase)
    t = told(phase, math.nan) if bad == "loss" else told(phase, 1.0, finite=False)
    assert t.actions == (Restore(STAGE), SetLR(0.05 / 5)) and t.next is None
    assert phase.done == 0 and phase.ctx.run.rollbacks == 1
    assert events(phase.ctx, "rollback")[0]["phase"] == Phase.WARMUP


def test_the_outlook_names_every_rate_and_the_committing_step():
    phase = Warmup(context(CFG))
    phase.begin()
    told(phase)
    outlook = phase.outlook()
    assert outlook.quiet_steps == 3 and not outlook.needs_finite_check
    planned = [outlook.planned_lr(k) for k in range(4)]
    seen = [phase.ctx.run.lr] + [rate(told(phase).actions) for _ in range(3)]
    assert planned == seen
    assert phase.outlook().needs_finite_check and phase.outlook().quiet_steps == 0


def test_a_saved_ramp_goes_on_where_it_stopped():
    phase = Warmup(context(CFG))
    phase.begin()
    told(phase)
    copy = Warmup.from_dict(phase.ctx, phase.to_dict())
    assert copy.to_dict() == phase.to_dict()
    assert [rate(told(copy).actions) for _ in range(3)] == pytest.approx([0.06, 0.08, 0.1])
