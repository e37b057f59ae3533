"""The fair suites: budgets, seeds per method, the cosine grid, resumption, the CLI's options,
and one end-to-end fair-quick run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import replace

import pytest

from autolrs.bench import suite as suite_module
from autolrs.bench.cli import restrict_suite, split_methods
from autolrs.bench.harness import RunResult, read_jsonl, run_method
from autolrs.bench.methods import METHODS, cosine_factor, cosine_method, resolve_method
from autolrs.bench.suite import SUITES, Suite, plan_suite, run_suite
from autolrs.bench.targets import load_targets, nearest_grid_lrs
from autolrs.bench.workloads import get_workload
from autolrs.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = os.path.join(ROOT, "benchmarks", "targets.json")


def committed():
    return load_targets(TARGETS)["workloads"]


# a committed grid as --set-targets writes it (7 LRs a third of a decade apart around 0.1)
GRID = {
    "grid": [{"lr": 0.1 * 10 ** (k / 3)} for k in range(-3, 4)],
    "oracle": {"lr": 0.1 * 10 ** (-1 / 3)},
    "target": 0.07,
}


def test_the_fair_suites_are_defined_as_the_protocol_says():
    fair = SUITES["fair"]
    assert fair.fair and fair.threads == 1
    assert fair.workloads == (
        "digits", "fashion-cnn", "shakespeare-char", "diamonds", "diabetes-overfit"
    )
    assert fair.budget_factors == (0.5, 1.0, 2.0)
    assert set(fair.methods) == {
        "autolrs", "naive", "wsd", "schedulefree", "prodigy", "dadapt", "lrfinder-onecycle"
    }
    assert fair.seeds_autolrs >= 5 and fair.seeds_anchors >= 3 and fair.oracle_grid == 3
    quick = SUITES["fair-quick"]
    assert quick.workloads == ("digits",) and quick.budget_factors == (1.0,)
    assert (quick.seeds_autolrs, quick.seeds_anchors, quick.oracle_grid) == (2, 1, 1)
    assert quick.methods == ("autolrs", "naive")
    for name in ("quick", "standard", "full"):
        assert not SUITES[name].fair  # the first protocol, kept for its result folders


def test_budgets_are_factors_of_the_step_hint():
    work = get_workload("digits")
    assert work.step_hint == 400
    fair = SUITES["fair"]
    assert [fair.budget_for(work, f) for f in fair.budget_factors] == [200, 400, 800]
    assert SUITES["standard"].budget_for(work, 1.0) == 600  # the first protocol: 1.5 x H


def test_seeds_per_method():
    fair = SUITES["fair"]
    assert fair.seeds_for("autolrs") == 5
    assert fair.seeds_for("autolrs:keep_winner=False") == 5 and fair.seeds_for("autolrs-paper") == 5
    assert fair.seeds_for("naive") == 3 and fair.seeds_for("cosine@0.0464") == 3
    plan = plan_suite(replace(fair, workloads=("digits",)), {"digits": GRID})
    counts = Counter(method for _, _, method, _ in plan)
    assert counts["autolrs"] == 5 * 3 and counts["schedulefree"] == 3 * 3
    assert {m for m in counts if m.startswith("cosine@")} == {
        "cosine@0.0215", "cosine@0.0464", "cosine@0.1"
    }
    assert all(counts[m] == 3 * 3 for m in counts if m.startswith("cosine@"))
    assert len(plan) == 3 * (5 + 6 * 3 + 3 * 3)


def test_the_cosine_grid_is_the_committed_grid_nearest_the_oracle():
    lrs = [g["lr"] for g in GRID["grid"]]  # oracle: lrs[2], 0.0464
    assert nearest_grid_lrs(GRID, 3) == lrs[1:4]
    assert nearest_grid_lrs(GRID, 1) == [lrs[2]]
    assert nearest_grid_lrs(GRID, 0) == []
    assert nearest_grid_lrs(GRID, "all") == lrs
    assert nearest_grid_lrs(GRID, 5) == lrs[0:5]
    edge = {"grid": [{"lr": 0.01}, {"lr": 0.1}, {"lr": 1.0}], "oracle": {"lr": 0.01}}
    assert nearest_grid_lrs(edge, 2) == [0.01, 0.1]
    assert nearest_grid_lrs({}, 3) == []  # no committed grid: no curve
    with pytest.raises(ValueError):
        nearest_grid_lrs(GRID, -1)
    # the grid runs at the committed LRs themselves, not at their 3-digit names
    name = cosine_method(lrs[1])
    assert name == "cosine@0.0215"
    res = run_method(METHODS[name].run, get_workload("digits"), name, 0, budget=10)
    assert res.extra["lr"] == lrs[1] and res.lrs[0][1] == pytest.approx(lrs[1])


def test_the_oracle_and_the_cosine_grid_are_planned_over_the_budget():
    work = get_workload("digits")
    work.extra["oracle_lr"] = 0.05
    budget = 60  # not the step hint (400): warm-up 2 % of 60 = 1 step, cosine to 0 at 60
    oracle = run_method(METHODS["oracle"].run, work, "oracle", 0, budget=budget)
    grid = run_method(resolve_method("cosine@0.05").run, work, "cosine@0.05", 0, budget=budget)
    assert oracle.steps == grid.steps == budget
    assert grid.extra["lr"] == 0.05 and METHODS["cosine@0.05"].tuned
    factor = cosine_factor(budget, 1)
    expected = [(s + 1, 0.05 * factor(s)) for s in range(budget)]
    for res in (oracle, grid):
        lrs = dict(res.lrs)
        assert all(lrs[s] == pytest.approx(lr) for s, lr in expected if s in lrs)
        assert len(res.lrs) >= budget - 1  # a new rate at (almost) every step ...
        assert lrs[budget // 2 + 1] == pytest.approx(0.025, rel=0.03)  # half-way: half the peak
        assert res.lrs[-1][1] < 0.05 * 1e-3  # ... down to (almost) zero at the budget
    with pytest.raises(ValueError):
        resolve_method("cosine@fast")


def fake_run_method(calls):
    def fake(fn, work, method, seed, *, budget, target, threads):
        calls.append((work.name, method, seed, budget))
        r = RunResult(work.name, method, seed, budget, steps=budget, final_score=0.1, target=target)
        r.curve = [(budget, 0.1)]
        return r

    return fake


def test_a_suite_resumes_where_it_stopped(tmp_path, monkeypatch):
    targets = str(tmp_path / "targets.json")
    with open(targets, "w", encoding="utf-8") as f:
        json.dump({"workloads": {"digits": GRID}}, f)
    calls: list = []
    monkeypatch.setattr(suite_module, "run_method", fake_run_method(calls))
    suite = replace(SUITES["fair"], workloads=("digits",), methods=("autolrs", "naive"),
                    budget_factors=(0.5, 1.0), seeds_autolrs=2, seeds_anchors=1, oracle_grid=1)
    out = str(tmp_path / "fair")
    logs: list[str] = []
    run_suite(suite, out, targets_path=targets, log=logs.append, threads=1)
    assert sorted(Counter((m, b) for _, m, _, b in calls).items()) == [
        (("autolrs", 200), 2), (("autolrs", 400), 2), (("cosine@0.0464", 200), 1),
        (("cosine@0.0464", 400), 1), (("naive", 200), 1), (("naive", 400), 1),
    ]
    runs = read_jsonl(os.path.join(out, "runs.jsonl"))
    assert all(r.extra["protocol"] == "fair" and r.extra["step_hint"] == 400 for r in runs)
    assert {r.extra["budget_factor"] for r in runs} == {0.5, 1.0}
    # a second run repeats nothing
    calls.clear()
    results = run_suite(suite, out, targets_path=targets, log=logs.append, threads=1)
    assert calls == [] and len(results) == 8
    # an interrupted suite (its last run lost) reruns only that run
    path = os.path.join(out, "runs.jsonl")
    lines = open(path, encoding="utf-8").read().splitlines()
    last = max(i for i, line in enumerate(lines) if not line.startswith('{"header"'))
    lost = json.loads(lines[last])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:last] + lines[last + 1 :]) + "\n")
    run_suite(suite, out, targets_path=targets, log=logs.append, threads=1)
    assert calls == [(lost["workload"], lost["method"], lost["seed"], lost["budget"])]
    # more seeds later: only the new ones run
    calls.clear()
    run_suite(replace(suite, seeds_autolrs=3), out, targets_path=targets, log=logs.append)
    assert sorted(calls) == [("digits", "autolrs", 2, 200), ("digits", "autolrs", 2, 400)]
    headers = [json.loads(line)["header"] for line in open(path, encoding="utf-8")
               if line.startswith('{"header"')]
    assert headers[0]["threads"] == 1 and headers[0]["protocol"] == "fair"
    assert headers[0]["seeds"] == {"autolrs": 2, "anchors": 1} and headers[0]["oracle_grid"] == 1


def test_a_workload_without_a_committed_grid_gets_no_curve(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(suite_module, "run_method", fake_run_method(calls))
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({"workloads": {}}))
    logs: list[str] = []
    suite = replace(SUITES["fair-quick"], seeds_autolrs=1)
    run_suite(suite, str(tmp_path / "o"), targets_path=str(targets), log=logs.append)
    assert [m for _, m, _, _ in calls] == ["autolrs", "naive"]
    assert any("no committed cosine grid for digits" in line for line in logs)


def test_unknown_workloads_stop_the_suite_before_it_trains(tmp_path):
    suite = Suite("x", ("digits", "no-such-workload"), ("naive",), fair=True)
    with pytest.raises(ValueError, match="--workloads"):
        run_suite(suite, str(tmp_path), targets_path=TARGETS, log=lambda m: None)


def namespace(**kw):
    base = dict(workloads=None, methods=None, budgets=None, oracle_grid=None, seeds=None,
                seeds_autolrs=None, seeds_anchors=None)
    return argparse.Namespace(**{**base, **kw})


def test_the_command_line_restricts_a_suite():
    assert split_methods(["autolrs,naive", "wsd"]) == ["autolrs", "naive", "wsd"]
    assert split_methods(["autolrs:keep_winner=False,val_points=8,naive"]) == [
        "autolrs:keep_winner=False,val_points=8", "naive"
    ]
    fair = SUITES["fair"]
    suite = restrict_suite(fair, namespace(
        workloads=["digits"], methods=["autolrs", "autolrs:keep_winner=False"], budgets="0.5,1",
        oracle_grid="all", seeds_autolrs=7, seeds_anchors=2))
    assert suite.workloads == ("digits",) and suite.budget_factors == (0.5, 1.0)
    assert suite.methods == ("autolrs", "autolrs:keep_winner=False") and suite.oracle_grid == "all"
    assert suite.seeds_for("autolrs:keep_winner=False") == 7 and suite.seeds_for("naive") == 2
    assert restrict_suite(fair, namespace(oracle_grid="5")).oracle_grid == 5
    both = restrict_suite(fair, namespace(seeds=2))
    assert both.seeds_for("autolrs") == both.seeds_for("naive") == 2
    for bad in (dict(budgets="0,1"), dict(budgets="x"), dict(oracle_grid="some"),
                dict(seeds_autolrs=0)):
        with pytest.raises(ValueError):
            restrict_suite(fair, namespace(**bad))


def test_fair_quick_end_to_end(tmp_path, capsys):
    targets = tmp_path / "targets.json"
    shutil.copy(TARGETS, targets)
    out = tmp_path / "fair-quick"
    args = ["bench", "--suite", "fair-quick", "--out", str(out), "--targets", str(targets)]
    start = time.perf_counter()
    assert main(args) == 0
    seconds = time.perf_counter() - start
    printed = capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert printed.startswith(text) and seconds < 120  # ~20 s alone on the 2-core machine
    runs = read_jsonl(str(out / "runs.jsonl"))
    (oracle,) = nearest_grid_lrs(committed()["digits"], 1)
    grid = f"cosine@{oracle:.3g}"
    assert Counter(r.method for r in runs) == {"autolrs": 2, grid: 1, "naive": 1}
    assert {r.budget for r in runs} == {400} and all(r.extra["protocol"] == "fair" for r in runs)
    assert "Torch threads per run: 1" in text and "only valid when the suite ran alone" in text
    assert "(a) Never behind naive:" in text and "(b) Speed-up:" in text
    assert "| autolrs | 2 |" in text and f"| {grid} | 1 |" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["curves"]["digits"][0]["budget"] == 400
    assert summary["cells"]["digits B=400"]["methods"]["autolrs"]["seeds"] == 2
    # rerunning trains nothing; --report rebuilds the same report from runs.jsonl
    assert main(args) == 0
    assert len(read_jsonl(str(out / "runs.jsonl"))) == 4
    (out / "report.md").unlink()
    assert main(["bench", "--report", str(out), "--targets", str(targets)]) == 0
    rebuilt = (out / "report.md").read_text()
    assert rebuilt.split("\n", 2)[2] == text.split("\n", 2)[2]  # all but the title line
    capsys.readouterr()
