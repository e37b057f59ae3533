"""The fair report on synthetic runs: cells, speed-ups, aggregates, bar checks, Markdown, JSON."""

from __future__ import annotations

import json
import math

import pytest

from autolrs.bench.fair_summary import summarize_fair
from autolrs.bench.harness import RunResult
from autolrs.bench.report import write_report

H = 400


def run(method, budget, final, seed=0, lr=None, workload="digits"):
    r = RunResult(workload, method, seed, budget, steps=budget, final_score=final, target=0.05)
    every = budget // 50
    r.curve = [(s, 1.0 if s < budget else final) for s in range(every, budget + 1, every)]
    r.seconds = [(s, s * 0.01) for s, _ in r.curve]
    r.seconds_per_step = 0.01
    r.extra.update(
        protocol="fair", budget_factor=budget / H, step_hint=H, charged_seconds=budget * 0.01
    )
    if lr is not None:
        r.extra["lr"] = lr
    if method.startswith("autolrs"):
        r.extra["autolrs"] = {
            "controller_seconds": budget * 0.001,
            "val_fn_calls": 4,
            "accounting": {
                "warmup": 0, "range_test": budget // 10, "discarded_trials": budget // 5,
                "kept_trials": budget // 10, "exploit": budget // 4,
                "final": budget - budget // 10 - budget // 5 - budget // 10 - budget // 4,
                "rolled_back": 0,
            },
        }
    return r


def cosine_curve():
    """Two LRs at three budgets; the best per budget is a power law (b / 100) ** -0.5."""
    runs = []
    for budget in (200, 400, 800):
        best = (budget / 100) ** -0.5
        for seed in range(3):
            runs.append(run("cosine@0.05", budget, best * (1 + 0.01 * (seed - 1)), seed, lr=0.05))
            runs.append(run("cosine@0.1", budget, best * 1.2, seed, lr=0.1))
    return runs


def synthetic():
    runs = cosine_curve()
    for budget in (200, 400, 800):
        best = (budget / 100) ** -0.5
        # autolrs reaches at B what the cosine needs 2B for: speed-up 2; 5 seeds
        for seed, f in enumerate((0.99, 1.0, 1.0, 1.0, 1.01)):
            runs.append(run("autolrs", budget, best * 2**-0.5 * f, seed))
        for seed in range(3):
            runs.append(run("naive", budget, best * 1.1, seed))  # 1.1 = (b*/B) ** -0.5
            runs.append(run("schedulefree", budget, best, seed))  # the cosine's score: 1.0x
    return runs


def test_cells_curve_and_speedups():
    summary = summarize_fair(synthetic())
    assert list(summary["cells"]) == ["digits B=200", "digits B=400", "digits B=800"]
    curve = summary["curves"]["digits"]
    assert [p["budget"] for p in curve] == [200, 400, 800]
    assert all(p["lr"] == 0.05 for p in curve)
    assert curve[1]["score"] == pytest.approx(0.5)  # median over seeds of the best LR
    cell = summary["cells"]["digits B=400"]
    assert cell["factor"] == 1.0 and cell["step_hint"] == H
    auto = cell["methods"]["autolrs"]
    assert auto["seeds"] == 5 and auto["speedup_bound"] == ""
    assert auto["speedup"] == pytest.approx(2.0)
    assert auto["final_min"] == pytest.approx(0.5 * 2**-0.5 * 0.99)
    assert auto["controller_pct"] == pytest.approx(10.0) and auto["val_fn_calls"] == 4
    assert auto["accounting"]["discarded"] == pytest.approx(0.3)
    naive = cell["methods"]["naive"]
    assert naive["speedup"] == pytest.approx(1.1**-2)
    assert cell["methods"]["schedulefree"]["speedup"] == pytest.approx(1.0)
    # at the largest budget autolrs' score lies past the curve: extrapolated by the last slope
    # to 2 x 800 exactly (the limit itself is not clipped)
    top = summary["cells"]["digits B=800"]["methods"]["autolrs"]
    assert top["speedup"] == pytest.approx(2.0)
    # speed-ups are read off the curve, not the cosine runs' own rows (which are kept)
    assert cell["methods"]["cosine@0.05"]["speedup"] == pytest.approx(1.0)


def test_aggregates_and_bar_checks():
    summary = summarize_fair(synthetic())
    agg = summary["aggregates"]
    assert "cosine@0.05" not in agg
    assert agg["autolrs"]["geomean"] == pytest.approx(2.0) and agg["autolrs"]["cells"] == 3
    assert agg["naive"]["geomean"] == pytest.approx(1.1**-2)
    checks = summary["checks"]
    assert checks["never_behind_naive_verdict"] == "PASS"
    assert set(checks["never_behind_naive"]) == {"digits B=200", "digits B=400", "digits B=800"}
    speed = checks["speedup"]
    assert speed["verdict"] == "PASS" and speed["anchors"]["schedulefree"]["beats"]
    assert speed["missing"] == ["prodigy", "dadapt", "lrfinder-onecycle"]


def test_checks_fail_when_autolrs_is_behind():
    runs = cosine_curve()
    for budget in (200, 400, 800):
        best = (budget / 100) ** -0.5
        for seed in range(5):  # one bad seed at 400 steps; otherwise as good as the cosine
            bad = budget == 400 and seed == 4
            runs.append(run("autolrs", budget, best * (1.5 if bad else 1.0), seed))
        for seed in range(3):
            runs.append(run("naive", budget, best * 1.05, seed))
            runs.append(run("schedulefree", budget, best * 0.9, seed))
    checks = summarize_fair(runs)["checks"]
    cells = checks["never_behind_naive"]
    assert cells["digits B=200"]["verdict"] == "PASS"
    assert cells["digits B=400"]["verdict"] == "FAIL" and not cells["digits B=400"]["seeds_ok"]
    assert checks["never_behind_naive_verdict"] == "FAIL"
    speed = checks["speedup"]
    assert speed["verdict"] == "FAIL" and not speed["anchors"]["schedulefree"]["beats"]


def test_a_clipped_bound_cannot_pass_the_speedup_check():
    runs = [run("cosine@0.05", 400, 0.1), run("autolrs", 400, 0.12), run("naive", 400, 0.13)]
    summary = summarize_fair(runs)
    auto = summary["cells"]["digits B=400"]["methods"]["autolrs"]
    assert auto["speedup"] == 1.0 and auto["speedup_bound"] == "<="  # one budget: a bound
    assert summary["checks"]["speedup"]["verdict"] == "FAIL"


def test_fair_report_markdown_and_json(tmp_path):
    header = {"suite": "fair", "threads": 1, "machine": "m", "versions": {"torch": "x"}}
    text = write_report(synthetic(), {}, str(tmp_path), title="t", command="c", header=header)
    assert "only valid when the suite ran alone on the machine" in text
    assert "Torch threads per run: 1" in text
    assert "| autolrs | 2.00x | 2.00x | 2.00x | 2.00x | 3 (0) |" in text
    assert "(a) Never behind naive: PASS" in text and "| digits B=400 |" in text
    assert "(b) Speed-up: PASS" in text and "not run: prodigy, dadapt, lrfinder-onecycle" in text
    assert "| autolrs | 5 | 0.3536 [0.3500, 0.3571] | 2.00x | >400 |" in text
    assert "| cosine@0.05 | 3 |" in text and "10.0 %" in text
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["protocol"] == "fair" and data["header"]["threads"] == 1
    assert data["aggregates"]["autolrs"]["geomean"] == pytest.approx(2.0)
    assert (tmp_path / "digits-B400.png").exists() and (tmp_path / "digits-curve.png").exists()


def test_without_a_cosine_grid_there_are_no_speedups(tmp_path):
    runs = [run("autolrs", 400, 0.1), run("naive", 400, 0.12)]
    text = write_report(runs, {}, str(tmp_path), title="t", command="c")
    summary = summarize_fair(runs)
    assert math.isnan(summary["cells"]["digits B=400"]["methods"]["autolrs"]["speedup"])
    assert "no cosine grid runs" in text and "(b) Speed-up: n/a" in text
