"""The ramp (``Config.ramp()``, ``Config.ramp_segment_fraction``; in the default under about 400
steps, ``Config.small_budget_ramp``): the first stage's rate found by training upward from below
the optimizer's rate, and the discard budget."""

from __future__ import annotations

import copy
import json
import math

import pytest

from autolrs.core import Config, Phase, Restore, StageController
from autolrs.core.planning import ramp_fraction
from autolrs.events import describe, step_accounting
from autolrs.testing import NoisyQuadratic, drive

STEP = math.sqrt(10.0)


def _controller(total: int = 400, default_lr: float = 0.1, **overrides) -> StageController:
    config = Config.ramp(stage_candidates=(3, 3, 1), **overrides)
    return StageController(
        config, total_steps=total, validation=True, seed=0, default_lr=default_lr
    )


def _ramp_event(events):
    return next(e for e in events if e["event"] == "ramp")


def test_the_ramp_replaces_the_range_test_and_rises_by_the_expand_factor():
    probe = _controller()
    kinds = [type(a).__name__ for a in probe.start()]
    assert kinds == ["Snapshot", "SetLR", "Evaluate"] and probe.phase == Phase.RAMP
    controller = _controller()
    record = drive(controller, NoisyQuadratic(seed=0), 400)  # SGD diverges above 2.0
    ramp = _ramp_event(record.events)
    rates = [p[0] for p in ramp["path"]]
    assert rates[0] == pytest.approx(0.1 / STEP**4)  # from 100x below the optimizer's rate
    assert all(b / a == pytest.approx(STEP) for a, b in zip(rates, rates[1:]))
    # It stopped at the first rate that did not lower the validation loss, and settled two
    # steps below it; the search space is bounded by where it stopped.
    assert ramp["failed_lr"] == pytest.approx(rates[-1])
    assert ramp["lr"] == pytest.approx(rates[-1] / 10.0)
    assert controller.search_range is not None
    assert not any(e["event"] == "range_test" for e in record.events)
    first_stage = next(e for e in record.events if e["event"] == "stage")
    assert first_stage["search_range"][0] <= ramp["lr"] <= first_stage["search_range"][1]


def test_the_ramp_keeps_every_segment_that_helped_and_discards_only_the_failed_one():
    controller = _controller()
    record = drive(controller, NoisyQuadratic(seed=0), 400)
    ramp = _ramp_event(record.events)
    segment = ramp["segment"]
    assert segment == 10  # 2.5 % of 400
    accounts = step_accounting(record.events)
    kept = (len(ramp["path"]) - 1) * segment
    assert accounts["warmup"] == kept
    rollback = next(e for e in record.events if e["event"] == "rollback" and e["phase"] == "ramp")
    assert rollback["lr"] == pytest.approx(ramp["failed_lr"])
    line = describe(ramp)
    assert "ramp over" in line and "rolled back" in line and "searches around" in line


def test_the_ramp_starts_at_the_range_floor_whatever_the_optimizer_rate_when_a_range_is_given():
    starts = []
    for default_lr in (1e-4, 1e-1):
        controller = StageController(
            Config(ramp_segment_fraction=0.025), total_steps=400, validation=True, seed=0,
            lr_range=(1e-3, 1.0), default_lr=default_lr,
        )
        record = drive(controller, NoisyQuadratic(seed=0), 200)
        starts.append(_ramp_event(record.events)["path"][0][0])
    assert starts == pytest.approx([1e-3, 1e-3])


def test_a_first_rate_that_does_not_help_starts_the_ramp_lower():
    controller = _controller()
    controller.start()
    controller.tell_validation(10.0)
    actions = controller.tell_loss(math.nan)  # the ramp's first rate diverged
    assert isinstance(actions[0], Restore) and controller.phase == Phase.RAMP
    assert controller.lr == pytest.approx(0.1 / STEP**4 / 10.0)


def test_a_non_finite_loss_after_a_kept_segment_ends_the_ramp_below_it():
    controller = _controller()
    controller.start()
    controller.tell_validation(10.0)
    controller.tell_losses([1.0] * 10)
    controller.tell_validation(5.0)  # the first segment helped: the rate rises
    risen = controller.lr
    actions = controller.tell_loss(math.nan)
    assert isinstance(actions[0], Restore)
    ramp = _ramp_event(controller.pop_events())
    assert ramp["failed_lr"] == pytest.approx(risen)
    # Two steps below the rate that failed, below where it began (no range was given).
    assert ramp["lr"] == pytest.approx(risen / STEP**2)
    assert "non-finite" in ramp["reason"]
    # A non-finite result is divergence: the search stays below half of it.
    assert controller.search_range[1] <= ramp["failed_lr"]
    assert controller.phase == Phase.TRIAL


def test_without_validation_the_ramp_judges_the_training_loss():
    config = Config(ramp_segment_fraction=0.025, stage_candidates=(3, 3, 1))
    controller = StageController(config, total_steps=400, validation=False, seed=0,
                                 default_lr=0.1)
    record = drive(controller, NoisyQuadratic(seed=0), 400)
    assert record.evaluations == 0
    assert _ramp_event(record.events)["failed_lr"] is not None


def test_a_failing_validation_function_reruns_the_segment_once():
    controller = _controller()
    controller.start()
    controller.tell_validation(10.0)
    controller.tell_losses([1.0] * 10)
    assert controller.awaiting_validation
    actions = controller.abort_trial("val_fn raised")
    assert isinstance(actions[0], Restore) and controller.phase == Phase.RAMP
    controller.tell_losses([1.0] * 10)
    controller.abort_trial("val_fn raised again")
    assert controller.phase == Phase.TRIAL  # settled: it does not loop


def test_a_run_resumed_in_the_middle_of_the_ramp_continues_exactly():
    problem = NoisyQuadratic(seed=3)
    straight = _controller()
    drive(straight, copy.deepcopy(problem), 300)
    first = _controller()
    record = drive(first, problem, 27)
    assert first.phase == Phase.RAMP
    state = json.loads(json.dumps(first.state_dict()))
    resumed = _controller()
    resumed.load_state_dict(state)
    drive(resumed, problem, 273, start=False, record=record)
    assert resumed.state_dict() == straight.state_dict()


def test_ramp_settings_are_checked():
    with pytest.raises(ValueError, match="ramp_segment_fraction"):
        Config(ramp_segment_fraction=0.5)
    with pytest.raises(ValueError, match="ramp_edge_steps"):
        Config(ramp_edge_steps=-1)
    with pytest.raises(ValueError, match="discard_budget"):
        Config(discard_budget=0.9)


def test_the_discard_budget_bounds_what_the_search_throws_away():
    config = Config(ramp_segment_fraction=0.025, stage_candidates=(6, 6, 6),
                    min_trial_steps=5, discard_budget=0.05)
    controller = StageController(config, total_steps=400, validation=True, seed=0,
                                 default_lr=0.1)
    record = drive(controller, NoisyQuadratic(seed=0), 400)
    accounts = step_accounting(record.events)
    thrown = accounts["range_test"] + accounts["discarded_trials"]
    ramp = _ramp_event(record.events)
    assert thrown + ramp["segment"] <= 0.05 * 400 + 5  # the last trial may start inside it
    assert controller.state_dict()["state"]["run"]["discarded"] <= 0.05 * 400 + 5


def test_the_rate_found_hardly_depends_on_the_optimizer_rate():
    settled = []
    for default_lr in (1e-3, 1e-2, 1e-1, 1.0, 10.0):  # four decades of starts
        controller = StageController(Config.ramp(), total_steps=400, validation=True, seed=0,
                                     default_lr=default_lr)
        record = drive(controller, NoisyQuadratic(seed=0), 400)
        settled.append(_ramp_event(record.events)["lr"])
    assert max(settled) / min(settled) <= STEP * (1 + 1e-9)  # within one step of sqrt(10)
    assert all(lr < 2.0 for lr in settled)  # below where SGD diverges on this problem


def test_only_the_ramp_preset_ramps():
    assert Config.ramp().ramp_segment_fraction is not None
    assert Config.ramp().discard_budget is not None
    for preset in (Config(), Config.upward(), Config.stagewise(), Config.paper()):
        controller = StageController(preset, total_steps=400, validation=True, seed=0,
                                     default_lr=0.1)
        record = drive(controller, NoisyQuadratic(seed=0), 60)
        assert not any(e["event"] == "ramp" for e in record.events)



def test_under_about_400_steps_the_default_ramps_instead_of_testing_and_searching():
    assert ramp_fraction(Config(), 200) == Config().small_budget_ramp
    assert ramp_fraction(Config(), 399) is not None
    assert ramp_fraction(Config(), 400) is None  # 40 steps pay for the range test + 2 trials
    assert ramp_fraction(Config(), None) is None
    assert ramp_fraction(Config.ramp(), 5000) == Config.ramp().ramp_segment_fraction
    for preset in (Config.upward(), Config.stagewise(), Config.paper()):
        assert ramp_fraction(preset, 200) is None
    for default_lr in (1e-3, 50.0):  # far too low, far too high
        controller = StageController(Config(), total_steps=200, validation=True, seed=0,
                                     default_lr=default_lr)
        record = drive(controller, NoisyQuadratic(seed=0), 200)
        names = [e["event"] for e in record.events]
        assert "range_test" not in names and names.count("ramp") == 1
        ramp = _ramp_event(record.events)
        # Two steps below the rate that failed, even below where it began (from 50: 0.5).
        assert ramp["lr"] == pytest.approx(ramp["failed_lr"] / STEP**2)
        stages = [e for e in record.events if e["event"] == "stage"]
        assert stages and all(s["candidates"] == 1 for s in stages)  # it holds what it found
        decisions = [e["lr"] for e in record.events if e["event"] == "decision"]
        assert decisions and all(lr == pytest.approx(ramp["lr"]) for lr in decisions)
        assert controller.state_dict()["state"]["run"]["discarded"] <= 0.1 * 200


def test_the_small_budget_ramp_needs_room_to_climb_and_counts_as_the_first_search():
    # Under about 150 steps it cannot climb 100x either way of the optimizer's rate: no ramp.
    controller = StageController(Config(), total_steps=100, validation=True, seed=0,
                                 default_lr=0.1)
    names = [e["event"] for e in drive(controller, NoisyQuadratic(seed=0), 100).events]
    assert "ramp" not in names and "range_test" in names
    # Every later stage counts the ramp as the first search, not only the next one.
    config = Config(stage_candidates=(6, 2, 1))
    controller = StageController(config, total_steps=399, validation=True, seed=0,
                                 default_lr=0.1)
    record = drive(controller, NoisyQuadratic(seed=0), 399)
    assert [e["candidates"] for e in record.events if e["event"] == "stage"][:2] == [2, 1]
    assert controller.state_dict()["state"]["run"]["ramped"] is True


def test_with_a_given_range_no_range_test_is_paid_for_and_the_ramp_stays_inside_it():
    assert ramp_fraction(Config(), 300, range_test=False) is None  # 30 steps pay for 2 trials
    assert ramp_fraction(Config(), 199, range_test=False) is not None
    controller = StageController(Config(), total_steps=300, lr_range=(1e-3, 1.0),
                                 validation=True, seed=0, default_lr=0.1)
    names = [e["event"] for e in drive(controller, NoisyQuadratic(seed=0), 300).events]
    assert "ramp" not in names
    controller = StageController(Config(), total_steps=180, lr_range=(1e-3, 0.1),
                                 validation=True, seed=0, default_lr=0.1)
    record = drive(controller, NoisyQuadratic(seed=0), 180)
    ramp = _ramp_event(record.events)
    assert all(rate <= 0.1 * (1 + 1e-9) for rate, _ in ramp["path"])  # never above the top
    assert max(record.lrs) <= 0.1 * (1 + 1e-9)


def test_the_default_first_search_tries_only_what_a_tenth_of_the_budget_pays_for():
    controller = StageController(Config(), total_steps=600, validation=True, seed=0,
                                 default_lr=0.1)
    record = drive(controller, NoisyQuadratic(seed=0), 600)
    first = next(e for e in record.events if e["event"] == "stage")
    accounts = step_accounting(record.events)
    # After the range test, the rest of 60 steps pays for this many losing trials (plus the
    # winner): 16 thrown away leave 44, four losers of 10 steps, five candidates, not six.
    losers = (int(0.1 * 600) - accounts["range_test"]) // first["trial_steps"]
    assert first["candidates"] == 1 + losers == 5
    # One trial more at most: the winner's is thrown away too when it was not the last run.
    assert accounts["range_test"] + accounts["discarded_trials"] <= 0.1 * 600 + first["trial_steps"]
    unbounded = StageController(Config(discard_budget=None), total_steps=600, validation=True,
                                seed=0, default_lr=0.1)
    record = drive(unbounded, NoisyQuadratic(seed=0), 100)
    assert next(e for e in record.events if e["event"] == "stage")["candidates"] == 6
