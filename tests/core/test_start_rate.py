"""Where the default method starts: one step below the range test's pick whatever the
optimizer's rate, or (where the sweep found nothing, or with ``expand_from_range=False``) from the
optimizer's rate moved into the range the range test found (no cliff at its edges), not bounded
below by a sweep that found nothing; and guards whose halvings stop at the range's floor
(issue 19)."""

from __future__ import annotations

import math

import pytest

from autolrs.core import Config, StageController
from autolrs.core.expand import grid_point
from autolrs.core.phases.exploit import Exploit
from autolrs.core.phases.stage import TrialPlan
from autolrs.core.space import SearchSpace
from autolrs.core.strategies import searcher_factory
from autolrs.testing import NoisyQuadratic, drive
from tests.core.phases.helpers import context

FROM_OPTIMIZER = Config(expand_from_range=False)


def first_search(default_lr: float, *, curvature=(0.5, 2.0), steps: int = 400,
                 config: Config | None = None):
    """The range test's event and the first stage's candidates of a run (the default's)."""
    controller = StageController(config or Config(), total_steps=steps, default_lr=default_lr,
                                 seed=0, validation=True)
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
    sweep, _ = first_search(0.1, config=FROM_OPTIMIZER)
    floor = sweep["low"]
    below = first_search(floor * 0.97, config=FROM_OPTIMIZER)
    above = first_search(floor * 1.03, config=FROM_OPTIMIZER)
    assert below[0]["start_reason"].startswith("below the range")
    assert below[0]["start_lr"] == pytest.approx(floor)
    assert above[0]["start_reason"] is None
    # the first candidates differ by the 6 % the starts differ by, not by the range's width
    assert abs(math.log(below[1][0] / above[1][0])) < math.log(1.1)


@pytest.mark.parametrize("default_lr", [1e-2, 1.3e-2, 0.8e-2])
def test_the_first_search_starts_on_the_grid_nearest_the_optimizer_s_rate_and_climbs(default_lr):
    sweep, lrs = first_search(default_lr, config=FROM_OPTIMIZER)
    assert lrs[0] == pytest.approx(1e-2)
    assert len(lrs) >= 2 and lrs[1] == pytest.approx(1e-2 * math.sqrt(10.0))


def test_the_first_search_is_the_same_from_every_optimizer_rate():
    """By default the first search starts one step below the range test's pick (on the grid),
    so the optimizer's rate changes nothing: from 1e-6 to 50 the same candidates."""
    runs = [first_search(lr) for lr in (1e-6, 1e-3, 1e-2, 0.3, 50.0)]
    sweep, lrs = runs[0]
    space = SearchSpace()
    space.found(sweep["low"], sweep["high"], cap=sweep["diverged_lr"] or 10.0)
    factor = Config().expand_factor
    assert lrs[0] == pytest.approx(grid_point(space.pick(10.0) / factor, factor))
    for other_sweep, other in runs[1:]:
        assert other == pytest.approx(lrs)
        assert other_sweep["start_lr"] == pytest.approx(sweep["start_lr"])
    # without the range test's anchor, the start decides where the search begins
    assert first_search(0.3, config=FROM_OPTIMIZER)[1][0] == pytest.approx(10.0**-0.5)
    assert lrs[0] != pytest.approx(10.0**-0.5)


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

    sweep, _ = first_search(50.0, config=FROM_OPTIMIZER)
    line = describe(sweep)
    assert "the optimizer's lr 50 is not used as it is" in line
    assert "above half the rate where the range test diverged" in line
    assert f"starts from {sweep['start_lr']:.4g} instead" in line
    assert level(sweep) == 20  # INFO
    kept, _ = first_search(0.1, config=FROM_OPTIMIZER)
    assert describe(kept).endswith("starts from the optimizer's lr 0.1")
    anchored, _ = first_search(0.1)  # the default: the range test places the search
    line = describe(anchored)
    assert "the optimizer's lr 0.1 is not used as it is: the first search starts one step " \
        "below the range test's pick" in line
    assert f"starts from {anchored['start_lr']:.4g} instead" in line


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


def test_a_sweep_that_diverged_without_falling_places_nothing():
    """A noisy loss that never clearly fell, then blew up: the divergence bounds the rate from
    above, but the lowest point is noise, so the first search starts from the optimizer's rate
    (a small MLP's 19-step sweep put its lowest smoothed loss at 2.6e-7, where 0.1 trains)."""
    from autolrs.core.phases.trial_plan import first_center, range_anchor
    from autolrs.core.range_test import suggest_range

    lrs = [1e-7 * 10 ** (i / 2) for i in range(17)]
    noisy = [0.34, 0.25, 0.39, 0.43, 0.48, 0.36, 0.37, 0.40, 0.32, 0.35, 0.33, 0.24, 0.43, 0.43,
             0.37, 0.23, 13.4]
    found = suggest_range(lrs, noisy, decades=3.0)
    assert found.diverged_lr is not None and found.informative and not found.fell
    ctx = context(Config(), total_steps=400)
    ctx.run.default_lr = 0.1
    ctx.run.space.found(found.low, found.high, found.diverged_lr, found.informative,
                        placed=found.fell)
    assert range_anchor(ctx) is None and first_center(ctx) == pytest.approx(0.1)
    ctx.run.space.placed = True  # had it fallen: one step below the pick, whatever the hint
    assert first_center(ctx) == pytest.approx(
        grid_point(ctx.run.space.pick(10.0) / ctx.config.expand_factor,
                   ctx.config.expand_factor))
    restored = SearchSpace.from_dict(ctx.run.space.to_dict())
    assert restored.placed is True
    older = {"range": [1e-3, 1.0], "cap": 2.0, "auto": True, "informative": True}
    assert SearchSpace.from_dict(older).placed is False  # a state saved before: as it ran


@pytest.mark.parametrize("default_lr", [1e-6, 0.1, 50.0])
def test_the_log_names_the_rate_the_first_search_starts_at(default_lr):
    sweep, lrs = first_search(default_lr)
    assert sweep["start_lr"] == pytest.approx(lrs[0])


def test_a_budget_too_short_to_search_says_it_keeps_the_optimizer_s_rate():
    """About 30 to 130 steps: the range test runs, no stage fits, and the final decay starts
    from the optimizer's rate; the log must not name the anchor it never uses."""
    from autolrs.events import describe

    sweep, lrs = first_search(0.1, steps=100)
    assert not lrs and sweep["start_reason"] is None
    assert describe(sweep).endswith("starts from the optimizer's lr 0.1")
