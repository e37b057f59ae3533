"""Where a run's steps went: step_accounting over the controller's events."""

from __future__ import annotations

import math

import pytest

from autolrs.core import Config, StageController
from autolrs.events import ACCOUNTS, step_accounting
from autolrs.testing import NoisyQuadratic, drive


@pytest.mark.parametrize(
    "config,lr_range",
    [
        (Config(), None),
        (Config.paper(), (1e-3, 1.0)),
        (Config(warmup_steps=20, warmup_lr=0.1), None),
    ],
    ids=["default", "paper", "warmup"],
)
def test_every_step_is_accounted_for_once(config, lr_range):
    controller = StageController(config, total_steps=600, lr_range=lr_range, seed=0)
    record = drive(controller, NoisyQuadratic(seed=0), 600)
    accounts = step_accounting(record.events)
    assert set(accounts) == set(ACCOUNTS)
    assert sum(accounts.values()) == 600
    assert all(v >= 0 for v in accounts.values())
    if config.keep_winner:
        assert accounts["kept_trials"] > 0
    else:
        assert accounts["kept_trials"] == 0
    assert (accounts["warmup"] >= 20) == bool(config.warmup_steps)


def test_a_rolled_back_phase_is_counted_as_rolled_back():
    class Faulty(NoisyQuadratic):
        def train_step(self, lr):
            loss = super().train_step(lr)
            return math.nan if self.steps == 300 else loss

    controller = StageController(Config(), total_steps=600, seed=0)
    record = drive(controller, Faulty(seed=0), 600)
    accounts = step_accounting(record.events)
    assert sum(accounts.values()) == 600
    assert accounts["rolled_back"] >= 1
