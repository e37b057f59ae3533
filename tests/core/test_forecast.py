from __future__ import annotations

import math

import numpy as np
import pytest

from autolrs.core.forecast import (
    ExponentialForecaster,
    PaperExponentialForecaster,
    paper_trim,
)
from autolrs.testing import synthetic_curve

FORECASTERS = [ExponentialForecaster(), PaperExponentialForecaster()]


@pytest.mark.parametrize("forecaster", FORECASTERS, ids=["robust", "paper"])
def test_saturating_curve_is_extrapolated_well(forecaster):
    # The curve saturates inside the window: both fits should land near the floor.
    y = synthetic_curve(100, start=2.0, floor=0.5, time_constant=20.0, noise=0.01, seed=1)
    fit = forecaster.fit(np.arange(100.0), y, horizon=1000)
    assert fit.fallback is None
    assert abs(fit.predict(1000) - 0.5) < 0.1


def test_robust_fit_of_a_saturating_curve_explains_the_data():
    y = synthetic_curve(100, start=2.0, floor=0.5, time_constant=20.0, noise=0.01, seed=1)
    fit = ExponentialForecaster().fit(np.arange(100.0), y, horizon=1000)
    assert fit.r2 > 0.99 and fit.noise < 0.02


def test_robust_fit_recovers_parameters_without_noise():
    x = np.arange(60.0)
    y = 0.3 + 1.2 * np.exp(-x / 15.0)
    fit = ExponentialForecaster().fit(x, y, horizon=600)
    assert fit.rate == pytest.approx(1 / 15.0, rel=0.05)
    assert fit.c == pytest.approx(0.3, abs=0.02)
    assert fit.predict(600) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("seed", range(8))
def test_nearly_linear_windows_never_give_negative_or_wild_forecasts(seed):
    # A window far from saturation (time constant 30x the window): the paper's fit may
    # extrapolate it linearly below zero (as the original does); the robust one must stay within
    # the data's scale.
    y = synthetic_curve(100, start=2.0, floor=0.5, time_constant=3000.0, noise=0.05, seed=seed)
    paper = PaperExponentialForecaster().fit(np.arange(100.0), y, horizon=1000).predict(1000)
    assert math.isfinite(paper)
    robust = ExponentialForecaster().fit(np.arange(100.0), y, horizon=1000).predict(1000)
    assert 0.0 < robust <= y.max() + 0.05
    # The truth at 1000 is about 1.58; the robust forecast stays in the right region.
    assert abs(robust - 1.58) < 0.8


def test_robust_error_is_smaller_than_paper_on_nearly_linear_windows():
    errors = {"robust": [], "paper": []}
    for seed in range(12):
        y = synthetic_curve(100, start=2.0, floor=0.5, time_constant=1000.0, noise=0.05, seed=seed)
        truth = 0.5 + 1.5 * math.exp(-1000 / 1000.0)
        for name, f in zip(("robust", "paper"), FORECASTERS):
            errors[name].append(abs(f.fit(np.arange(100.0), y, horizon=1000).predict(1000) - truth))
    assert np.median(errors["robust"]) < np.median(errors["paper"])


@pytest.mark.parametrize("forecaster", FORECASTERS, ids=["robust", "paper"])
def test_short_and_flat_series_fall_back_to_their_level(forecaster):
    fit = forecaster.fit([0, 1, 2], [1.0, 0.9, 0.8], horizon=100)
    assert fit.fallback is not None and math.isfinite(fit.predict(100))
    flat = ExponentialForecaster().fit(np.arange(20.0), np.full(20, 0.7), horizon=200)
    assert flat.fallback == "flat series" and flat.predict(200) == pytest.approx(0.7)


def test_increasing_series_forecast_is_finite_and_not_below_data():
    x = np.arange(50.0)
    y = 1.0 + 0.02 * x + 0.01 * np.random.default_rng(0).standard_normal(50)
    value = ExponentialForecaster().fit(x, y, horizon=500).predict(500)
    assert math.isfinite(value) and value >= y.min() - 0.1


def test_negative_series_are_allowed_without_the_nonnegative_constraint():
    x = np.arange(40.0)
    y = -1.0 - np.exp(-x / 10.0)
    fit = ExponentialForecaster().fit(x, y, horizon=400)
    assert not fit.nonnegative
    assert fit.predict(400) == pytest.approx(-1.0, abs=0.05)


def test_outliers_in_first_half_are_trimmed():
    y = synthetic_curve(100, time_constant=30.0, noise=0.005, seed=3)
    y[[5, 10, 20]] += 3.0
    kept = paper_trim(y)
    assert not kept[[5, 10, 20]].any()
    assert kept[50:].all()
    assert 3 <= (~kept).sum() <= 30  # at most 3 points a pass, 10 passes, first half only


def test_validation_trimming_drops_at_most_the_largest_first_half_residual():
    y = synthetic_curve(16, time_constant=5.0, noise=0.001, seed=0)
    y[3] += 1.0
    assert np.flatnonzero(~paper_trim(y, validation=True)).tolist() == [3]
    late = synthetic_curve(16, time_constant=5.0, noise=0.001, seed=0)
    late[12] += 1.0  # the largest residual lies in the second half: nothing is dropped
    assert paper_trim(late, validation=True).all()


def test_short_training_series_keep_every_point():
    # Below 17 points round(3 %) is 0: the original's slice then drops every first-half point
    # each pass until its spline fails; ours drops none.
    assert paper_trim(synthetic_curve(16, time_constant=5.0, noise=0.01, seed=1)).all()


@pytest.mark.parametrize("bad", [[1.0, float("nan"), 2.0, 3.0, 4.0], [1.0, float("inf"), 2.0, 1.0]])
def test_non_finite_input_is_rejected(bad):
    with pytest.raises(ValueError, match="finite"):
        ExponentialForecaster().fit(np.arange(len(bad), dtype=float), bad, horizon=10)


def test_mismatched_lengths_and_unsorted_x_are_rejected():
    with pytest.raises(ValueError, match="same length"):
        ExponentialForecaster().fit([0, 1, 2], [1.0, 2.0], horizon=10)
    with pytest.raises(ValueError, match="increasing"):
        ExponentialForecaster().fit([0, 2, 1, 3], [1.0, 2.0, 1.0, 0.5], horizon=10)
