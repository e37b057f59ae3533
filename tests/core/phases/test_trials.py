"""The trials phase alone."""

from __future__ import annotations

import copy
import math

import numpy as np

from autolrs.core import Config, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.actions import STAGE, WINNER
from autolrs.core.observations import Abort, Loss, Validation
from autolrs.core.phases.base import Context, Edge
from autolrs.core.phases.stage import StageOutcome
from autolrs.core.phases.trial_plan import plan_trials
from autolrs.core.phases.trials import Trials
from autolrs.core.run import Run
from tests.core.phases.helpers import context, events

CFG = Config.stagewise(candidates=3, tau=50, min_trial_steps=5, early_stop_fraction=None)


def stage(ctx):
    ctx.run.stage += 1
    phase = Trials.start(ctx, plan_trials(ctx))
    return phase, phase.begin([])


def told(phase, loss=1.0, finite=True):
    phase.ctx.run.step += 1
    return phase.observe(Loss(loss, finite))


def loss_at(lr: float, step: int) -> float:
    """Best near 1e-2: lower losses, falling with the step."""
    return 1.0 + 0.1 * (math.log10(lr) + 2.0) ** 2 - 0.01 * step


def test_a_stage_tries_each_candidate_from_the_snapshot_and_hands_over_the_results():
    ctx = context(CFG, lr_range=(1e-3, 1.0))
    phase, first = stage(ctx)
    assert first.actions[0] == Snapshot(STAGE) and isinstance(first.actions[1], SetLR)
    assert events(ctx, "stage")[0]["trial_steps"] == 5
    ends = []
    for _ in range(3):
        for k in range(5):
            t = told(phase, loss_at(ctx.run.lr, k))
        ends.append(t)
    for t in ends[:2]:
        assert Restore(STAGE) in t.actions and isinstance(t.actions[-1], SetLR)
        assert t.next is None
    assert ends[2].next == Edge.EXPLOIT
    outcome = ends[2].handoff
    assert isinstance(outcome, StageOutcome) and len(outcome.results) == 3
    assert [c["index"] for c in events(ctx, "candidate")] == [0, 1, 2]


def test_the_best_trial_so_far_is_kept_in_the_winner_slot():
    ctx = context(CFG, lr_range=(1e-3, 1.0))
    phase, _ = stage(ctx)
    for k in range(5):
        t = told(phase, loss_at(ctx.run.lr, k))
    assert t.actions[:2] == (Snapshot(WINNER), Restore(STAGE))  # the first is the best so far
    assert phase.winner is not None and phase.winner.index == 0 and phase.winner_slot


def test_a_fault_in_a_calm_trial_retries_it_once_then_scores_it_diverged():
    ctx = context(CFG, lr_range=(1e-3, 1.0))
    phase, _ = stage(ctx)
    lr = ctx.run.lr
    told(phase, 1.0)
    t = told(phase, math.nan)
    assert t.actions == (Restore(STAGE), SetLR(lr)) and phase.trial.retries == 1
    told(phase, 1.0)
    t = told(phase, math.inf)
    assert phase.results[0].diverged and phase.results[0].reason == "non-finite loss"
    assert Restore(STAGE) in t.actions


def test_an_abort_restarts_the_running_trial():
    ctx = context(CFG, lr_range=(1e-3, 1.0))
    phase, _ = stage(ctx)
    lr = ctx.run.lr
    told(phase)
    told(phase)
    assert phase.observe(Abort("no")).actions == (Restore(STAGE), SetLR(lr))
    assert phase.trial.steps == 0


def test_validation_mode_asks_for_evaluations_and_scores_them():
    cfg = Config.stagewise(candidates=3, tau=50, min_trial_steps=5, objective="validation", val_points=5)
    ctx = context(cfg, lr_range=(1e-3, 1.0), validation=True)
    phase, _ = stage(ctx)
    assert phase.plan.mode == "validation" and phase.plan.val_every == 1
    t = told(phase)
    assert t.actions == (Evaluate(),) and phase.awaiting_validation
    assert phase.outlook().quiet_steps == 0
    t = phase.observe(Validation(0.9))
    assert t.actions == () and not phase.awaiting_validation
    for _ in range(4):
        told(phase)
        t = phase.observe(Validation(0.8))
    assert phase.results and phase.results[0].value is not None
    assert t.next is None and isinstance(t.actions[-1], SetLR)


def test_the_outlook_is_quiet_until_the_trial_ends_and_checks_its_last_step():
    ctx = context(CFG, lr_range=(1e-3, 1.0))
    phase, _ = stage(ctx)
    outlook = phase.outlook()
    assert outlook.quiet_steps == 4 and not outlook.needs_finite_check
    assert outlook.planned_lr(3) == ctx.run.lr
    for _ in range(4):
        assert told(phase).actions == ()
    assert phase.outlook().needs_finite_check  # keep_winner: the last step's state is kept


def test_an_annealed_trial_plans_its_decay():
    cfg = Config.stagewise(candidates=3, tau=100, min_trial_steps=5, anneal_fraction=0.3)
    ctx = context(cfg, lr_range=(1e-3, 1.0))
    phase, _ = stage(ctx)
    assert phase.plan.anneal_steps == 3 and phase.plan.trial_steps == 10
    planned = [phase.outlook().planned_lr(k) for k in range(10)]
    lrs = [ctx.run.lr]
    for _ in range(9):
        t = told(phase)
        lrs.append(ctx.run.lr if not t.actions else t.actions[-1].lr)
    assert lrs == planned and planned[-1] < planned[0]


def test_a_saved_trials_phase_decides_as_the_original():
    ctx = context(CFG, lr_range=(1e-3, 1.0))
    phase, _ = stage(ctx)
    for k in range(7):
        told(phase, loss_at(ctx.run.lr, k))
    twin_ctx = Context(
        ctx.config, None, False, Run.from_dict(ctx.run.to_dict()),
        np.random.default_rng(0), ctx.make_searcher, ctx.make_forecaster, copy.copy(ctx.events),
    )
    twin = Trials.from_dict(twin_ctx, phase.to_dict())
    assert twin.to_dict() == phase.to_dict()
    for k in range(8):
        a, b = told(phase, loss_at(ctx.run.lr, k)), told(twin, loss_at(twin_ctx.run.lr, k))
        assert a.actions == b.actions and a.next == b.next
