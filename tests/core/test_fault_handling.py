"""How the controller limits what a fault costs: checkpoints, retries, short-exploit guard, refined
sweeps and the choice of rate after a rollback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autolrs import Config
from autolrs.core import Restore, SetLR, Snapshot, StageController
from autolrs.core.actions import STAGE
from autolrs.core.range_test import suggest_range, sweep_lrs
from autolrs.testing import NoisyQuadratic, drive


def _through_trials(ctrl: StageController, loss_of_lr=lambda lr, i: 1.0 - 0.001 * i) -> int:
    """Tells losses until the stage's trials are over; returns how many were told."""
    told = 0
    while ctrl.phase == "trial":
        ctrl.tell_loss(loss_of_lr(ctrl.lr, told))
        told += 1
    return told


# ------------------------------------------------------------------ exploit checkpoints
def test_a_long_exploit_commits_checkpoints_and_a_fault_loses_only_the_steps_after_one():
    cfg = Config.paper(tau=100, min_trial_steps=2, candidates=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    _through_trials(ctrl)
    assert ctrl.phase == "exploit"
    first_lr = ctrl.lr
    snapshots_at, checked_before, loss = [], [], 0.9
    for done in range(1, 61):
        checked_before.append(ctrl.needs_finite_check)
        assert ctrl.quiet_steps <= (50 - done if done <= 50 else 100 - done)
        loss -= 0.001
        actions = ctrl.tell_loss(loss)
        if Snapshot(STAGE) in actions:
            snapshots_at.append(done)
    # 100 exploit steps: where the stage guard looks, half-way, the healthy model is committed.
    assert snapshots_at == [50]
    assert [i + 1 for i, c in enumerate(checked_before) if c] == [50]
    events = ctrl.pop_events()
    committed = [e for e in events if e["event"] == "segment" and e["kind"] == "exploit"]
    assert [(e["end"] - e["start"], e["committed"]) for e in committed] == [(50, True)]
    # A non-finite loss 10 steps after the last checkpoint: back to it (10 steps lost, not 60),
    # and the stage goes on at a lower rate.
    actions = ctrl.tell_loss(math.nan)
    assert actions[0] == Restore(STAGE) and isinstance(actions[1], SetLR)
    assert ctrl.phase == "exploit" and ctrl.lr < first_lr
    lost = [e for e in ctrl.pop_events() if e["event"] == "segment" and not e["committed"]]
    assert [e["end"] - e["start"] for e in lost] == [11]


def test_a_non_finite_model_at_an_exploit_checkpoint_is_not_committed():
    cfg = Config.paper(tau=100, min_trial_steps=2, candidates=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    _through_trials(ctrl)
    for _ in range(49):
        ctrl.tell_loss(0.9)
    assert ctrl.needs_finite_check
    actions = ctrl.tell_loss(0.9, model_finite=False)
    assert Snapshot(STAGE) not in actions and actions[0] == Restore(STAGE)


def test_after_a_divergence_the_stage_goes_on_only_with_lower_rates():
    # Candidates score best in the middle of the range; the chosen rate then gives a NaN: the
    # re-decision must not pick a larger candidate, even one that scored well.
    cfg = Config.paper(tau=100, min_trial_steps=2, candidates=5)
    for seed in range(4):
        ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=seed)
        ctrl.start()
        _through_trials(ctrl, lambda lr, i: 1.0 + 0.1 * (math.log10(lr) + 1.5) ** 2 - 0.001 * i)
        chosen = ctrl.lr
        ctrl.tell_loss(math.inf)
        assert ctrl.lr < chosen, seed


# ------------------------------------------------------------------ stage guard on a short exploit
def test_a_short_exploit_that_blows_the_model_up_is_rolled_back_at_its_end():
    # tau 12 with 10-step trials and keep_winner: the exploit phase is 2 steps. The winner's
    # trial ended near 1.0; the next two losses jump to where an untrained model sits.
    cfg = Config.stagewise(tau=12, min_trial_steps=10, candidates=2, trust_region=None)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    _through_trials(ctrl, lambda lr, i: 2.0 - 0.1 * (i % 10))
    assert ctrl.phase == "exploit"
    chosen = ctrl.lr
    ctrl.tell_loss(3.8)
    actions = ctrl.tell_loss(2.4)
    assert actions[0] == Restore(STAGE)
    events = ctrl.pop_events()
    assert any(e["event"] == "rollback" and "stage ended above" in e["reason"] for e in events)
    ceiling = [e for e in events if e["event"] == "ceiling"]
    assert ceiling and ceiling[0]["search_range"][1] <= chosen / 2


def test_a_short_exploit_that_holds_its_level_is_kept():
    cfg = Config.stagewise(tau=12, min_trial_steps=10, candidates=2, trust_region=None)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    _through_trials(ctrl, lambda lr, i: 2.0 - 0.1 * (i % 10))
    ctrl.tell_loss(1.15)
    actions = ctrl.tell_loss(1.1)
    assert Restore(STAGE) not in actions
    assert not any(e["event"] == "rollback" for e in ctrl.pop_events())


# ------------------------------------------------------------------ final phase
def _in_the_final_decay() -> StageController:
    """A controller whose stages are over: the next loss is the final decay's first."""
    cfg = Config.paper(tau=10, min_trial_steps=2, candidates=2, final_decay_fraction=0.5)
    ctrl = StageController(cfg, total_steps=200, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    step = 0
    while ctrl.phase != "final":
        ctrl.tell_loss(1.0 - 0.001 * step)
        step += 1
    return ctrl


def test_the_final_decay_commits_checkpoints_and_a_fault_halves_the_rest_of_it():
    ctrl = _in_the_final_decay()
    final = [e for e in ctrl.pop_events() if e["event"] == "final"][0]
    length = final["end"] - final["start"]
    expected = [length * k // 4 for k in (1, 2, 3)]
    snapshots_at = []
    for done in range(1, expected[1] + 5):
        if Snapshot(STAGE) in ctrl.tell_loss(0.5):
            snapshots_at.append(done)
    assert snapshots_at == expected[:2]
    planned = ctrl.planned_lr(1)
    actions = ctrl.tell_loss(math.nan)
    assert actions == (Restore(STAGE), SetLR(ctrl.lr)) and ctrl.phase == "final"
    assert ctrl.lr == pytest.approx(planned / 2)  # the schedule goes on, at half the rate
    lost = [e for e in ctrl.pop_events() if e["event"] == "segment" and not e["committed"]]
    assert [e["end"] - e["start"] for e in lost] == [5]


def test_a_fault_in_the_final_decay_gives_the_same_schedule_told_at_once_or_in_a_batch():
    one_by_one, batched = _in_the_final_decay(), _in_the_final_decay()
    for ctrl in (one_by_one, batched):
        for _ in range(10):
            ctrl.tell_loss(0.5)
    for loss in (math.nan, 0.5, 0.5):
        one_by_one.tell_loss(loss)
    actions = batched.tell_losses([math.nan, 0.5, 0.5])  # the two steps after the NaN are lost
    assert actions[0] == Restore(STAGE)
    assert batched.step == one_by_one.step
    assert batched.planned_lr(0) == pytest.approx(one_by_one.planned_lr(0))


def _straight_to_the_final_decay() -> StageController:
    """40 steps hold no stage: the final decay starts at once, from the optimizer's rate."""
    ctrl = StageController(Config(), total_steps=40, lr_range=(1e-3, 1.0), default_lr=0.5,
                           seed=0)
    ctrl.start()
    assert ctrl.phase == "final"
    return ctrl


def test_a_final_decay_whose_loss_diverges_is_not_committed_and_goes_on_at_half_the_rate():
    """A loss that explodes while staying finite (the model diverges) is never committed: at the
    next checkpoint the decay goes back to its latest one at half the rate, as after a NaN. (On
    SGD 10x too fast for 60 steps such a state, committed, made every later rate diverge and
    ended the run with a DivergenceError and a destroyed model.)"""
    ctrl = _straight_to_the_final_decay()
    for _ in range(10):  # to the first checkpoint (step 10), committed at the phase's level
        ctrl.tell_loss(1.0)
    ctrl.pop_events()
    for _ in range(10):
        planned = ctrl.planned_lr(1)
        actions = ctrl.tell_loss(20.0)  # 20x the level, far from "exploded" (1e6x)
        assert Snapshot(STAGE) not in actions
        if Restore(STAGE) in actions:
            break
    assert actions == (Restore(STAGE), SetLR(ctrl.lr)) and ctrl.step == 20
    assert ctrl.lr == pytest.approx(planned / 2)
    (rollback,) = [e for e in ctrl.pop_events() if e["event"] == "rollback"]
    assert rollback["reason"].startswith("the loss diverged: 20 > 3 (3 x its level 1 ")


def test_a_final_decay_commits_a_slow_rise_and_an_outlier_batch():
    """The level rises at each commit to the losses then (a loss that grows for good, as under
    a curriculum, is no divergence), and one outlier batch at a checkpoint is no divergence (the
    median of the last 3 losses is judged)."""
    ctrl = _straight_to_the_final_decay()
    committed = []
    losses = [1.0] * 10 + [2.5] * 10 + [6.0] * 9 + [500.0]  # the last at step 30's checkpoint
    for loss in losses:
        actions = ctrl.tell_loss(loss)
        assert Restore(STAGE) not in actions
        if Snapshot(STAGE) in actions:
            committed.append(ctrl.step)
    assert committed == [10, 20, 30]


def test_the_paper_preset_has_no_divergence_bound_in_its_final_decay():
    ctrl = _in_the_final_decay()  # Config.paper(): divergence_factor None
    actions = [ctrl.tell_loss(10.0 ** k) for k in range(1, 60)]
    assert not any(Restore(STAGE) in a for a in actions)


# ------------------------------------------------------------------ range test
def test_a_flat_sweep_is_not_informative_and_a_falling_or_diverging_one_is():
    lrs = sweep_lrs(1e-7, 10.0, 20)
    rng = np.random.default_rng(0)
    flat = list(2.3 + 0.01 * rng.standard_normal(20))
    assert not suggest_range(lrs, flat, decades=3.0).informative
    falling = flat[:15] + [2.2, 2.0, 1.8, 1.7, 1.6]
    assert suggest_range(lrs, falling, decades=3.0).informative
    diverging = flat[:19] + [math.inf]
    assert suggest_range(lrs, diverging, decades=3.0).informative


def test_a_flat_sweep_is_refined_once_over_its_top_decades():
    ctrl = StageController(Config.stagewise(), total_steps=400, seed=0)
    ctrl.start()
    rng = np.random.default_rng(0)
    first_end, told = None, 0
    while ctrl.phase == "range_test":
        # flat: noise and a drift upwards too slight to count as divergence
        ctrl.tell_loss(2.3 + 0.01 * rng.standard_normal() + 0.001 * (told % 20))
        told += 1
        for e in ctrl.pop_events():
            if e["event"] == "range_refine":
                first_end = e
            if e["event"] == "range_test":
                assert first_end is not None, "the flat sweep must be refined first"
                lrs = e["lrs"]
                assert lrs[-1] == pytest.approx(first_end["top"])
                assert lrs[0] == pytest.approx(first_end["top"] / 1e4)
                assert e["start"] == first_end["end"]
    # the refined sweep was flat too: it is not refined again, the search starts
    assert first_end is not None and ctrl.phase == "trial"
    assert first_end["top"] == pytest.approx(10.0)


def test_a_sweep_keeps_a_checkpoint_to_resume_from_a_decade_below_its_high_end():
    ctrl = StageController(Config.stagewise(), total_steps=1000, seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 200)
    rt = [e for e in rec.events if e["event"] == "range_test"][0]
    assert rt["resume_steps"] > 0
    assert rt["lrs"][rt["resume_steps"] - 1] <= rt["high"] / 10

