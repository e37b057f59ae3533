"""The quick tier runs end to end (and stays quick) against the committed targets."""

from __future__ import annotations

import json
import os
import shutil

from autolrs.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_suite_writes_a_report(tmp_path, capsys):
    targets = tmp_path / "targets.json"
    shutil.copy(os.path.join(ROOT, "benchmarks", "targets.json"), targets)
    out = tmp_path / "quick"
    assert main(["bench", "--suite", "quick", "--out", str(out), "--targets", str(targets)]) == 0
    text = (out / "report.md").read_text()
    for method in ("autolrs", "autolrs-paper", "naive", "schedulefree"):
        assert f"| {method} |" in text
    summary = json.loads((out / "summary.json").read_text())
    digits = summary["workloads"]["digits"]
    assert digits["target"] == json.loads(targets.read_text())["workloads"]["digits"]["target"]
    assert set(summary["speedups"]) == {"autolrs-paper", "naive", "schedulefree"}
    assert (out / "digits.png").exists() and (out / "profile.png").exists()
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sum("header" not in r for r in runs) == 4
    # rerunning resumes: nothing is repeated
    assert main(["bench", "--suite", "quick", "--out", str(out), "--targets", str(targets)]) == 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sum("header" not in r for r in runs) == 4
    capsys.readouterr()
