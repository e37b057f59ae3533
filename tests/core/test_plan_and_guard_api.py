"""The public pieces of the stage plan and the stage guard that the studies call."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autolrs.core.config import Config
from autolrs.core.level import CommittedLevel
from autolrs.core.stage_guard import StageGuard
from autolrs.core.phases.trial_plan import stage_candidates
from autolrs.core.planning import first_tau, tau_plan


def test_tau_plan_starts_at_the_first_tau_and_caps_at_tau_max_factor():
    cfg = Config()
    taus = tau_plan(cfg, 1000)
    assert taus.nominal == first_tau(cfg, 1000)
    assert taus.maximum == max(taus.nominal, int(round(taus.nominal * cfg.tau_max_factor)))
    for _ in range(10):
        taus.advance(cfg.tau_growth)
    assert taus.nominal == taus.maximum and taus.stages_at_max > 0


def test_stage_candidates_follow_stage_candidates_with_a_budget():
    cfg = Config(stage_candidates=(6, 3, 1), candidates=6)
    ks = [stage_candidates(cfg, s, budgeted=True, holds_rate=True) for s in range(4)]
    assert ks == [6, 3, 1, 1]
    # a single-candidate stage with nothing to hold tries the full set
    assert stage_candidates(cfg, 2, budgeted=True, holds_rate=False) == 6
    # without a budget stage_candidates does not apply
    assert stage_candidates(cfg, 1, budgeted=False, holds_rate=True) == 6


def test_later_candidates_apply_from_the_second_stage():
    cfg = Config(stage_candidates=None, candidates=5, later_candidates=3)
    ks = [stage_candidates(cfg, s, budgeted=True, holds_rate=True) for s in range(3)]
    assert ks == [5, 3, 3]


def _level(seed: int) -> CommittedLevel:
    level = CommittedLevel()
    rng = np.random.default_rng(seed)
    for loss in 1.0 + 0.05 * rng.standard_normal(20):
        level.record(float(loss))
    level.begin_stage()
    return level


@pytest.mark.parametrize("seed", range(20))
def test_got_worse_fires_exactly_below_z_needed(seed):
    rng = np.random.default_rng(100 + seed)
    level = _level(seed)
    n = int(rng.integers(1, 12))
    losses = list(1.0 + rng.uniform(-0.05, 0.2) + 0.05 * rng.standard_normal(n))
    spread = float(rng.uniform(0.01, 0.1)) if seed % 2 else None
    guard = StageGuard(reference=level.reference, reference_spread=spread)
    zc = guard.z_needed(losses, level, n)
    for z in (0.5, 1.0, 2.5, 3.5, 5.0, 10.0):
        fired = guard.got_worse(losses, level, z, n)
        assert fired == (z < zc), (z, zc)


def test_z_needed_edges():
    level = CommittedLevel()
    assert StageGuard().z_needed([1.0] * 8, level, 8) == 0.0  # no reference
    assert StageGuard(reference=0.5).z_needed([1.0] * 2, level, 8) == 0.0  # too few
    assert StageGuard(reference=1.0).z_needed([1.0] * 8, level, 8) == 0.0  # within 2 %
    assert StageGuard(reference=1.0).z_needed([2.0] * 8, level, 8) == math.inf


def test_trial_level_is_the_median_and_robust_spread_of_the_tail():
    from autolrs.core.level import robust_std, trial_level

    assert trial_level([]) == (None, None)
    assert trial_level([1.0, 3.0]) == (2.0, None)
    tail = [1.0, 2.0, 4.0]
    assert trial_level(tail) == (2.0, robust_std(tail))
