"""The parts AutoLRS is built from, each on its own: the misuse detector (with a stand-in for
the scheduler), the group rates, the argument checks and the executor's replay recording."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSWarning, Config
from autolrs.exceptions import AutoLRSError, StateDictError
from autolrs.torch.arguments import check_arguments, check_state, default_sync_every, loss_value
from autolrs.torch.misuse import MisuseDetector, has_grad_scaler
from autolrs.torch.notices import OnceWarnings
from autolrs.torch.rates import GroupRates
from tests.torch.helpers import batches, make_data, make_model


@dataclass
class Progress:
    """A stand-in for the scheduler a detector watches over."""

    steps_taken: int = 0
    stage: int = 1
    phase: str = "trial"
    in_trial: bool = True


def optimizer(model=None, lr=0.1):
    model = model or nn.Linear(3, 1)
    return torch.optim.SGD(
        [{"params": [model.weight], "lr": lr}, {"params": [model.bias], "lr": lr / 10}],
        momentum=0.9,
    )


def backward_and_step(opt, step=True):
    params = [p for g in opt.param_groups for p in g["params"]]
    opt.zero_grad()
    sum((p ** 2).sum() for p in params).backward()
    if step:
        opt.step()


def detector(opt, owner=None, has_scaler=False):
    rates = GroupRates(opt)
    return MisuseDetector(owner or Progress(), opt, rates, OnceWarnings(), has_scaler=has_scaler)


# ------------------------------------------------------------------ GroupRates
def test_group_rates_keep_the_ratios_and_know_what_they_set():
    opt = optimizer()
    rates = GroupRates(opt)
    assert rates.top == 0.1 and rates.ratios == pytest.approx([1.0, 0.1])
    rates.set(0.5)
    assert rates.current() == pytest.approx([0.5, 0.05]) and rates.target == 0.5
    assert not rates.changed_elsewhere()
    opt.param_groups[1]["lr"] = 1.0
    assert rates.changed_elsewhere()
    rates.set(None)  # nothing to set
    assert rates.current()[1] == 1.0
    rates.set(0.5)  # the groups no longer hold what was set: written again
    assert rates.current() == pytest.approx([0.5, 0.05])


def test_group_rates_see_a_momentum_change_once_and_forget_on_reload():
    opt = optimizer()
    rates = GroupRates(opt)
    rates.set(0.2)
    opt.param_groups[0]["momentum"] = 0.5
    assert rates.momenta_changed() and not rates.momenta_changed()
    rates.reloaded()
    assert rates.applied == [] and not rates.changed_elsewhere()


# ------------------------------------------------------------------ MisuseDetector
def test_the_detector_counts_optimizer_steps_and_warns_once_when_they_go_unreported():
    opt = optimizer()
    misuse = detector(opt)
    backward_and_step(opt)
    assert misuse.optimizer_steps == 1
    with pytest.warns(AutoLRSWarning, match="optimizer.step\\(\\) ran 2 times without"):
        backward_and_step(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        backward_and_step(opt)  # said once
    assert misuse.optimizer_steps == 3


def test_the_detector_refuses_a_report_before_optimizer_step():
    opt = optimizer()
    misuse = detector(opt)
    backward_and_step(opt, step=False)  # gradients wait, no optimizer.step()
    with pytest.raises(RuntimeError, match="called before optimizer.step"):
        misuse.check_wiring()


def test_the_detector_expects_skipped_steps_with_a_grad_scaler():
    opt = optimizer()
    misuse = detector(opt, has_scaler=has_grad_scaler([torch.amp.GradScaler("cpu")]))
    backward_and_step(opt, step=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        misuse.check_wiring()
    assert misuse.reported_steps == 0


def test_the_detector_puts_its_rate_back_when_something_else_changed_it():
    opt = optimizer()
    misuse = detector(opt)
    misuse.rates.set(0.3)
    opt.param_groups[0]["lr"] = 1.0
    with pytest.warns(AutoLRSWarning, match="changed by something other than AutoLRS"):
        backward_and_step(opt)  # the pre-step hook restores 0.3 before the step
    assert misuse.rates.current() == pytest.approx([0.3, 0.03])


def test_a_newer_detector_takes_the_optimizer_over():
    opt = optimizer()
    first = detector(opt, owner=Progress(steps_taken=7))
    with pytest.warns(AutoLRSWarning, match="already driven by another AutoLRS instance"):
        second = detector(opt)
    assert first.superseded and first.hooks == () and second.hooks
    with pytest.raises(AutoLRSError, match="7 steps taken, stage 1, phase 'trial'"):
        first.check_still_driving()
    second.check_still_driving()


def test_the_detector_stops_a_loop_that_never_reports():
    opt = optimizer()
    misuse = detector(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutoLRSWarning)
        for _ in range(100):
            backward_and_step(opt)
    with pytest.raises(RuntimeError, match="ran 100 times without sched.step"):
        misuse.check_unreported()


def test_the_detector_says_once_that_the_budget_is_overrun():
    misuse = detector(optimizer())
    misuse.check_budget(10, 10)
    misuse.check_budget(5, None)
    with pytest.warns(AutoLRSWarning, match="training continues past total_steps=10"):
        misuse.check_budget(11, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        misuse.check_budget(12, 10)


# ------------------------------------------------------------------ argument checks
def test_check_arguments_returns_the_extra_state_and_the_device():
    model = nn.Linear(3, 1)
    extra, device = check_arguments(
        model, optimizer(model), val_fn=None, config=None, extra_state=(), sync_every=None,
        seed=None, log_file=None, tensorboard=None, snapshot_device="cpu",
    )
    assert extra == [] and device == torch.device("cpu")
    with pytest.raises(ValueError, match="none of the optimizer's 2 parameters"):
        check_arguments(
            model, optimizer(), val_fn=None, config=None, extra_state=(), sync_every=None,
            seed=None, log_file=None, tensorboard=None, snapshot_device=None,
        )


def test_default_sync_every_and_loss_value():
    opt = optimizer()
    assert default_sync_every(None, opt, False) == 1
    assert default_sync_every(None, opt, True) == 1 << 30
    assert default_sync_every(4, opt, True) == 4
    assert loss_value(2) == 2.0 and loss_value(torch.tensor(1.5)).item() == 1.5
    with pytest.raises(TypeError, match="0-d tensor"):
        loss_value(torch.ones(2))


def test_check_state_names_what_is_wrong():
    with pytest.raises(StateDictError, match="version"):
        check_state({"version": 0}, 1)
    with pytest.raises(StateDictError, match="misses key"):
        check_state({"version": 1}, 1)
    state = {"version": 1, "controller": {}, "snapshots": {}, "replay": {}, "lr_ratios": [1.0]}
    with pytest.raises(StateDictError, match="1 parameter groups, this optimizer has 2"):
        check_state(state, 2)
    check_state(state, 1)


# ------------------------------------------------------------------ the executor
def test_the_executor_records_fresh_batches_only_during_a_stages_trials():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AutoLRS(
        model, opt, total_steps=300, lr_range=(1e-3, 0.3), seed=0,
        config=Config(tau=40, candidates=3, min_trial_steps=4),
    )
    x, y = make_data()
    recorded_in = set()
    replay = sched._executor.replay
    phase, recorded = sched.phase, len(replay.batches)  # as wrap() draws the next batch
    for step, (xb, yb) in enumerate(sched.wrap(batches(x, y))):
        if step >= 120:
            break
        if len(replay.batches) > recorded:
            recorded_in.add(phase)
        assert sched._executor.records_batches == (sched.phase == "trial")
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        phase, recorded = sched.phase, len(replay.batches)
    assert recorded_in == {"trial"}
    sched.finish()
