from __future__ import annotations

import math

import numpy as np
import pytest

from autolrs.core.range_test import divergence_index, suggest_range, sweep_lrs


def test_sweep_is_exponential_between_bounds():
    lrs = sweep_lrs(1e-6, 1.0, 7)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)


def sgd_like(lrs):
    """Loss falls once lr > 1e-3, best near 0.1, explodes past 1."""
    out = []
    loss = 2.3
    for lr in lrs:
        if lr > 1.0:
            loss *= 3.0
        elif lr > 1e-3:
            loss *= 1.0 - 0.15 * min(1.0, lr / 0.1)
        out.append(loss if loss < 1e30 else math.inf)
    return out


def adam_like(lrs):
    """Loss falls from 1e-4 on, then stalls near chance level (no explosion) past 0.05."""
    out, loss = [], 2.3
    for lr in lrs:
        if lr > 0.05:
            loss = 2.3 + 0.2 * math.sin(lr)
        elif lr > 1e-4:
            loss *= 0.9
        out.append(loss)
    return out


def test_sgd_like_sweep_is_capped_at_divergence():
    lrs = sweep_lrs(1e-7, 10.0, 80)
    s = suggest_range(lrs, sgd_like(lrs), decades=3.0)
    assert s.diverged_lr is not None and 1.0 < s.diverged_lr < 3.0
    assert s.high <= s.diverged_lr
    assert s.low == pytest.approx(s.high / 1000)
    assert s.low < 0.05 < s.high


def test_adam_like_sweep_without_divergence_is_anchored_at_the_best_point():
    lrs = sweep_lrs(1e-7, 10.0, 80)
    s = suggest_range(lrs, adam_like(lrs), decades=3.0)
    assert 0.01 < s.best_lr < 0.1
    assert s.high == pytest.approx(0.5 * s.best_lr)
    assert s.low < 1e-3 < s.high


def test_divergence_on_non_finite_loss():
    assert divergence_index([2.0, 1.9, float("nan"), 1.0]) == 2
    assert divergence_index([2.0, 1.5, 1.0, 0.8]) is None


def test_truncated_sweep_is_accepted():
    lrs = sweep_lrs(1e-7, 10.0, 50)
    s = suggest_range(lrs, [2.0, 2.0, math.inf], decades=2.0)
    assert s.stop_index == 2 and 0 < s.low < s.high <= lrs[2]
    with pytest.raises(ValueError, match="no loss"):
        suggest_range(lrs, [], decades=2.0)
