"""End to end: autolrs from a poor or absent learning rate, on real and synthetic tasks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, Config
from autolrs.bench.workloads.digits import make_digits


@pytest.mark.parametrize(("family", "bar"), [("adamw", 0.95), ("sgd", 0.92)])
def test_digits_reaches_95_percent_with_no_learning_rate_given(family, bar):
    # AdamW is the demo's optimizer and the bar; SGD with momentum from scratch on a
    # 600-step budget is harder for a greedy stage-wise search (tracked in the benchmark).
    work = make_digits(family)
    model = work.model(seed=0)
    # The constructor's learning rate is deliberately poor (below the range the range test finds):
    # autolrs does not hold it; its first stage searches the found range instead.
    opt = work.make_optimizer(model.parameters(), lr=1e-6)
    total = 600
    sched = AutoLRS(
        model,
        opt,
        total_steps=total,
        val_fn=lambda: work.evaluate(model, "holdout")["loss"],
        seed=0,
    )
    for xb, yb in sched.wrap(work.batches(seed=0)):
        loss = work.loss(model, (xb, yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    assert sched.steps_taken == total and not sched.in_trial
    accuracy = work.evaluate(model, "score")["accuracy"]
    assert accuracy >= bar, (accuracy, sched.decisions)


def _least_squares(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An ill-conditioned least-squares problem: the larger the rate (up to the stability
    edge), the faster it converges, so the best constant learning rate is sharply defined."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, 1.5, 20)
    x = torch.randn(256, 20, generator=g) * scales * 3.0
    y = x @ torch.randn(20, 1, generator=g) + 0.5 * torch.randn(256, 1, generator=g)
    return x, y


def _final_loss(lr: float, steps: int, x: torch.Tensor, y: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = nn.Linear(20, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        value = nn.functional.mse_loss(model(x), y).item()
    return value if math.isfinite(value) else math.inf


@pytest.mark.parametrize("offset", [1e3, 1e-3], ids=["constructor-lr-1000x-too-high", "1000x-too-low"])
def test_automatic_range_settles_near_the_best_constant_learning_rate(offset):
    x, y = _least_squares()
    grid = [10 ** (-6 + i / 4) for i in range(17)]  # 1e-6 .. 1e-2
    losses = [_final_loss(lr, 300, x, y) for lr in grid]
    best = grid[min(range(len(grid)), key=losses.__getitem__)]
    assert 1e-5 < best < 1e-3  # the grid brackets the optimum

    torch.manual_seed(0)
    model = nn.Linear(20, 1)
    constructor_lr = best * offset  # at least 100x away from the best rate
    opt = torch.optim.SGD(model.parameters(), lr=constructor_lr)
    total = 1500
    sched = AutoLRS(model, opt, total_steps=total, seed=0)
    for _ in range(total):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    low, high = sched.lr_range
    assert low < best / 10 and high > best / 3  # the found interval reaches the best rate
    settled = sched.decisions[-1]["lr"]
    # From above, the expanding search's edge rule costs up to 30x on a convex problem, whose
    # best constant rate lies one step (3.16x) below the edge of stability: no rate within two
    # steps below one that broke training wins, and when every rate tried lies there the
    # search goes on below (here 7.6e-4 and 2.4e-4 diverge, 7.6e-5 and 2.4e-5 lie at their
    # edge, 7.6e-6 wins: 13x below the best 1e-4). On the neural nets of the benchmark the
    # rate one step below the edge breaks training later (digits: 1.0 next to a failing 3.16;
    # the tuned rate is 0.1), which is why the rule stays (docs/method.md).
    # From below the same rule costs as much: the walk starts at the grid point 1e-6 (the range
    # test moved 1e-7 to its floor 5e-7; the point below it, 3.16e-7, lies outside), climbs
    # to 1e-4, the best, and its probe 3.16e-4 diverges, so 1e-4 and 3.16e-5 lie at the edge
    # and 1e-5 wins: 10x below the best.
    low_ok = best / 30
    assert low_ok <= settled <= best * 3, (best, [d["lr"] for d in sched.decisions])
    assert sched.config == Config()
