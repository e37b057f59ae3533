from __future__ import annotations

import math

import pytest
import torch

from autolrs.bench.harness import RunResult, eval_steps, read_jsonl, run_method, steps_to_target, write_jsonl
from autolrs.bench.methods import METHODS, cosine_factor, steepest_slope, wsd_factor
from autolrs.bench.workloads import get_workload


def test_eval_steps_every_fiftieth_of_the_budget():
    steps = eval_steps(600)
    assert len(steps) == 50 and steps[0] == 12 and steps[-1] == 600


def test_steps_to_target_is_the_first_scored_step_at_or_below():
    curve = [(10, 2.0), (20, 1.0), (30, 0.5), (40, 0.4)]
    assert steps_to_target(curve, 0.5) == 30
    assert steps_to_target(curve, 0.1) == math.inf
    assert steps_to_target(curve, None) == math.inf


def test_schedules():
    cos = cosine_factor(100, warmup=10)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(100) == pytest.approx(0.0, abs=1e-12)
    wsd = wsd_factor(100, warmup=10)
    assert wsd(50) == 1.0 and wsd(80) == pytest.approx(1.0) and wsd(90) == pytest.approx(0.5)


def test_steepest_slope_picks_the_fastest_fall():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    losses = [2.0] * 25 + [2.0 - 0.1 * i for i in range(1, 11)] + [1.0] * 25
    lr = steepest_slope(lrs, losses)
    assert lrs[25] <= lr <= lrs[35]
    assert steepest_slope(lrs[:10], losses[:10]) is None


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_and_charges_its_steps(method):
    work = get_workload("digits")
    work.extra["oracle_lr"] = 0.05
    budget = 150
    res = run_method(METHODS[method].run, work, method, seed=0, budget=budget, target=0.5)
    assert res.steps == budget  # the oracle too: it is planned for the budget
    assert len(res.curve) == 50
    assert res.lrs and all(lr > 0 for _, lr in res.lrs)
    assert res.seconds_per_step > 0 and res.extra["charged_seconds"] > 0
    if method == "lrfinder-onecycle":
        assert 0 < res.extra["lrfinder"]["sweep_steps"] <= 100
    if method.startswith("autolrs"):
        assert res.extra["autolrs"]["decisions"]


def test_scores_in_trials_carry_the_last_committed_score():
    work = get_workload("digits")

    def method(ctx):
        model = ctx.model()
        for i in range(ctx.budget):
            ctx.step(model, torch.tensor(1.0), 0.1, committed=i >= 50)

    res = run_method(method, work, "fake", seed=0, budget=100)
    scores = dict(res.curve)
    assert all(math.isinf(scores[s]) for s in scores if s <= 50)  # nothing committed yet
    assert all(math.isfinite(scores[s]) for s in scores if s > 50)


def test_a_non_finite_committed_loss_ends_the_run_as_diverged():
    work = get_workload("digits")

    def method(ctx):
        model = ctx.model()
        for i in range(ctx.budget):
            ctx.step(model, torch.tensor(float("nan") if i == 30 else 1.0), 0.1)

    res = run_method(method, work, "fake", seed=0, budget=100, target=10.0)
    assert res.diverged and res.steps == 31
    assert math.isinf(res.final_score)


def test_results_round_trip_through_jsonl(tmp_path):
    res = RunResult("digits", "naive", 0, 100, steps=100, curve=[(50, 1.0), (100, math.inf)])
    path = str(tmp_path / "runs.jsonl")
    write_jsonl(path, [res], header={"suite": "x"})
    (back,) = read_jsonl(path)
    assert back.curve == [(50, 1.0), (100, math.inf)]
    assert back.steps_to_target == math.inf


def test_the_lr_finder_sweeps_with_the_workloads_own_loss():
    # a regression workload: cross-entropy as the sweep's criterion would fail on its outputs
    work = get_workload("diabetes-overfit")
    res = run_method(METHODS["lrfinder-onecycle"].run, work, "lrfinder-onecycle", 0, budget=150)
    assert res.steps == 150 and 0 < res.extra["lrfinder"]["sweep_steps"] <= 75
    assert res.extra["lrfinder"]["suggested_lr"] is not None
