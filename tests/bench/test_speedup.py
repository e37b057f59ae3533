"""The fair protocol's maths: the tuned cosine's curve, b*(s), speed-ups and the bar checks."""

from __future__ import annotations

import math

import pytest

from autolrs.bench.fair_summary import never_behind_naive
from autolrs.bench.speedup import (
    SpeedUp,
    budget_to_reach,
    geomean,
    monotone_envelope,
    speedup,
)

# a power law s(b) = (b / 100) ** -0.5 is a straight line in (log b, log s): b*(s) = 100 s**-2
POWER = [(100, 1.0), (200, 2**-0.5), (400, 0.5)]


def test_envelope_is_the_running_minimum_over_increasing_budget():
    assert monotone_envelope([(400, 0.6), (100, 1.0), (200, 0.4)]) == [
        (100, 1.0),
        (200, 0.4),
        (400, 0.4),
    ]
    # diverged grid points (inf, nan, 0) cannot be placed in log-log and are dropped
    assert monotone_envelope([(100, math.inf), (200, 0.5), (400, math.nan), (800, 0.0)]) == [
        (200, 0.5)
    ]
    assert monotone_envelope([]) == []


@pytest.mark.parametrize("score", [0.9, 2**-0.5, 0.6, 0.55, 0.5])
def test_interpolation_is_exact_on_a_power_law(score):
    needed, bound = budget_to_reach(POWER, score)
    assert bound == "" and needed == pytest.approx(100 * score**-2, rel=1e-12)


def test_interpolation_is_linear_in_log_budget_and_log_score():
    curve = [(100, 1.0), (200, 0.5), (400, 0.4)]
    needed, bound = budget_to_reach(curve, 0.45)
    t = math.log(0.45 / 0.5) / math.log(0.4 / 0.5)  # 0.47216...
    assert bound == "" and needed == pytest.approx(200 * 2**t, rel=1e-12)
    assert needed == pytest.approx(277.44, abs=0.01)
    # on the first segment
    needed, _ = budget_to_reach(curve, 0.75)
    assert needed == pytest.approx(100 * 2 ** (math.log(0.75) / math.log(0.5)), rel=1e-12)


def test_a_score_on_a_curve_point_needs_exactly_that_budget():
    for budget, score in POWER:
        assert budget_to_reach(POWER, score) == (budget, "")


def test_a_flat_stretch_reaches_a_score_at_its_first_budget():
    assert budget_to_reach([(100, 1.0), (200, 0.5), (400, 0.5)], 0.5) == (200, "")


def test_a_non_monotone_curve_uses_its_envelope():
    curve = [(100, 1.0), (200, 0.4), (400, 0.6)]  # 400 steps did worse than 200: envelope 0.4
    needed, bound = budget_to_reach(curve, 0.5)
    t = math.log(0.5) / math.log(0.4)
    assert bound == "" and needed == pytest.approx(100 * 2**t, rel=1e-12)
    # better than the envelope's end: its last segment is flat, so the curve never gets there
    assert budget_to_reach(curve, 0.35) == (800, ">=")


def test_extrapolation_uses_the_nearest_slope_within_a_factor_two():
    # past the last point: b* = 100 s**-2 while it stays under 2 x 400
    needed, bound = budget_to_reach(POWER, 0.45)
    assert bound == "" and needed == pytest.approx(100 / 0.45**2, rel=1e-12)  # 493.8
    assert budget_to_reach(POWER, 0.3) == (800, ">=")  # 1111 clipped to 800
    # before the first point: likewise, down to 100 / 2
    needed, bound = budget_to_reach(POWER, 1.2)
    assert bound == "" and needed == pytest.approx(100 / 1.2**2, rel=1e-12)  # 69.4
    assert budget_to_reach(POWER, 2.0) == (50, "<=")  # 25 clipped to 50
    # a steeper first segment extrapolates with its own slope, not the last one's
    curve = [(100, 1.0), (200, 0.5), (400, 0.45)]
    needed, bound = budget_to_reach(curve, 1.5)
    assert bound == "" and needed == pytest.approx(100 * 2 ** (-math.log(1.5) / math.log(2)))
    # a flat first segment cannot be extrapolated downwards: clipped
    assert budget_to_reach([(100, 0.5), (200, 0.5), (400, 0.4)], 0.6) == (pytest.approx(50), "<=")


def test_a_single_point_curve_only_bounds():
    assert budget_to_reach([(400, 0.1)], 0.1) == (400, "")
    assert budget_to_reach([(400, 0.1)], 0.08) == (400, ">=")
    assert budget_to_reach([(400, 0.1)], 0.12) == (400, "<=")


def test_degenerate_scores_and_curves():
    assert budget_to_reach(POWER, math.inf) == (pytest.approx(50), "<=")  # diverged
    assert math.isnan(budget_to_reach(POWER, math.nan)[0])
    assert math.isnan(budget_to_reach([], 0.5)[0])
    assert math.isnan(budget_to_reach([(100, math.inf)], 0.5)[0])


def test_speedup_divides_by_the_budget_and_prints_its_bound():
    sp = speedup(POWER, 0.5, 200)  # the method's score at 200 steps, the cosine's at 400
    assert sp.value == pytest.approx(2.0) and sp.bound == "" and str(sp) == "2.00x"
    sp = speedup(POWER, 0.3, 200)
    assert sp.value == pytest.approx(4.0) and sp.bound == ">=" and str(sp) == ">=4.00x"
    sp = speedup(POWER, 3.0, 200)  # worse than the curve at 50 steps: at most 50 / 200
    assert sp.value == 0.25 and sp.bound == "<=" and str(sp) == "<=0.25x"
    assert str(SpeedUp(math.nan, math.nan)) == "-"
    assert speedup([], 0.5, 100).value != speedup([], 0.5, 100).value  # nan


def test_geomean():
    assert geomean([2.0, 0.5, 4.0]) == pytest.approx(4 ** (1 / 3))
    assert geomean([2.0, math.nan, math.inf]) == pytest.approx(2.0)
    assert math.isnan(geomean([]))


def test_never_behind_naive():
    naive = [0.10, 0.12, 0.08]  # median 0.10
    ok = never_behind_naive([0.1005, 0.090, 0.109], naive)
    assert ok["verdict"] == "PASS" and ok["median_ratio"] == pytest.approx(1.005)
    assert ok["worst_ratio"] == pytest.approx(1.09)
    slow_median = never_behind_naive([0.102, 0.102, 0.090], naive)
    assert slow_median["verdict"] == "FAIL" and not slow_median["median_ok"]
    assert slow_median["seeds_ok"]
    bad_seed = never_behind_naive([0.090, 0.095, 0.111], naive)
    assert bad_seed["verdict"] == "FAIL" and bad_seed["median_ok"] and not bad_seed["seeds_ok"]
    diverged = never_behind_naive([0.09, 0.09, math.inf], naive)
    assert diverged["verdict"] == "FAIL"
