"""The settings both framework callbacks keep, and the AutoLRS they build (no framework needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autolrs import Config
from autolrs.integrations._builder import SchedulerSettings, SettingsAttributes


def test_build_passes_the_settings_and_writes_the_log_on_the_leader_only(tmp_path):
    settings = SchedulerSettings(
        config=Config(tau=40, candidates=3, min_trial_steps=4), seed=3, lr_range=(1e-3, 0.3),
        log_file=str(tmp_path / "events.jsonl"), snapshot_device="cpu",
    )
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = settings.build(model, opt, total_steps=200, val_fn=None, leader=False)
    assert sched.lr_range == (1e-3, 0.3) and sched.config.tau == 40
    assert sched._controller.total_steps == 200 and sched.val_fn is None
    assert sched._executor.store.device == torch.device("cpu")
    assert sched._reporter.log.path is None  # not the leader: no log file
    sched.remove_hooks()
    leader = settings.build(model, opt, total_steps=200, val_fn=lambda: 1.0, leader=True)
    assert leader._reporter.log.path is not None and leader.val_fn() == 1.0
    leader.remove_hooks()


def test_a_val_fn_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="val_fn must be callable or None, got 3"):
        SchedulerSettings(val_fn=3)


def test_a_callbacks_settings_are_its_attributes_too():
    class Callback(SettingsAttributes):
        def __init__(self, **kwargs):
            self.settings = SchedulerSettings(**kwargs)

    callback = Callback(seed=1, total_steps=50)
    assert (callback.seed, callback.total_steps, callback.config) == (1, 50, None)
    callback.seed = 2
    assert callback.settings.seed == 2
