from __future__ import annotations

import json
import math

from autolrs.bench.harness import RunResult
from autolrs.bench.quick_report import summarize
from autolrs.bench.report import write_report


def result(method, steps, seed=0, final=0.1, sps=0.01, workload="digits"):
    """A run whose score drops from 1.0 to ``final`` at ``steps`` (scored every 10 steps)."""
    r = RunResult(workload, method, seed, 600, steps=600, final_score=final, seconds_per_step=sps)
    r.curve = [(s, final if s >= steps else 1.0) for s in range(10, 610, 10)]
    r.seconds = [(s, s * sps) for s in range(10, 610, 10)]
    r.steps_to_target = steps
    r.seconds_to_target = steps * sps
    r.lrs = [(1, 0.1)]
    r.extra["charged_seconds"] = 600 * sps
    if method == "autolrs":
        r.extra["autolrs"] = {"controller_seconds": 0.06, "val_seconds": 0.03}
    return r


def test_speedups_and_verdicts():
    runs = [
        result("autolrs", 200), result("autolrs", 220, seed=1),
        result("naive", 420), result("naive", 380, seed=1),
        result("schedulefree", 205), result("schedulefree", 225, seed=1),
        result("prodigy", math.inf), result("prodigy", math.inf, seed=1),
        result("wsd", 100), result("wsd", 120, seed=1),
    ]
    summary = summarize(runs, {"digits": {"target": 0.2, "oracle": {"lr": 0.05}}})
    sp = summary["speedups"]
    # with two seeds the median curve reaches the target when the slower seed does
    assert summary["workloads"]["digits"]["methods"]["autolrs"]["steps_to_target"] == 220
    assert sp["naive"]["digits"]["verdict"] == "win"
    assert sp["naive"]["digits"]["speedup"] == 420 / 220
    assert sp["schedulefree"]["digits"]["verdict"] == "tie"
    assert sp["prodigy"]["digits"]["verdict"] == "win"
    assert sp["prodigy"]["digits"]["speedup"] == 600 / 220
    assert sp["wsd"]["digits"]["verdict"] == "loss"
    row = summary["workloads"]["digits"]["methods"]["autolrs"]
    assert row["reached"] == 2 and row["controller_share"] == 0.01


def test_report_writes_markdown_json_and_figures(tmp_path):
    runs = [result("autolrs", 200), result("naive", 400), result("oracle", 300)]
    targets = {"digits": {"target": 0.2, "oracle": {"lr": 0.05}}}
    text = write_report(runs, targets, str(tmp_path), title="t", command="c")
    assert "| autolrs |" in text and "| naive |" in text and "2.00x" in text
    assert "| autolrs | 200 | 1/1 |" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["workloads"]["digits"]["target"] == 0.2
    assert (tmp_path / "digits.png").exists() and (tmp_path / "profile.png").exists()


def test_ablation_table_compares_every_method_with_the_base(tmp_path):
    from autolrs.bench.quick_report import write_ablation

    runs = [
        result("autolrs", 300, final=0.2), result("autolrs", 300, seed=1, final=0.2),
        result("autolrs:x=1", 150, final=0.1), result("autolrs:x=1", 150, seed=1, final=0.1),
        result("naive", math.inf, final=0.4), result("naive", math.inf, seed=1, final=0.4),
    ]
    path = tmp_path / "ablation-x.md"
    text = write_ablation(runs, {"digits": {"target": 0.2}}, "autolrs", str(path), "cmd")
    assert path.read_text() == text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    rows = {line.split(" | ")[0].strip("| "): line for line in lines}
    assert "-50.0%" in rows["autolrs:x=1"] and rows["autolrs:x=1"].endswith("2.00x |")
    assert ">600" in rows["naive"] and rows["naive"].endswith("0.50x |")
    assert rows["autolrs"].endswith("1.00x |")
