"""The final phase alone."""

from __future__ import annotations

import math

import pytest

from autolrs.core import Config, Restore, SetLR, Snapshot
from autolrs.core.actions import STAGE
from autolrs.core.observations import Loss
from autolrs.core.phases.base import Phase
from autolrs.core.phases.final import Final
from tests.core.phases.helpers import context, events


def final(total=64, step=0, last_lr=0.1, cfg=None):
    ctx = context(cfg or Config(final_decay_fraction=0.2), total_steps=total)
    ctx.run.step, ctx.run.last_lr = step, last_lr
    phase = Final(ctx)
    return phase, phase.begin()


def told(phase, loss=1.0, finite=True):
    phase.ctx.run.step += 1
    return phase.observe(Loss(loss, finite))


def test_the_rate_decays_linearly_to_zero_over_the_steps_left():
    phase, t = final()
    assert t.actions == (Snapshot(STAGE), SetLR(0.1))
    rates = [phase.ctx.run.lr]
    for _ in range(63):
        rates += [a.lr for a in told(phase).actions if isinstance(a, SetLR)]
    assert rates == pytest.approx([0.1 * (64 - k) / 64 for k in range(64)])


def test_without_decay_the_rate_is_held():
    phase, _ = final(cfg=Config(final_decay_fraction=0.0))
    assert not phase.decay
    assert all(not any(isinstance(a, SetLR) for a in told(phase).actions) for _ in range(10))


def test_checkpoints_are_committed_where_the_outlook_said_and_the_end_is_done():
    phase, _ = final()
    commits = []
    for k in range(64):
        outlook = phase.outlook()
        t = told(phase)
        if Snapshot(STAGE) in t.actions:
            assert outlook.needs_finite_check
            commits.append(k + 1)
    assert commits == [16, 32, 48, 64]
    assert phase.name == Phase.DONE and events(phase.ctx, "done")
    assert phase.outlook().quiet_steps == 1 << 30


def test_the_outlook_plans_the_decay_until_the_next_checkpoint():
    phase, _ = final()
    outlook = phase.outlook()
    assert outlook.quiet_steps == 15
    assert [outlook.planned_lr(k) for k in range(3)] == pytest.approx([0.1, 0.1 * 63 / 64, 0.1 * 62 / 64])


def test_a_fault_restores_the_latest_checkpoint_and_halves_the_rest():
    phase, _ = final()
    for _ in range(20):
        told(phase)
    t = told(phase, math.nan)
    assert t.actions == (Restore(STAGE), SetLR(0.05 * (64 - 21) / 64))
    assert events(phase.ctx, "rollback")[0]["phase"] == Phase.FINAL


def test_steps_past_the_budget_are_reported_once():
    phase, _ = final(total=10, step=10)
    assert phase.name == Phase.DONE
    assert told(phase).actions == () and told(phase).actions == ()
    assert len(events(phase.ctx, "overrun")) == 1


def test_a_saved_final_phase_goes_on_where_it_stopped():
    phase, _ = final()
    for _ in range(5):
        told(phase)
    again = Final.from_dict(phase.ctx, phase.to_dict())
    assert again.to_dict() == phase.to_dict()
    assert again.rate() == phase.rate()
