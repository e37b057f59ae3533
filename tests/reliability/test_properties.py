"""Property-based tests of the forecaster, the searcher and the controller's state."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolrs import Config
from autolrs.core import ExponentialForecaster, PaperExponentialForecaster, StageController
from autolrs.core.search import BayesSearcher

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
nonneg = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    y=st.lists(finite, min_size=1, max_size=60),
    horizon=st.floats(min_value=1.0, max_value=1e5),
    paper=st.booleans(),
)
def test_any_finite_series_gives_a_finite_forecast(y, horizon, paper):
    forecaster = PaperExponentialForecaster() if paper else ExponentialForecaster()
    value = forecaster.fit(np.arange(len(y), dtype=float), y, horizon=horizon).predict(horizon)
    assert math.isfinite(value)


@SETTINGS
@given(
    y=st.lists(nonneg, min_size=1, max_size=60),
    horizon=st.floats(min_value=1.0, max_value=1e5),
)
def test_non_negative_series_give_non_negative_robust_forecasts(y, horizon):
    # The paper's forecaster returns negative forecasts as the original does; the robust one never.
    value = ExponentialForecaster().fit(np.arange(len(y), dtype=float), y, horizon=horizon).predict(
        horizon
    )
    assert math.isfinite(value) and value >= 0.0


@SETTINGS
@given(
    low_exp=st.floats(min_value=-8, max_value=0),
    width=st.floats(min_value=0.1, max_value=6),
    values=st.lists(st.one_of(finite, st.none()), min_size=0, max_size=8),
    kappa=st.sampled_from([0.0, 2.0, 1e6]),
    acquisition=st.sampled_from(["lcb", "ei"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_proposals_always_lie_inside_the_range(low_exp, width, values, kappa, acquisition, seed):
    low, high = 10**low_exp, 10 ** (low_exp + width)
    searcher = BayesSearcher(low, high, kappa=kappa, acquisition=acquisition, seed=seed, diverged_value="worst")
    for value in values:
        lr = searcher.ask()
        assert low * (1 - 1e-9) <= lr <= high * (1 + 1e-9)
        searcher.tell(lr, value, diverged=value is None)
    lr = searcher.ask()
    assert low * (1 - 1e-9) <= lr <= high * (1 + 1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    losses=st.lists(
        st.one_of(st.floats(min_value=0.0, max_value=50.0), st.just(math.nan), st.just(math.inf)),
        min_size=1,
        max_size=300,
    ),
    total=st.one_of(st.none(), st.integers(min_value=1, max_value=600)),
    paper=st.booleans(),
    validation=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_state_dict_round_trips_for_reachable_states(losses, total, paper, validation, seed):
    config = Config.paper(tau=40, min_trial_steps=2) if paper else Config(tau=40)
    if total is not None:
        losses = losses[:total]
    a = StageController(config, total_steps=total, validation=validation, seed=seed)
    a.start()
    for loss in losses:
        actions = a.tell_loss(loss)
        while actions and type(actions[-1]).__name__ == "Evaluate":
            actions = a.tell_validation(1.0)
    state = json.loads(json.dumps(a.state_dict()))
    b = StageController(Config(), seed=12345)
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    for loss in (1.0, 0.9, 0.8, math.nan, 0.7):
        if total is not None and a.step >= total:
            break
        out_a, out_b = a.tell_loss(loss), b.tell_loss(loss)
        assert out_a == out_b
        while out_a and type(out_a[-1]).__name__ == "Evaluate":
            out_a, out_b = a.tell_validation(0.5), b.tell_validation(0.5)
            assert out_a == out_b
