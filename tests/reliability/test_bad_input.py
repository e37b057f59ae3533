"""The misuse catalogue (docs/bad-input.md): every misuse gives a clear error naming the argument
and the fix, or a documented safe behaviour."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSWarning, Config, StateDictError


def make(**kwargs):
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs.setdefault("lr_range", (1e-3, 1.0))
    kwargs.setdefault("config", Config.stagewise(tau=40, candidates=3, min_trial_steps=4))
    kwargs.setdefault("seed", 0)
    return model, opt, AutoLRS(model, opt, **kwargs)


_REAL = object()


def train_step(model, opt, sched, loss_override=_REAL):
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step(loss if loss_override is _REAL else loss_override)


# (id, constructor kwargs, exception, message fragment that names the argument / the fix)
CONSTRUCTOR_ERRORS = [
    ("lr_range reversed", {"lr_range": (1.0, 1e-3)}, ValueError, "lr_range must satisfy 0 < low < high"),
    ("lr_range zero", {"lr_range": (0.0, 1.0)}, ValueError, "lr_range"),
    ("lr_range negative", {"lr_range": (-1e-3, 1.0)}, ValueError, "lr_range"),
    ("lr_range three numbers", {"lr_range": (1e-3, 1e-2, 1.0)}, ValueError, r"pair \(low, high\)"),
    ("lr_range a string", {"lr_range": "1e-3,1"}, ValueError, "lr_range"),
    ("lr_range infinite", {"lr_range": (1e-3, math.inf)}, ValueError, "lr_range"),
    ("lr_range nan", {"lr_range": (math.nan, 1.0)}, ValueError, "lr_range"),
    ("total_steps zero", {"total_steps": 0}, ValueError, "total_steps must be >= 1"),
    ("total_steps negative", {"total_steps": -10}, ValueError, "total_steps"),
    ("total_steps infinite", {"total_steps": math.inf}, ValueError, "pass None when the number of steps is not known"),
    ("total_steps fractional", {"total_steps": 10.5}, ValueError, "total_steps"),
    ("total_steps a string", {"total_steps": "1000"}, ValueError, "total_steps"),
    ("val_fn not callable", {"val_fn": 0.5}, TypeError, "val_fn must be callable"),
    ("config a dict", {"config": {"tau": 10}}, TypeError, "config must be an autolrs.Config"),
    ("extra_state without state_dict", {"extra_state": [object()]}, TypeError, r"need state_dict\(\)"),
    ("extra_state a single object", {"extra_state": "scaler"}, TypeError, "extra_state"),
    ("sync_every zero", {"sync_every": 0}, ValueError, "sync_every must be an integer >= 1"),
    ("seed a float", {"seed": 1.5}, TypeError, "seed must be an int"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [c[1:] for c in CONSTRUCTOR_ERRORS], ids=[c[0] for c in CONSTRUCTOR_ERRORS])
def test_constructor_misuse(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make(**kwargs)


def test_config_field_out_of_range():
    with pytest.raises(ValueError, match=r"Config.candidates must be an integer >= 2, got 1"):
        Config.stagewise(candidates=1)


def test_model_and_optimizer_of_the_wrong_type():
    model = nn.Linear(2, 1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        AutoLRS(model.state_dict(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        AutoLRS(model, {"lr": 0.1})


def test_optimizer_without_parameters():
    with pytest.raises(ValueError, match="optimizer has no parameters"):
        AutoLRS(nn.Linear(2, 1), torch.optim.SGD([{"params": []}], lr=0.1))


@pytest.mark.parametrize(
    "loss",
    ["0.5", None, [0.5], torch.ones(3), torch.ones(1, 1), True, 1 + 2j, torch.tensor(1 + 1j)],
    ids=["string", "None", "list", "vector", "matrix", "bool", "complex", "complex tensor"],
)
def test_loss_that_is_not_a_real_scalar(loss):
    model, opt, sched = make()
    with pytest.raises(TypeError, match="loss must be"):
        train_step(model, opt, sched, loss_override=loss)


def test_nan_and_inf_losses_roll_back_safely():
    model, opt, sched = make()
    for bad in (math.nan, math.inf, -math.inf):
        train_step(model, opt, sched, loss_override=bad)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the first bad loss is retried once (it may be one bad batch), the second is divergence
    retried = [e for e in sched.events if e["event"] == "rollback" and "retrying" in e["reason"]]
    diverged = [e for e in sched.events if e["event"] == "candidate" and e["diverged"]]
    assert retried and diverged and retried[0]["step"] < diverged[0]["step"]


def test_loss_requiring_grad_is_detached_safely():
    model, opt, sched = make()
    train_step(model, opt, sched)  # passes the graph-attached loss; no error, no leak
    assert sched._pending == [] or all(not v.requires_grad for v in sched._pending)


def test_step_before_any_optimizer_step_warns():
    _, _, sched = make()
    with pytest.warns(AutoLRSWarning, match="optimizer.step\\(\\) was not called"):
        sched.step(1.0)


def test_another_scheduler_is_detected():
    model, opt, sched = make()
    torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5).step()
    with pytest.warns(AutoLRSWarning, match="another LR scheduler"):
        train_step(model, opt, sched)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.update(version=99), "version"),
        (lambda s: s.pop("snapshots"), "misses key"),
        (lambda s: s["controller"].update(version=0), "version"),
        (lambda s: s["controller"]["state"].pop("phase"), "misses field"),
        (lambda s: s["controller"]["config"].update(candidates=1), "invalid config"),
        (lambda s: s.update(lr_ratios=[1.0, 1.0]), "parameter groups"),
    ],
    ids=["other version", "missing key", "controller version", "missing field", "bad config", "other optimizer"],
)
def test_state_dict_misuse(mutate, match):
    model, opt, sched = make()
    for _ in range(5):
        train_step(model, opt, sched)
    state = sched.state_dict()
    mutate(state)
    with pytest.raises(StateDictError, match=match):
        sched.load_state_dict(state)


def test_state_dict_that_is_not_a_dict():
    _, _, sched = make()
    with pytest.raises(StateDictError, match="must be a dict"):
        sched.load_state_dict([1, 2, 3])


@pytest.mark.parametrize(("value", "outcome"), [(math.nan, "diverged"), ("0.3", TypeError), (None, TypeError), (torch.ones(2), TypeError)])
def test_val_fn_returning_garbage(value, outcome):
    config = Config.stagewise(tau=40, candidates=3, min_trial_steps=4, objective="validation", val_points=4)
    model, opt, sched = make(config=config, val_fn=lambda: value)
    if outcome == "diverged":
        with pytest.warns(AutoLRSWarning, match="val_fn returned NaN/inf 2 times in a row"):
            for _ in range(18):
                train_step(model, opt, sched)
        # docs/bad-input.md 28: the first NaN retries the candidate; 53: the second drops val_fn
        assert any(e["event"] == "rollback" and "non-finite validation" in e["reason"] for e in sched.events)
        assert not any(e["diverged"] for e in sched.events if e["event"] == "candidate")
    else:
        with pytest.raises(outcome, match="val_fn must return a number"):
            train_step(model, opt, sched)
        assert sched.phase == "trial"


def test_wrap_of_an_empty_iterable_is_empty():
    _, _, sched = make()
    assert list(sched.wrap(iter([]))) == []


def test_stepping_past_total_steps_holds_the_learning_rate():
    model, opt, sched = make(total_steps=30)
    for _ in range(30):
        train_step(model, opt, sched)
    held = sched.get_last_lr()[0]
    with pytest.warns(AutoLRSWarning, match="not epochs"):
        for _ in range(10):
            train_step(model, opt, sched)
    assert sched.finished and any(e["event"] == "overrun" for e in sched.events)
    assert sched.get_last_lr()[0] == held


def test_log_file_in_a_missing_folder_is_created(tmp_path):
    path = tmp_path / "a" / "b" / "run.jsonl"
    model, opt, sched = make(log_file=path)
    train_step(model, opt, sched)
    assert path.exists()


@pytest.mark.parametrize("decay", [0.0, 0.2])
def test_tiny_budget_without_range_holds_the_optimizer_lr(decay):
    # Too short for a range test or a stage: the optimizer's own rate is held (and, with the
    # default final decay, decayed linearly over the budget's last fifth), without warnings.
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = AutoLRS(model, opt, total_steps=5, config=Config.stagewise(final_decay_fraction=decay))
    used = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            used.append(opt.param_groups[0]["lr"])
            train_step(model, opt, sched)
    assert used[0] == pytest.approx(0.05)
    if decay == 0.0:
        assert used == [pytest.approx(0.05)] * 5
    else:
        assert all(a >= b for a, b in zip(used, used[1:])) and used[-1] < 0.05
