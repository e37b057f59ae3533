from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autolrs.core.search import BayesSearcher


def objective(lr: float, best: float, rng: np.random.Generator) -> float:
    """A noisy bowl in log-lr with its minimum at ``best``."""
    return (math.log10(lr) - math.log10(best)) ** 2 + 0.01 * float(rng.standard_normal())


@pytest.mark.parametrize("kappa", [1e6, 2.0], ids=["paper-kappa", "default-kappa"])
@pytest.mark.parametrize("best", [2e-3, 3e-2, 0.5])
def test_finds_minimum_within_factor_two(kappa, best):
    rng = np.random.default_rng(0)
    searcher = BayesSearcher(1e-4, 1.0, kappa=kappa, seed=1)
    for _ in range(10):
        lr = searcher.ask()
        searcher.tell(lr, objective(lr, best, rng))
    found = searcher.best().lr
    assert best / 2 <= found <= best * 2, (found, best)


def test_expected_improvement_also_converges():
    rng = np.random.default_rng(0)
    searcher = BayesSearcher(1e-4, 1.0, acquisition="ei", seed=1)
    for _ in range(10):
        lr = searcher.ask()
        searcher.tell(lr, objective(lr, 1e-2, rng))
    assert 5e-3 <= searcher.best().lr <= 2e-2


def test_paper_kappa_fills_the_space():
    searcher = BayesSearcher(1e-3, 1e-1, kappa=1e6, seed=0)
    lrs = []
    for _ in range(10):
        lr = searcher.ask()
        lrs.append(lr)
        searcher.tell(lr, 1.0 + 0.01 * len(lrs))
    u = sorted(searcher.to_unit(lr) for lr in lrs)
    assert max(np.diff([0.0, *u, 1.0])) < 0.3  # no large gap: a space-filling design


def test_proposals_stay_inside_bounds_and_do_not_repeat():
    searcher = BayesSearcher(1e-5, 1e-2, kappa=0.0, seed=3)
    seen = []
    for _ in range(12):
        lr = searcher.ask()
        assert 1e-5 * (1 - 1e-9) <= lr <= 1e-2 * (1 + 1e-9)
        assert all(abs(searcher.to_unit(lr) - searcher.to_unit(s)) > 1e-3 for s in seen)
        seen.append(lr)
        searcher.tell(lr, 1.0)  # flat objective: kappa=0 would repeat without the guard


def test_diverged_trials_get_stand_in_values():
    worst = BayesSearcher(1e-3, 1.0, diverged_value="worst", seed=0)
    worst.tell(1e-2, 1.0)
    worst.tell(1e-1, 2.0)
    worst.tell(1.0, None, diverged=True)
    values = worst.values()
    assert values[2] > 2.0 and values[2] < 10.0
    assert worst.best().lr == 1e-2
    penalty = BayesSearcher(1e-3, 1.0, diverged_value="penalty", seed=0)
    penalty.tell(1.0, None, diverged=True)
    assert penalty.values()[0] == 1e6
    with pytest.raises(LookupError, match="diverged"):
        penalty.best()


def test_state_round_trip_gives_the_same_next_proposal():
    searcher = BayesSearcher(1e-4, 1.0, kappa=2.0, seed=7)
    for value in (3.0, 1.0, 2.0):
        searcher.tell(searcher.ask(), value)
    state = json.loads(json.dumps(searcher.state_dict()))
    clone = BayesSearcher(1e-4, 1.0, kappa=2.0, seed=123)
    clone.load_state_dict(state)
    assert clone.ask() == searcher.ask()


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (1.0, 0.1), (-1.0, 1.0), (1e-3, math.inf)])
def test_bad_bounds_are_rejected(bounds):
    with pytest.raises(ValueError, match="0 < low < high"):
        BayesSearcher(*bounds)


def test_tell_rejects_non_finite_values():
    searcher = BayesSearcher(1e-3, 1.0)
    with pytest.raises(ValueError, match="diverged=True"):
        searcher.tell(1e-2, float("nan"))
    with pytest.raises(ValueError, match="positive"):
        searcher.tell(-1.0, 1.0)
