"""The overfitting guard and the stage guard as objects: plain values in, their own state,
saved and read back by the codec."""

from __future__ import annotations

import json
import math

import pytest

from autolrs.core.level import CommittedLevel
from autolrs.core.overfitting import RISES, OverfitGuard, check_due, check_steps, quiet_before_check
from autolrs.core.stage_guard import StageGuard, can_retreat, counts, halved

MARGIN = 0.1


def _observe(guard, values, training):
    return [guard.observe(v, [t], MARGIN, []) for v, t in zip(values, training)]


def test_a_new_lowest_check_is_best_and_three_clear_rises_are_overfitting():
    guard = OverfitGuard()
    checks = _observe(guard, [0.5, 0.4, 0.3, 0.3, 0.45, 0.6, 0.7, 0.8],
                      [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert [c.verdict for c in checks[:3]] == ["best", "best", "best"]
    assert guard.best_validation == 0.3 and guard.train_at_best == 0.8
    verdicts = [c.verdict for c in checks]
    assert "overfit" in verdicts and guard.validation_rises >= RISES
    assert set(checks[0].event) == {"value", "smoothed", "best", "rises"}


def test_a_rise_with_the_training_loss_is_no_overfitting():
    guard = OverfitGuard()
    checks = _observe(guard, [0.3, 0.3, 0.3, 0.5, 0.6, 0.7, 0.8], [0.5] * 3 + [0.9] * 4)
    assert "overfit" not in [c.verdict for c in checks] and guard.validation_rises == 0


def test_a_non_finite_check_records_nothing():
    guard = OverfitGuard()
    _observe(guard, [0.5], [1.0])
    before = guard.to_dict()
    assert guard.observe(math.nan, [1.0], MARGIN, []) is None
    assert guard.to_dict() == before


def test_without_training_losses_the_committed_ones_stand_in():
    guard = OverfitGuard()
    guard.observe(0.5, [], MARGIN, [2.0, 4.0])
    assert guard.train_at_best == 3.0
    guard = OverfitGuard()
    guard.observe(0.5, [], MARGIN, [])
    assert guard.train_at_best == math.inf


def test_the_margin_is_relative_to_the_lowest_smoothed_value():
    guard = OverfitGuard(smoothed_best=-1.0)
    assert not guard.beyond_margin(-0.95, MARGIN) and guard.beyond_margin(-0.85, MARGIN)
    assert not guard.beyond_margin(100.0, None)  # the guard off


def test_the_overfitting_guard_round_trips_and_reads_an_empty_old_state():
    guard = OverfitGuard()
    _observe(guard, [0.5, 0.4, 0.45], [1.0, 0.9, 0.8])
    data = json.loads(json.dumps(guard.to_dict()))
    assert list(data) == ["best_validation", "train_at_best", "validation_rises",
                          "recent_validation", "smoothed_best", "best_step"]
    assert OverfitGuard.from_dict(data) == guard
    assert OverfitGuard.from_dict({}) == OverfitGuard()


def test_checks_fall_due_on_the_schedule_and_never_without_a_budget():
    steps = check_steps(1000)
    assert all(check_due(1000, s) for s in steps)
    assert not check_due(1000, steps[0] + 1) and not check_due(None, steps[0])
    assert quiet_before_check(1000, steps[0]) == steps[1] - steps[0] - 1
    assert quiet_before_check(None, 0) is None and quiet_before_check(1000, 1000) is None


def _level(noise_losses=(1.0, 1.0, 1.0, 1.0)):
    level = CommittedLevel(list(noise_losses))
    level.begin_stage()
    return level


def test_the_stage_guard_fires_when_the_losses_lie_clearly_above_the_start():
    guard = StageGuard()
    guard.start_from(1.0)
    level = _level()
    assert guard.got_worse([1.2] * 8, level, 2.5, 100)
    assert not guard.got_worse([1.01] * 8, level, 2.5, 100)  # within 2 %
    assert not guard.got_worse([1.2] * 8, level, None, 100)  # the guard off
    assert not guard.got_worse([1.2] * 3, level, 2.5, 100)  # too few losses yet
    assert guard.got_worse([1.2] * 2, level, 2.5, 2)  # a short phase: judged on what it has


def test_a_kept_winner_sets_the_reference_unless_cooled_or_above_the_start_when_expanding():
    guard = StageGuard()
    guard.start_from(1.0, 0.8, 0.05)
    assert (guard.reference, guard.reference_spread) == (0.8, 0.05)
    guard.start_from(1.0, 1.2, 0.05, expanding=True)
    assert (guard.reference, guard.reference_spread) == (1.0, None)
    guard.start_from(1.0, 0.6, 0.05, cooled=True)
    assert guard.reference == 1.0
    guard.start_from(1.0, 0.6, 0.05, cooled=True, ramped=True)
    assert guard.reference == pytest.approx(0.8)  # half the winner's progress


def test_the_first_loss_after_a_rollback_lifts_the_reference_once():
    guard = StageGuard(reference=1.0, lift=True)
    level = _level((1.0, 1.1, 0.9, 1.0, 1.05, 0.95))
    guard.first_loss(5.0, level)
    assert guard.reference == pytest.approx(level.lifted(5.0, 1.0)) and not guard.lift
    guard.first_loss(9.0, level)
    assert guard.reference == pytest.approx(level.lifted(5.0, 1.0))


def test_the_stage_guard_round_trips():
    guard = StageGuard(reference=0.7, reference_spread=0.01, lift=True)
    data = json.loads(json.dumps(guard.to_dict()))
    assert data == {"reference": 0.7, "reference_spread": 0.01, "lift": True}
    assert StageGuard.from_dict(data) == guard


def test_the_retreat_halves_but_not_below_the_floor_when_expanding():
    assert halved(1e-3, 1e-4, True) == pytest.approx(5e-4)
    assert halved(1.5e-4, 1e-4, True) == pytest.approx(1e-4)
    assert halved(1.5e-4, 1e-4, False) == pytest.approx(7.5e-5)
    assert not can_retreat(1e-4, 1e-4, True) and can_retreat(1e-4, 1e-4, False)
    assert counts(False) and not counts(True)
