"""Misuses of AutoLRS found at first contact (docs/bad-input.md entries 36-43): tensor learning
rates, two instances on one optimizer, a GradScaler left out of extra_state, arguments of the
wrong kind, and an optimizer over another model's parameters."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSWarning, Config
from autolrs.exceptions import AutoLRSError

from tests.torch.helpers import batches, make_data, make_model, train

SMALL = Config(tau=40, candidates=3, min_trial_steps=4)


def build(opt_factory=None, **kwargs):
    model = make_model()
    opt = opt_factory(model) if opt_factory else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kwargs.setdefault("lr_range", (1e-3, 0.3))
    kwargs.setdefault("config", SMALL)
    kwargs.setdefault("seed", 0)
    sched = AutoLRS(model, opt, **kwargs)
    x, y = make_data()
    return model, opt, sched, batches(x, y)


def hooks_of(opt):
    return len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


# ------------------------------------------------------------------ a. tensor learning rates
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_tensor_learning_rate_is_kept_and_raises_no_false_warning(dtype):
    model, opt, sched, data = build(lambda m: torch.optim.Adam(m.parameters(), lr=torch.tensor(1e-3, dtype=dtype)))
    used = []
    opt.register_step_pre_hook(lambda o, *_: used.append(o.param_groups[0]["lr"].item()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)  # the false "another LR scheduler?" warning
        train(sched, model, opt, data, 120)
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.dtype == dtype  # updated in place, never a float
    assert len({round(v, 10) for v in used}) > 3  # candidates did change it
    assert any(e["event"] == "decision" for e in sched.events)  # trials were rolled back
    assert isinstance(sched.get_last_lr()[0], float)


def test_a_tensor_learning_rate_changed_by_something_else_is_still_reported():
    model, opt, sched, data = build(lambda m: torch.optim.Adam(m.parameters(), lr=torch.tensor(1e-3)))
    train(sched, model, opt, data, 3)
    expected = opt.param_groups[0]["lr"].item()
    opt.param_groups[0]["lr"].fill_(expected / 2)  # as a torch scheduler changes a tensor lr
    with pytest.warns(AutoLRSWarning, match="another LR scheduler"):
        train(sched, model, opt, data, 1)
    assert opt.param_groups[0]["lr"].item() in (expected, sched.get_last_lr()[0])


# ------------------------------------------------------------------ b. two instances, one optimizer
def test_b_a_second_autolrs_on_a_driven_optimizer_names_the_earlier_one_and_takes_over():
    model, opt, first, data = build()
    train(first, model, opt, data, 10)  # the first notebook run
    stale = f"{id(first):#x}"
    with pytest.warns(AutoLRSWarning, match="already driven by another AutoLRS instance created earlier") as record:
        second = AutoLRS(model, opt, lr_range=(1e-3, 0.3), config=SMALL, seed=0)  # the cell re-run
    message = str(record[0].message)
    assert stale in message and "10 steps taken" in message
    assert "create only one per optimizer" in message and "rebuild the optimizer" in message
    assert hooks_of(opt) == 2  # only the newest instance's hooks are left
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)  # no generic "another LR scheduler?"
        train(second, model, opt, data, 60)
    assert second.steps_taken == 60
    with pytest.raises(AutoLRSError, match="no longer drives its optimizer"):
        first.step(1.0)


def test_b_an_unused_earlier_instance_is_replaced_silently():
    model, opt, first, data = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        second = AutoLRS(model, opt, lr_range=(1e-3, 0.3), config=SMALL, seed=0)
        train(second, model, opt, data, 30)
    assert hooks_of(opt) == 2
    first.remove_hooks()  # harmless on a detached instance


def test_b_an_instance_whose_hooks_were_removed_does_not_count():
    model, opt, first, data = build()
    train(first, model, opt, data, 10)
    with pytest.warns(AutoLRSWarning, match="the training loop ended during stage 1's trials"):
        first.finish()  # mid-trial: says what it restored
    first.remove_hooks()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        second = AutoLRS(model, opt, lr_range=(1e-3, 0.3), config=SMALL, seed=0)
        train(second, model, opt, data, 5)


# ------------------------------------------------------------------ c. GradScaler not in extra_state
def amp_step(model, opt, scaler, sched, xb, yb):
    loss = nn.functional.mse_loss(model(xb), yb)
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)  # skips opt.step() when the scaled gradients overflow
    scaler.update()
    sched.step(loss)


def test_c_a_step_skipped_by_a_grad_scaler_suggests_extra_state():
    model, opt, sched, data = build()
    scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))  # every step overflows
    with pytest.warns(AutoLRSWarning, match=r"gradients hold inf/nan.*extra_state=\[scaler\]"):
        amp_step(model, opt, scaler, sched, *next(data))
    assert sched.optimizer_steps == 0


def test_c_a_skipped_step_after_earlier_steps_suggests_extra_state():
    model, opt, sched, data = build()
    train(sched, model, opt, data, 5)
    opt.zero_grad(set_to_none=True)  # no gradients left to inspect
    with pytest.warns(AutoLRSWarning, match=r"a step was skipped.*extra_state=\[scaler\]"):
        sched.step(1.0)


def test_c_no_warning_with_the_scaler_in_extra_state():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    sched = AutoLRS(model, opt, lr_range=(1e-3, 0.3), config=SMALL, seed=0, extra_state=[scaler])
    x, y = make_data()
    data = batches(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        for _ in range(3):
            amp_step(model, opt, scaler, sched, *next(data))


# ------------------------------------------------------------------ d. arguments of the wrong kind
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"log_file": 123}, TypeError, r"log_file must be a path \(str or os.PathLike\) or None, got int"),
        ({"log_file": ["run.jsonl"]}, TypeError, "log_file"),
        ({"snapshot_device": "gpu"}, ValueError, r"snapshot_device='gpu' is not a device; accepted: 'cpu', 'cuda', 'cuda:0', a torch.device, or None"),
        ({"snapshot_device": 1.5}, TypeError, "snapshot_device must be a device name or torch.device"),
        ({"tensorboard": 123}, TypeError, r"tensorboard must be a torch.utils.tensorboard.SummaryWriter .* a log directory \(str or os.PathLike\) or None, got int"),
        ({"tensorboard": True}, TypeError, "tensorboard must be .* got bool"),
    ],
    ids=["log_file int", "log_file list", "snapshot_device gpu", "snapshot_device float", "tensorboard int", "tensorboard bool"],
)
def test_d_arguments_of_the_wrong_kind_name_the_argument(tmp_path, monkeypatch, kwargs, exc, match):
    monkeypatch.chdir(tmp_path)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(exc, match=match):
        AutoLRS(model, opt, lr_range=(1e-3, 0.3), **kwargs)
    assert os.listdir(tmp_path) == []  # no ./123 folder, no log file
    assert hooks_of(opt) == 0  # raised before anything was changed
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_d_an_unusable_snapshot_device_is_reported_at_construction():
    model = make_model()
    with pytest.raises(ValueError, match=r"snapshot_device='cuda' is not usable in this process"):
        AutoLRS(model, torch.optim.SGD(model.parameters(), lr=0.1), lr_range=(1e-3, 0.3), snapshot_device="cuda")


def test_d_accepted_forms_still_work(tmp_path):
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append(tag)

        def flush(self):
            pass

    writer = Writer()
    model, opt, sched, data = build(
        log_file=tmp_path / "run.jsonl", snapshot_device=torch.device("cpu"), tensorboard=writer
    )
    train(sched, model, opt, data, 20)
    sched.finish()
    assert (tmp_path / "run.jsonl").stat().st_size > 0 and "autolrs/lr" in writer.scalars
    _, _, sched, _ = build(log_file=str(tmp_path / "b.jsonl"), snapshot_device="cpu")
    assert sched._executor.store.device == torch.device("cpu")
    sched.finish()


# ------------------------------------------------------------------ e. optimizer of another model
def test_e_an_optimizer_over_another_models_parameters_is_a_value_error():
    model, other = make_model(), make_model()
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer and model must match: none of the optimizer's 4 parameters"):
        AutoLRS(model, opt, lr_range=(1e-3, 0.3))
    assert hooks_of(opt) == 0


def test_e_an_optimizer_over_part_of_the_model_is_fine():
    model = make_model()
    head = torch.optim.SGD(model[-1].parameters(), lr=0.1)  # fine-tuning the last layer only
    AutoLRS(model, head, lr_range=(1e-3, 0.3)).remove_hooks()
    extra = nn.Parameter(torch.zeros(3))  # plus a tensor the model does not own
    mixed = torch.optim.SGD([*model.parameters(), extra], lr=0.1)
    AutoLRS(model, mixed, lr_range=(1e-3, 0.3)).remove_hooks()


# ------------------------------------------------------------------ issue 14: loop wiring
def _loop(order: str, steps: int = 30, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AutoLRS(model, opt, total_steps=kwargs.pop("total_steps", 200), seed=0, **kwargs)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        if order == "after":
            opt.step()
            sched.step(loss)
        elif order == "before":
            sched.step(loss)
            opt.step()
        elif order == "twice":
            opt.step()
            sched.step(loss)
            sched.step(loss)
        elif order == "forgotten":
            opt.step()
    return sched


def test_forgetting_sched_step_is_said_at_the_second_optimizer_step():
    with pytest.warns(AutoLRSWarning, match=r"optimizer.step\(\) ran 2 times without sched.step\(loss\)"):
        _loop("forgotten", steps=2)


def test_wrap_stops_an_endless_loop_that_never_calls_sched_step():
    import itertools

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AutoLRS(model, opt, total_steps=1000, seed=0)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutoLRSWarning)
        with pytest.raises(RuntimeError, match="without sched.step"):
            for _ in sched.wrap(itertools.repeat((x, y))):
                loss = nn.functional.mse_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()


def test_sched_step_before_optimizer_step_is_an_error():
    with pytest.raises(RuntimeError, match=r"called before optimizer.step\(\)"):
        _loop("before")


def test_sched_step_twice_per_optimizer_step_is_an_error():
    with pytest.raises(RuntimeError, match="twice per step"):
        _loop("twice")


def test_the_right_order_raises_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        sched = _loop("after")
    assert sched.steps_taken == 30


def test_training_past_total_steps_names_the_epochs_mistake():
    with pytest.warns(AutoLRSWarning, match=r"not epochs; for N epochs pass total_steps=len\(loader\) \* N"):
        _loop("after", steps=25, total_steps=20)


def test_a_momentum_cycling_scheduler_is_reported():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = AutoLRS(model, opt, total_steps=200, seed=0)
    cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=200)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    with pytest.warns(AutoLRSWarning) as caught:  # its rate changes are reported too (22)
        for _ in range(5):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            cycle.step()
            sched.step(loss)
    assert any("momentum/betas changed" in str(w.message) for w in caught)


def test_a_resumed_run_keeps_its_history_and_its_log_identity(tmp_path):
    from autolrs.events import read_events, split_runs

    log = tmp_path / "run.jsonl"
    first = _loop("after", steps=120, log_file=log)
    state = first.state_dict()
    decisions_before = first.decisions
    assert decisions_before
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    resumed = AutoLRS(model, opt, total_steps=200, seed=0, log_file=log)
    resumed.load_state_dict(state)
    assert resumed.decisions == decisions_before  # the whole history, not only what follows
    assert resumed.events[-1]["event"] == "resume"
    assert len(split_runs(read_events(log))) == 1  # the resumed run writes as the same run


def test_a_resumed_wrap_skips_the_batches_the_saved_run_drew(tmp_path):
    def stream():
        i = 0
        while True:
            yield i
            i += 1

    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # Without the small-budget ramp: its trials are replayed (a ramp keeps its steps).
    config = Config(small_budget_ramp=None)
    sched = AutoLRS(model, opt, total_steps=300, seed=0, lr_range=(1e-3, 1e-1), config=config)
    seen = []
    for i in sched.wrap(stream()):
        seen.append(i)
        loss = (model(torch.ones(1, 1)) - float(i % 7)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        if sched.steps_taken == 150:
            break
    state = sched.state_dict()
    drawn = sched.batches_drawn
    assert drawn == max(seen) + 1 and drawn < 150  # replayed batches do not consume the stream
    def fresh() -> AutoLRS:
        m = nn.Linear(1, 1)
        return AutoLRS(m, torch.optim.SGD(m.parameters(), lr=0.1), total_steps=300, seed=0,
                       lr_range=(1e-3, 1e-1), config=config)

    resumed = fresh()
    resumed.load_state_dict(state)
    first = next(iter(resumed.wrap(stream(), skip_drawn=True)))
    assert first in seen or first == drawn  # a replayed batch of the trial, or the next fresh one
    assert resumed.batches_drawn in (drawn, drawn + 1)
    unskipped = fresh()  # a stream restored by the user is taken as it is (the default)
    unskipped.load_state_dict(state)
    assert next(iter(unskipped.wrap(stream()))) in (0, *seen)
