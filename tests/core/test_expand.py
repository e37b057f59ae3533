"""The expanding search (``autolrs.core.expand``): where it walks, when it stops, its state."""

from __future__ import annotations

import json
import math

import pytest

from autolrs.core import Config
from autolrs.core.expand import ExpandSearcher, grid_point
from autolrs.core.phases.trial_plan import _expand_interval, eligible, expand_center
from tests.core.phases.helpers import context

STEP = math.sqrt(10.0)


def bowl(best: float, depth: float = 1.0):
    """A loss valley in log-lr with its bottom at ``best`` (lower is better)."""
    return lambda lr: 1.0 + depth * (math.log10(lr) - math.log10(best)) ** 2


class _Tried:
    def __init__(self, lr: float, value: float) -> None:
        self.lr, self.value, self.diverged = lr, value, False


def walk(searcher: ExpandSearcher, score) -> list[float]:
    tried = []
    while not searcher.exhausted:
        lr = searcher.ask()
        tried.append(lr)
        value = score(lr)
        searcher.tell(lr, value, diverged=value is None)
    return tried


@pytest.mark.parametrize("start_factor", [0.01, 0.1, 1.0, 10.0])
def test_walks_to_the_valley_from_two_decades_either_side(start_factor):
    best = 0.1
    s = ExpandSearcher(best * start_factor, 1e-6, 10.0, factor=STEP, max_steps=4)
    tried = walk(s, bowl(best))
    found = min(tried, key=bowl(best))
    assert best / 1.01 <= found <= best * 1.01, tried
    assert len(tried) <= 6


def test_a_step_up_that_wins_rules_out_the_way_down():
    s = ExpandSearcher(0.01, 1e-6, 10.0, factor=STEP)
    tried = walk(s, bowl(0.05))
    assert all(lr >= 0.01 for lr in tried), tried


def test_stays_inside_its_interval_and_reach():
    s = ExpandSearcher(0.01, 0.005, 0.02, factor=2.0, max_steps=4)
    tried = walk(s, lambda lr: 1.0 / lr)  # always better higher: stops at the interval's top
    assert max(tried) <= 0.02 * (1 + 1e-9) and min(tried) >= 0.005 * (1 - 1e-9)
    s = ExpandSearcher(1e-3, 1e-9, 1e3, factor=STEP, max_steps=2)
    tried = walk(s, lambda lr: 1.0 / lr)
    # still improving at the reach: one probe beyond it, which never wins
    assert max(tried) == pytest.approx(1e-2 * STEP)
    assert s.choose([_Tried(lr, 1.0 / lr) for lr in tried]).lr == pytest.approx(1e-2)
    later = ExpandSearcher(1e-3, 1e-9, 1e3, factor=STEP, max_steps=2, progress_share=None)
    assert max(walk(later, lambda lr: 1.0 / lr)) == pytest.approx(1e-2)  # no probe later


def test_ties_stop_the_walk_within_the_margin():
    score = lambda lr: 1.0 - 0.02 * math.log10(lr)  # noqa: E731  (2 % better per decade up)
    # a search that is not from near the initial model stops at the first tie either way
    s = ExpandSearcher(0.1, 1e-6, 10.0, factor=STEP, margin=0.02, progress_share=None)
    assert walk(s, score) == pytest.approx([0.1, 0.1 * STEP, 0.1 / STEP])
    # from near the initial model (the start's loss known, far above) the walk down goes on
    # while the best (1.01, at 0.316) does not beat a step beyond the margin: 1.03 ties with
    # it, 1.04 does not; 0.0316 wins
    first = ExpandSearcher(0.1, 1e-6, 10.0, factor=STEP, margin=0.02, reference=2.0)
    tried = walk(first, score)
    assert tried == pytest.approx([0.1, 0.1 * STEP, 0.1 / STEP, 0.01])
    assert first.choose([_Tried(lr, score(lr)) for lr in tried]).lr == pytest.approx(0.1 / STEP)


def test_a_first_search_walks_down_through_ties_to_where_they_end():
    # the char transformer from 10x its tuned rate (validation losses of 10-step trials; the
    # snapshot's 4.4): 2.15e-2 and 6.8e-3 tie, the walk used to stop there and hold 6.8e-3
    scores = {2.15e-2: 3.445, 6.8e-2: 3.994, 6.8e-3: 3.432, 2.15e-3: 3.48, 6.8e-4: 3.80}
    s = ExpandSearcher(2.15e-2, 1e-6, 1.0, factor=STEP, reference=4.4)
    tried = walk(s, lambda lr: scores[min(scores, key=lambda k: abs(math.log(k / lr)))])
    assert tried == pytest.approx([2.15e-2, 6.8e-2, 6.8e-3, 2.15e-3, 6.8e-4], rel=0.01)
    winner = s.choose([_Tried(lr, scores[min(scores, key=lambda k: abs(math.log(k / lr)))])
                       for lr in tried])
    assert winner.lr == pytest.approx(2.15e-3, rel=0.01)


def test_far_too_small_rates_are_told_apart_by_their_progress():
    # every trial barely moves the loss from the reference 2.3026, yet each step up makes
    # three times the progress: the walk goes on (the relative margin alone would stop it)
    ref = 2.3026
    s = ExpandSearcher(1e-3, 1e-6, 10.0, factor=STEP, reference=ref)
    tried = walk(s, lambda lr: ref - 0.4 * min(lr, 0.1))
    assert max(tried) == pytest.approx(1e-3 * STEP**5)  # the probe beyond the reach
    winner = s.choose([_Tried(lr, ref - 0.4 * min(lr, 0.1)) for lr in tried])
    assert winner.lr == pytest.approx(1e-3 * STEP**4)
    # the relative margin alone: one step up, one down, no more
    plain = ExpandSearcher(1e-3, 1e-6, 10.0, factor=STEP, progress_share=None)
    assert walk(plain, lambda lr: ref - 0.4 * min(lr, 0.1)) == pytest.approx(
        [1e-3, 1e-3 * STEP, 1e-3 / STEP])


def test_a_rate_next_to_one_that_breaks_training_is_at_the_edge():
    ref = 2.3
    scores = {0.1: 2.24, 0.1 * STEP: 2.14, 1.0: 2.39}  # 1.0 ends above where trials start
    s = ExpandSearcher(0.1, 1e-6, 10.0, factor=STEP, reference=ref)
    walk(s, lambda lr: scores[min(scores, key=lambda k: abs(math.log(k / lr)))])
    assert s.at_edge(0.1 * STEP) and s.at_edge(0.1)  # two steps below 1.0
    assert not s.at_edge(0.01)
    diverged = ExpandSearcher(0.1, 1e-6, 10.0, factor=STEP)
    diverged.tell(0.1, 1.0)
    diverged.tell(0.1 * STEP, None, diverged=True)
    assert diverged.at_edge(0.1)


def test_no_step_up_from_a_centre_that_breaks_training():
    s = ExpandSearcher(1.0, 1e-6, 10.0, factor=STEP, reference=2.3)
    s.tell(1.0, 2.9)
    assert s.ask() == pytest.approx(1.0 / STEP)


def test_state_round_trips_through_json():
    s = ExpandSearcher(0.01, 1e-5, 1.0, factor=STEP, max_steps=3, margin=0.05, reference=2.0)
    s.tell(0.01, 1.5)
    s.tell(0.01 * STEP, None, diverged=True)
    state = json.loads(json.dumps(s.state_dict()))
    t = ExpandSearcher.from_state(state)
    assert t.state_dict() == s.state_dict()
    assert t.ask() == s.ask()


def test_asking_when_exhausted_says_so():
    s = ExpandSearcher(0.01, 0.01, 0.01)
    s.tell(0.01, 1.0)
    assert s.exhausted
    with pytest.raises(RuntimeError, match="exhausted"):
        s.ask()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="factor > 1"):
        ExpandSearcher(0.01, 1e-5, 1.0, factor=1.0)


def test_a_later_search_looks_only_up_and_on_the_margin_alone():
    ref = 0.55
    s = ExpandSearcher(0.1, 1e-6, 10.0, factor=STEP, reference=ref, progress_share=None,
                       up_only=True)
    s.tell(0.1, 0.536)
    assert s.ask() == pytest.approx(0.1 * STEP)
    s.tell(0.1 * STEP, 0.595)
    assert s.exhausted  # no step down: a short trial from a trained model favours small rates
    # 2.6 % better but within the progress rule only: the centre stays without it
    s = ExpandSearcher(0.1, 1e-6, 10.0, factor=STEP, reference=ref, progress_share=None)
    s.tell(0.1, 0.496)
    s.tell(0.1 / STEP, 0.4945)

    class C:
        def __init__(self, lr, value):
            self.lr, self.value = lr, value

    assert s.choose([C(0.1, 0.496), C(0.1 / STEP, 0.4945)]).lr == 0.1


def test_a_first_search_takes_the_lowest_rate_the_best_does_not_beat_beyond_noise():
    # From near the initial model: the hint (the centre) has no say, ties go to the lower rate.
    s = ExpandSearcher(2e-4, 1e-6, 1.0, factor=STEP, reference=4.56)
    tried = [_Tried(2e-4, 4.07), _Tried(6.8e-4, 3.83), _Tried(2.15e-3, 3.499),
             _Tried(6.8e-3, 3.484)]
    assert s.choose(tried).lr == 2.15e-3  # 6.8e-3 is 0.4 % better: noise
    assert s.choose(tried[:3]).lr == 2.15e-3  # beyond noise, the best wins
    # whatever the centre: the same candidates give the same winner
    s_high = ExpandSearcher(6.8e-3, 1e-6, 1.0, factor=STEP, reference=4.56)
    assert s_high.choose(tried).lr == 2.15e-3
    # a later search keeps the centre on a tie (a short trial from a trained model favours
    # small rates)
    later = ExpandSearcher(6.8e-3, 1e-6, 1.0, factor=STEP, reference=4.56, progress_share=None)
    assert later.choose(tried[2:]).lr == 6.8e-3
    later = ExpandSearcher(2.15e-3, 1e-6, 1.0, factor=STEP, reference=4.56, progress_share=None)
    assert later.choose(tried[2:]).lr == 2.15e-3  # not the 0.4 % better 6.8e-3: noise


def test_a_first_search_goes_on_below_the_edge_when_every_rate_tried_sits_at_it():
    # Digits from 10x the tuned rate: 1.0 wins its short trial next to a failing 3.16, 0.316 is
    # worse than 1.0; both lie at the edge, so the search tries 0.1 and only 0.1 may win.
    scores = {1.0: 1.48, STEP: 2.52, 1 / STEP: 2.18, 0.1: 2.27, 0.1 / STEP: 2.29}

    def score(lr):
        return scores[min(scores, key=lambda k: abs(math.log(k / lr)))]

    s = ExpandSearcher(1.0, 1e-5, 10.0, factor=STEP, reference=2.30)
    tried = walk(s, score)
    assert tried == pytest.approx([1.0, STEP, 1 / STEP, 0.1])
    assert [s.at_edge(lr) or s.broke(lr) for lr in tried] == [True, True, True, False]
    # a later search leaves it to the guards; so does one whose rates do not break
    later = ExpandSearcher(1.0, 1e-5, 10.0, factor=STEP, reference=2.30, progress_share=None)
    assert walk(later, score) == pytest.approx([1.0, STEP, 1 / STEP])
    calm = ExpandSearcher(1.0, 1e-5, 10.0, factor=STEP, reference=2.30)
    assert walk(calm, lambda lr: 2.0 if lr > 0.5 else 2.1) == pytest.approx([1.0, STEP, 1 / STEP])


def test_a_probe_beyond_the_reach_that_breaks_puts_the_rates_below_it_at_the_edge():
    # Digits from 1/10 of the tuned rate: every step up wins its short trial up to 1.0 (the
    # reach); the probe at 3.16 breaks, so 1.0 and 0.316 lie at its edge and 0.1 wins.
    scores = {0.01: 2.300, 0.01 * STEP: 2.293, 0.1: 2.27, 1 / STEP: 2.14, 1.0: 1.35, STEP: 2.52}

    def score(lr):
        return scores[min(scores, key=lambda k: abs(math.log(k / lr)))]

    s = ExpandSearcher(0.01, 1e-5, 10.0, factor=STEP, reference=2.30)
    tried = walk(s, score)
    assert tried == pytest.approx([0.01, 0.01 * STEP, 0.1, 1 / STEP, 1.0, STEP])
    results = [_Tried(lr, score(lr)) for lr in tried]
    assert s.choose(eligible(results, s)).lr == pytest.approx(0.1)
    # a probe that does not break never wins; alone, the best of those beyond the reach does
    calm = ExpandSearcher(0.01, 1e-5, 10.0, factor=STEP, reference=2.30)
    tried = walk(calm, lambda lr: 2.3 - 0.1 * lr)
    assert max(tried) == pytest.approx(STEP)
    winner = calm.choose(eligible([_Tried(lr, 2.3 - 0.1 * lr) for lr in tried], calm))
    assert winner.lr == pytest.approx(1.0)
    assert calm.choose([_Tried(STEP, 2.0)]).lr == STEP


def test_only_a_first_search_s_interval_leaves_room_for_the_probe():
    cfg = Config()
    ctx = context(cfg, total_steps=1000, validation=True)
    ctx.run.space.found(1e-5, 10.0, 100.0)
    low, high = _expand_interval(ctx, 1e-3)
    assert (low, high) == pytest.approx((1e-5, 1e-1 * STEP))
    ctx.run.last_lr = 1e-3  # a stage committed: a later search reaches 100x, no probe
    assert _expand_interval(ctx, 1e-3)[1] == pytest.approx(1e-1)


@pytest.mark.parametrize(
    ("rate", "point"),
    [(0.1, 0.1), (0.07, 0.1), (0.05, 10**-1.5), (0.2, 10**-0.5), (2.15e-3, 10**-2.5), (1e-4, 1e-4)],
)
def test_grid_points_are_the_half_decades(rate, point):
    assert grid_point(rate, STEP) == pytest.approx(point)


def test_a_grid_point_outside_the_bounds_is_the_next_one_inside():
    assert grid_point(0.2, STEP, high=0.25) == pytest.approx(0.1)
    assert grid_point(0.2, STEP, high=0.5) == pytest.approx(10**-0.5)
    assert grid_point(0.05, STEP, low=0.05) == pytest.approx(0.1)
    assert grid_point(0.06, STEP, 1e-3, 0.07) == pytest.approx(10**-1.5)
    assert grid_point(0.06, STEP, 0.05, 0.07) == pytest.approx(0.06)  # no point inside: as is


@pytest.mark.parametrize(("given", "start", "inside"), [
    ((1e-3, 0.07), 0.06, 10**-1.5), ((0.05, 1.0), 0.05, 0.1), ((1.5e-3, 1.0), 5e-5, 10**-2.5),
])
def test_the_grid_start_stays_inside_a_range_the_user_gave(given, start, inside):
    ctx = context(Config(), lr_range=given, total_steps=1000)
    ctx.run.default_lr = start
    center = expand_center(ctx, 6)
    assert given[0] <= center <= given[1] and center == pytest.approx(inside)


def test_without_the_start_s_loss_the_walk_down_stops_at_the_first_tie():
    # no reference (a given range and no val_fn): every rate far too small would tie on the
    # relative margin alone, and the walk through ties would end at the bottom of the reach
    score = lambda lr: 2.30 - 0.4 * min(lr, 0.1)  # noqa: E731
    s = ExpandSearcher(1e-3, 1e-6, 10.0, factor=STEP)
    assert walk(s, score) == pytest.approx([1e-3, 1e-3 * STEP, 1e-3 / STEP])


@pytest.mark.parametrize("factor", [0.5, 0.7, 1.0, 1.3])
def test_the_first_search_starts_on_the_grid_whatever_the_optimizer_s_digits(factor):
    # 0.05, 0.07, 0.1 and 0.13 all search the same rates: the grid through 0.1
    ctx = context(Config(), lr_range=(1e-4, 10.0), total_steps=1000)
    ctx.run.default_lr = 0.1 * factor
    center = expand_center(ctx, 6)
    assert center in (pytest.approx(10**-1.5), pytest.approx(0.1))
    assert abs(math.log10(center) * 2 - round(math.log10(center) * 2)) < 1e-9
