"""The studies in benchmarks/studies still run against the library's public functions.

The full studies take minutes to hours; these tests import each one and run its main function,
or its core step where even the smallest main run is long, on a tiny input.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from autolrs.bench.workloads import get_workload
from autolrs.core.config import Config

STUDIES = Path(__file__).resolve().parents[2] / "benchmarks" / "studies"


def load(name: str) -> ModuleType:
    """Imports ``benchmarks/studies/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDIES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_main(module: ModuleType, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    module.main()


def test_config_variants_runs_autolrs_through_the_public_runner(tmp_path, monkeypatch):
    study = load("config_variants")
    out = tmp_path / "runs.jsonl"
    run_main(study, monkeypatch, "digits", "--factors", "0.25", "--seeds", "0", "--out", str(out))
    record = json.loads(out.read_text().splitlines()[0])
    assert record["budget"] == 100 and sum(record["accounting"].values()) == 100


def test_overfit_ceiling_runs_its_responses(tmp_path, monkeypatch):
    study = load("overfit_ceiling")
    out = tmp_path / "runs.jsonl"
    run_main(study, monkeypatch, "--factors", "0.05", "--seeds", "0", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(math.isfinite(r["final"]) for r in rows)


def test_guard_false_alarm_plans_with_the_library_and_replays_its_guard():
    study = load("guard_false_alarm")
    cfg = Config()
    stages, info = study.planned_stages(cfg, 400)
    assert stages and info["candidates"][: len(cfg.stage_candidates)] == list(
        cfg.stage_candidates[: len(stages)]
    )
    assert all(s.trial < s.tau for s in stages)
    rng = np.random.default_rng(0)
    losses = 2.0 * np.exp(-np.arange(400) / 150.0) + 0.05 * rng.standard_normal(400)
    taus = sorted({(s.trial, s.tau) for s in stages}, key=lambda t: t[1])
    for variant in study.VARIANTS:
        # replay_phase asserts got_worse == (z < StageGuard.z_needed) at every check
        checks = study.planned_checks(losses, stages, variant)
        checks += study.sliding_checks(losses, taus, 40, variant)
        for c in checks:
            c.update(seed=0, workload="synthetic", lr=0.1)
        summary = study.rates(checks)
        assert summary["checks"] == len(checks) > 0


def test_proxy_vs_truth_scores_a_cooled_trial_with_the_library_rate():
    study = load("proxy_vs_truth")
    work = get_workload("digits")
    model = work.model(0)
    opt = work.make_optimizer(model.parameters(), lr=work.default_lr)
    state = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict())}
    cooled = study.trial(work, 0, state, 0, work.default_lr, 12, cooled=True)
    const = study.trial(work, 0, state, 0, work.default_lr, 12, cooled=False)
    assert cooled["anneal"] == 4 and cooled["scored_last"] == 2
    assert const["anneal"] == 0 and const["scored_last"] == 3
    assert math.isfinite(cooled["holdout"]) and math.isfinite(const["train"])


def test_anchors_check_scores_where_the_harness_scores():
    pytest.importorskip("dadaptation")
    study = load("anchors_check")
    out = study.dadapt_hand(get_workload("digits"), 0, 20)
    assert [step for step, _ in out["curve"]] == list(range(1, 21))
    assert len(out["losses"]) == 20


def test_ramp_first_stage_ramps_holds_and_decays(tmp_path):
    study = load("ramp_first_stage")
    out = tmp_path / "ramp.jsonl"
    study.main(["--workload", "digits", "--budget", "60", "--low", "1e-3", "--seeds", "0",
                "--out", str(out)])
    (run,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert run["budget"] == 60 and math.isfinite(run["score"])
    rates = [p[0] for p in run["path"]]
    assert rates[0] == pytest.approx(1e-3)
    assert all(b / a == pytest.approx(math.sqrt(10.0)) for a, b in zip(rates, rates[1:]))
    assert run["discarded_steps"] in (0, 5)  # at most the one segment that failed


def test_ramp_first_stage_cools_the_end_of_each_segment():
    study = load("ramp_first_stage")
    rates = [study._segment_rate(0.1, 10, 7, i) for i in range(10)]
    assert rates[:7] == [0.1] * 7
    assert rates[7] > rates[8] > rates[9] > 0.0  # cooled over the last 3 steps, towards zero
    assert rates[9] == pytest.approx(0.1 / 4)


def test_start_sweep_runs_a_preset_from_each_start(capsys):
    study = load("start_sweep")
    study.main(["digits", "40", "0.1", "--preset", "ramp", "--starts", "0.1", "10",
                "--seeds", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("digits B=40 ramp x0.1: median ")
    assert all("discarded" in line for line in lines)


def test_start_sweep_gives_a_range_so_that_no_range_test_runs(monkeypatch):
    study = load("start_sweep")
    seen = []
    real = study.run_autolrs

    def spy(ctx, config, lr_range=None):
        seen.append(lr_range)
        try:
            real(ctx, config, lr_range=lr_range)
        finally:  # the harness ends the run by raising BudgetSpent
            seen.append(ctx.result.extra["autolrs"]["accounting"]["range_test"])

    monkeypatch.setattr(study, "run_autolrs", spy)
    out = study.sweep_start("digits", 600, 0.1, 1, Config(), lr_range=(0.01, 1.0))
    assert seen == [(0.01, 1.0), 0] and len(out["scores"]) == 1


def test_late_duel_tries_the_held_rate_and_half_of_it_then_restores_the_library():
    study = load("late_duel")
    from autolrs.bench.autolrs_runner import run_autolrs
    from autolrs.bench.harness import run_method
    from autolrs.core.phases import trial_plan, trials

    def method(ctx):
        ctx.start_lr = 0.1
        run_autolrs(ctx, Config(stage_candidates=(6, 2, 1)))

    before = (trials.new_searcher, trial_plan._sized_plan)
    with study.late_duel(2.0, allowance=1.0):
        result = run_method(method, get_workload("digits"), "autolrs", 0, budget=300)
    assert (trials.new_searcher, trial_plan._sized_plan) == before
    later = [c for c in result.extra["autolrs"]["candidates"] if c[0] == 2]
    assert len(later) == 2
    held, lower = later[0][1], later[1][1]
    assert lower == pytest.approx(held / 2.0)


def test_hold_horizon_scores_the_default_s_shape_and_each_proxy(monkeypatch, capsys):
    study = load("hold_horizon")
    assert [study.default_shape(20, 1.0, t, warmup=4) for t in (0, 3, 12, 13, 19)] == [
        0.25, 1.0, 1.0, 1.0, 1.0 / 7]  # warm-up, hold, decay from step 13
    assert [study.default_shape(20, 1.0, t, decay_from=0.5) for t in (9, 10, 19)] == [
        1.0, 1.0, 0.1]  # decay from step 10
    run_main(study, monkeypatch, "digits", "40", "0.1", "--factors", "0.5", "1",
             "--lengths", "4")
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.1])
    assert all(r["position"] == 6 and math.isfinite(r["truth"]) for r in rows)
    assert all(set(r["const"]) == set(r["cooled"]) == {"4"} for r in rows)
    assert rows[0]["const"] != rows[1]["const"]  # each rate trained on its own
    run_main(study, monkeypatch, "digits", "40", "0.1", "--warmups", "1", "8")
    (noise,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(noise["warmups"]) == {"1", "8"}
    assert noise["warmups"]["1"] != noise["warmups"]["8"]


@pytest.mark.filterwarnings("ignore::autolrs.exceptions.AutoLRSWarning")  # x10 of 60 steps breaks
def test_heldout_check_builds_its_problems_and_reports_bar_a(monkeypatch, capsys, tmp_path):
    study = load("heldout_check")
    sgd = study.synth_sgd()
    opt = sgd.make_optimizer(sgd.model(0).parameters(), lr=0.1)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    weight = torch.nn.Parameter(torch.zeros(3))
    clipped = study.ClippedAdam([weight], lr=0.1)
    weight.grad = torch.tensor([30.0, 40.0, 0.0])
    clipped.step()
    assert float(weight.grad.norm()) == pytest.approx(1.0)  # clipped before Adam's step
    study.main(["--problems", "synth-sgd", "--seeds", "1", "--budget", "60"])
    out = tmp_path / "out.jsonl"
    out.write_text(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    methods = [r["method"] for r in rows if "method" in r]
    assert len(methods) == 7 + 4 + 4 and all(r["budget"] == 60 for r in rows if "method" in r)
    autolrs = [r for r in rows if r.get("method", "").startswith("autolrs@")]
    # From x10 (SGD at 10-30 for 60 steps) the final decay diverged, was committed and ended in
    # a DivergenceError with the model destroyed, before the decay stopped committing such states.
    assert all("error" not in r and math.isfinite(r["score"]) for r in autolrs)
    study.main(["--report", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("synth-sgd: tuned rate ") and len(lines) == 5
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["x0.01", "x0.1", "x1", "x10"]
