"""What went silently wrong for a new user (issue 20, docs/bad-input.md 53-60): a run without
total_steps, a loop that ends mid-trial, a val_fn returning an accuracy or NaN, a finite
DataLoader, NaN on every batch, and sched.step on every micro-batch."""

from __future__ import annotations

import gc
import logging
import math
import warnings

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSWarning, Config, DivergenceError
from autolrs.torch.validation import ValidationWatch

from tests.torch.helpers import batches, make_data, make_model, train

SMALL = Config(tau=40, candidates=3, min_trial_steps=4)


def build(**kwargs):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kwargs.setdefault("seed", 0)
    sched = AutoLRS(model, opt, **kwargs)
    x, y = make_data()
    return model, opt, sched, batches(x, y)


def one_step(model, opt, sched, xb, yb):
    loss = nn.functional.mse_loss(model(xb), yb)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step(loss)


# ------------------------------------------------------------------ 1. no total_steps
def test_a_run_without_total_steps_says_once_what_it_does(caplog):
    model, opt, sched, data = build(lr_range=(1e-3, 0.3), config=SMALL)
    with caplog.at_level(logging.WARNING, logger="autolrs"):
        train(sched, model, opt, data, 5)
    said = [r for r in caplog.records if "no total_steps was given" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    message = said[0].getMessage()
    assert "never decays" in message and "Pass total_steps=" in message


def test_a_run_with_total_steps_does_not_say_it(caplog):
    model, opt, sched, data = build(total_steps=60, lr_range=(1e-3, 0.3), config=SMALL)
    with caplog.at_level(logging.WARNING, logger="autolrs"):
        train(sched, model, opt, data, 5)
    assert not [r for r in caplog.records if "no total_steps" in r.getMessage()]


def test_leaving_the_with_block_during_the_range_test_says_what_was_restored():
    model, opt, _, data = build()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(AutoLRSWarning, match=(
        r"the training loop ended during the range test \(step 5\), before the trial was "
        r"decided: the model was restored to the last committed state \(the state before the "
        r"range test at step 0\).*Pass total_steps"
    )):
        with AutoLRS(model, opt, seed=0) as sched:
            train(sched, model, opt, data, 5)
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_garbage_collection_during_a_trial_is_logged(caplog):
    model, opt, sched, data = build(lr_range=(1e-3, 0.3), config=SMALL)
    train(sched, model, opt, data, 6)
    assert sched.in_trial
    name = f"{id(sched):#x}"
    gc.collect()  # earlier tests' instances
    with caplog.at_level(logging.WARNING, logger="autolrs"):
        del sched, opt  # the optimizer's step hooks hold the scheduler
        gc.collect()
    said = [r.getMessage() for r in caplog.records if f"instance at {name}" in r.getMessage()]
    assert len(said) == 1 and "uncommitted weights" in said[0] and "sched.finish()" in said[0]


def test_garbage_collection_after_finish_says_nothing(caplog):
    model, opt, sched, data = build(lr_range=(1e-3, 0.3), config=SMALL)
    train(sched, model, opt, data, 6)
    with pytest.warns(AutoLRSWarning, match="the training loop ended"):
        sched.finish()
    name = f"{id(sched):#x}"
    with caplog.at_level(logging.WARNING, logger="autolrs"):
        del sched, opt
        gc.collect()
    assert not [r for r in caplog.records if f"instance at {name}" in r.getMessage()]


# ------------------------------------------------------------------ 2. val_fn returns an accuracy
def test_a_val_fn_returning_an_accuracy_is_named_and_never_rolls_training_back():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xv, yv = make_data(n=256, seed=1)
    calls = []

    def accuracy() -> float:  # the share of close predictions: higher is better
        calls.append(1)
        with torch.no_grad():
            return float(((model(xv) - yv).abs() < 0.2).float().mean())

    sched = AutoLRS(model, opt, total_steps=400, val_fn=accuracy, seed=0)
    x, y = make_data()
    with pytest.warns(AutoLRSWarning, match=(
        r"val_fn's values move against the training loss from the first checks.*looks like an "
        r"accuracy.*val_fn must return a loss \(lower is better\)"
    )):
        losses = train(sched, model, opt, batches(x, y), 400)
    assert len(calls) == 4  # the first four checks; never called again
    assert not [e for e in sched.events if e["event"] in ("overfitting", "early_decay")]
    assert sched.finished and losses[-1] < losses[0]


def test_a_real_validation_loss_is_trusted():
    model, opt, sched, data = build(total_steps=400, seed=0)
    xv, yv = make_data(n=128, seed=1)
    sched.val_fn = lambda: float(nn.functional.mse_loss(model(xv), yv))
    sched._controller.validation = True
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        train(sched, model, opt, data, 400)
    assert sched._executor.watch.trusted


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ([(0.30, 2.0), (0.50, 1.5), (0.70, 1.0), (0.75, 0.9)], "accuracy"),  # rising from the start
        ([(0.2, 2.0), (0.4, 1.5), (0.3, 1.7), (0.6, 1.0), (0.5, 1.2), (0.7, 0.8)], "accuracy"),  # against
        ([(0.9, 1.0), (0.7, 0.8), (0.6, 0.7), (0.5, 0.6)], None),  # a loss falling with training
        ([(2.0, 1.0), (3.0, 0.9), (1.0, 1.2), (4.0, 0.8)], None),  # against, but not in [0, 1]
        # measured false alarm of the first rule: a real MSE's noise, anti-correlated by chance
        ([(0.3011, 0.2288), (0.3258, 0.2045), (0.3257, 0.2021), (0.2881, 0.23)], None),
        ([(0.30, 0.23), (0.31, 0.22), (0.315, 0.21), (0.32, 0.20)], None),  # rising, within 10 %
    ],
)
def test_the_accuracy_pattern(pairs, reason):
    watch = ValidationWatch()
    said = [watch.observe(v, t) for v, t in pairs]
    assert (said[-1] == reason) and not any(said[:-1])


def test_a_non_finite_value_while_training_diverges_is_not_held_against_val_fn():
    watch = ValidationWatch()
    assert watch.observe(math.nan, math.nan) is None
    assert watch.observe(math.nan, math.nan) is None and watch.trusted
    assert watch.observe(math.nan, 1.0) is None
    assert watch.observe(math.nan, 1.0) == "non_finite" and not watch.trusted


# ------------------------------------------------------------------ 4. a finite DataLoader
def test_wrap_starts_new_passes_over_a_finite_loader_until_total_steps():
    model, opt, sched, _ = build(total_steps=150, lr_range=(1e-3, 0.3), config=SMALL)
    x, y = make_data(n=11 * 16)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        steps = 0
        for xb, yb in sched.wrap(loader):
            one_step(model, opt, sched, xb, yb)
            steps += 1
    assert steps == 150 and sched.finished
    assert sched.batches_drawn > len(loader)  # several passes (replays excluded)


def test_an_iterator_that_runs_out_before_total_steps_says_the_run_is_unfinished():
    model, opt, sched, _ = build(total_steps=150, lr_range=(1e-3, 0.3), config=SMALL)
    x, y = make_data(n=11 * 16)
    generator = ((x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16))
    with pytest.warns(AutoLRSWarning, match=(
        r"the iterable given to wrap\(\) ran out after \d+ of total_steps=150 steps \(it is an "
        r"iterator.*the run is unfinished"
    )):
        for xb, yb in sched.wrap(generator):
            one_step(model, opt, sched, xb, yb)
    assert not sched.finished


def test_an_empty_loader_with_a_budget_says_so():
    _, _, sched, _ = build(total_steps=150, lr_range=(1e-3, 0.3), config=SMALL)
    with pytest.warns(AutoLRSWarning, match=r"ran out after 0 of total_steps=150 steps \(it yields no batch\)"):
        assert list(sched.wrap([])) == []


# ------------------------------------------------------------------ 6. NaN on every batch
def test_non_finite_losses_at_every_rate_point_at_the_data_and_the_committed_state():
    config = Config.paper(tau=20, candidates=2, min_trial_steps=4, max_rollbacks=2)
    model, opt, sched, data = build(config=config, lr_range=(1e-3, 0.3))
    with pytest.raises(DivergenceError) as raised:
        train(sched, model, opt, data, 400, fault=lambda s, l: torch.tensor(math.nan) if s >= 30 else l)
    message = str(raised.value)
    assert "diverged 3 times" in message
    assert "NaN/inf at every one of the last" in message and "from the data or the model" in message
    assert "The weights hold the last committed state (the one saved at step" in message
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------------------ 7. gradient accumulation
def test_sched_step_on_every_micro_batch_names_gradient_accumulation():
    model, opt, sched, data = build(total_steps=100, lr_range=(1e-3, 0.3), config=SMALL)
    with pytest.raises(RuntimeError, match=(
        r"(?s)With gradient accumulation.*call sched.step once per optimizer.step\(\), not per "
        r"micro-batch, with the mean loss of the accumulated micro-batches"
    )):
        for step in range(8):
            xb, yb = next(data)
            loss = nn.functional.mse_loss(model(xb), yb) / 4
            loss.backward()
            if step % 4 == 3:
                opt.step()
                opt.zero_grad()
            sched.step(loss)  # wrong: once per micro-batch


def test_a_new_pass_advances_a_distributed_samplers_epoch():
    class Sampler(torch.utils.data.Sampler):  # the DistributedSampler protocol, one process
        def __init__(self, n):
            self.n, self.epoch = n, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch)).tolist())

        def __len__(self):
            return self.n

    model, opt, sched, _ = build(total_steps=40, lr_range=(1e-3, 0.3), config=SMALL)
    x, y = make_data(n=10 * 8)
    sampler = Sampler(len(x))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, sampler=sampler)
    for xb, yb in sched.wrap(loader):
        one_step(model, opt, sched, xb, yb)
    assert sched.finished and sampler.epoch == sched.batches_drawn // 10 - (sched.batches_drawn % 10 == 0)


def test_a_val_fn_that_fails_inside_the_constructor_leaves_everything_untouched():
    """Under about 400 steps the ramp measures where it starts: ``val_fn``'s first call comes
    inside ``AutoLRS(...)``, before any step."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def val_fn():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the validation data is not ready")
        return 1.0

    with pytest.raises(RuntimeError, match="not ready"):
        AutoLRS(model, opt, total_steps=200, val_fn=val_fn)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert opt.param_groups[0]["lr"] == 0.1
    # no hook of the failed instance is left on the optimizer
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    sched = AutoLRS(model, opt, total_steps=200, val_fn=val_fn)  # afresh: measures once more
    assert len(calls) == 2 and sched.steps_taken == 0
    sched.finish()
