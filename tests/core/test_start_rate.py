"""Where the default method starts from the optimizer's rate: moved into the range the range test
found (no cliff at its edges), not bounded below by a sweep that found nothing, and guards whose
halvings stop at the range's floor (issue 19)."""

from __future__ import annotations

import math

import pytest

from autolrs.core import Config, StageController
from autolrs.core.phases.exploit import Exploit
from autolrs.core.phases.stage import TrialPlan
from autolrs.core.space import SearchSpace
from autolrs.core.strategies import searcher_factory
from autolrs.testing import NoisyQuadratic, drive
from tests.core.phases.helpers import context


def first_search(default_lr: float, *, curvature=(0.5, 2.0), steps: int = 400):
    """The range test's event and the first stage's candidates of a default run."""
    controller = StageController(Config(), total_steps=steps, default_lr=default_lr, seed=0,
                                 validation=True)
    problem = NoisyQuadratic(seed=0, curvature=curvature)
    record = drive(controller, problem, steps, validation=problem.loss)
    sweep = next(e for e in record.events if e["event"] == "range_test")
    stage = [e["lr"] for e in record.events if e["event"] == "candidate" and e["stage"] == 1]
    return sweep, stage


def test_the_space_moves_a_rate_to_the_nearest_usable_one():
    space = SearchSpace()
    space.found(1e-3, 1.0, cap=2.0)
    assert space.start_rate(0.1, 10.0, smooth=True) == 0.1
    assert space.start_rate(5e-4, 10.0, smooth=True) == pytest.approx(1e-3)
    assert space.start_rate(50.0, 10.0, smooth=True) == pytest.approx(1.0)  # half the cap
    assert space.start_rate(5e-4, 10.0, smooth=False) == space.pick(10.0)  # the old cliff
    assert "below the range" in space.why_not(5e-4)
    assert "above half" in space.why_not(50.0) and space.why_not(0.1) is None


def test_a_sweep_that_found_nothing_bounds_nothing_below():
    space = SearchSpace()
    space.found(5e-11, 5e-8, cap=10.0, informative=False)
    assert space.floor is None and space.admits(1e-4)
    assert space.start_rate(1e-4, 10.0, smooth=True) == 1e-4
    restored = SearchSpace.from_dict(space.to_dict())
    assert restored.informative is False
    assert SearchSpace.from_dict({"range": [1e-3, 1.0], "cap": 2.0, "auto": True}).informative


def test_no_cliff_at_the_range_s_low_edge():
    sweep, _ = first_search(0.1)
    floor = sweep["low"]
    below = first_search(floor * 0.97)
    above = first_search(floor * 1.03)
    assert below[0]["start_reason"].startswith("below the range")
    assert below[0]["start_lr"] == pytest.approx(floor)
    assert above[0]["start_reason"] is None
    # the first candidates differ by the 6 % the starts differ by, not by the range's width
    assert abs(math.log(below[1][0] / above[1][0])) < math.log(1.1)


@pytest.mark.parametrize("default_lr", [1e-2, 1.3e-2, 0.8e-2])
def test_the_first_search_starts_on_the_grid_nearest_the_optimizer_s_rate_and_climbs(default_lr):
    sweep, lrs = first_search(default_lr)
    assert lrs[0] == pytest.approx(1e-2)
    assert len(lrs) >= 2 and lrs[1] == pytest.approx(1e-2 * math.sqrt(10.0))


def test_a_flat_sweep_says_so_and_keeps_a_rate_below_its_range():
    """A pre-trained model: the sweep's loss neither falls nor diverges (its lowest point is
    noise), so its range bounds nothing below and the optimizer's small rate is kept."""
    controller = StageController(Config(), total_steps=400, default_lr=1e-9, seed=0)
    controller.start()
    events = []
    for step in range(60):
        controller.tell_loss(0.5 + 1e-6 * (step % 2))
        events += controller.pop_events()
        if any(e["event"] == "range_test" for e in events):
            break
    sweep = next(e for e in events if e["event"] == "range_test")
    assert sweep["informative"] is False and sweep["start_reason"] is None
    assert sweep["start_lr"] == 1e-9 and sweep["low"] > 1e-9


def _exploit(floor: float) -> Exploit:
    ctx = context(Config(), total_steps=1000)
    ctx.run.space.found(floor, floor * 1000, cap=floor * 4000)
    plan = TrialPlan(10, 1, 100, "train", None, 0, 100, 0, floor, floor * 1000)
    return Exploit(ctx, plan, [], searcher_factory(ctx.config)(floor, floor * 1000, None))


def test_guard_halvings_stop_at_the_range_s_floor():
    ex = _exploit(1e-4)
    assert ex._halved(1e-3) == pytest.approx(5e-4)
    assert ex._halved(1.5e-4) == pytest.approx(1e-4)  # not 7.5e-5
    assert ex._halved(1e-4) == pytest.approx(1e-4)  # at the floor it stays
    assert ex._halved(5e-5) == pytest.approx(5e-5)  # below it already: no further halving
    ex.ctx.run.space.informative = False
    assert ex._halved(1.5e-4) == pytest.approx(7.5e-5)


def test_the_log_says_when_the_optimizer_s_rate_is_not_used_and_why():
    from autolrs.events import describe, level

    sweep, _ = first_search(50.0)
    line = describe(sweep)
    assert "the optimizer's lr 50 is not used as it is" in line
    assert "above half the rate where the range test diverged" in line
    assert f"starts from {sweep['start_lr']:.4g} instead" in line
    assert level(sweep) == 20  # INFO
    kept, _ = first_search(0.1)
    assert describe(kept).endswith("starts from the optimizer's lr 0.1")


def test_a_rate_outside_a_given_range_is_said_too():
    from autolrs.events import describe

    controller = StageController(Config(), total_steps=400, lr_range=(1e-3, 1.0), default_lr=5e-5,
                                 seed=0, validation=True)
    problem = NoisyQuadratic(seed=0)
    record = drive(controller, problem, 60, validation=problem.loss)
    (said,) = [e for e in record.events if e["event"] == "start_rate"]
    assert said["start_lr"] == pytest.approx(1e-3)
    assert describe(said) == ("step 0: the optimizer's lr 5e-05 is not used as it is: below the "
                              "lr_range given (0.001 and up); starts from 0.001 instead")
    inside = StageController(Config(), total_steps=400, lr_range=(1e-3, 1.0), default_lr=0.1,
                             seed=0, validation=True)
    record = drive(inside, NoisyQuadratic(seed=0), 60, validation=problem.loss)
    assert not [e for e in record.events if e["event"] == "start_rate"]
