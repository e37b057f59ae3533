"""SIGKILL a training process at many points (mid-candidate, mid-exploit, in the range test) and
resume from its last checkpoint: the resumed run decides exactly as an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))
TOTAL, SAVE_EVERY = 240, 20


def run_worker(directory, kill_at=-1):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, WORKER, str(directory), "--total", str(TOTAL), "--save-every", str(SAVE_EVERY),
         "--kill-at", str(kill_at)],
        capture_output=True, text=True, timeout=300, env=env,
    )


def read_log(directory):
    rows = [json.loads(line) for line in open(os.path.join(directory, "log.jsonl"), encoding="utf-8")]
    return {step: (lr, phase) for step, lr, phase in rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reference")
    out = run_worker(directory)
    assert out.returncode == 0, out.stderr
    return read_log(directory), json.load(open(directory / "result.json"))


def kill_points(log):
    """Steps to kill at: in the range test, in the middle of candidates, in exploit phases."""
    by_phase = {}
    for step, (_, phase) in sorted(log.items()):
        by_phase.setdefault(phase, []).append(step)
    trials, exploits = by_phase["trial"], by_phase["exploit"]
    points = [by_phase["range_test"][len(by_phase["range_test"]) // 2], trials[3], trials[len(trials) // 2],
              exploits[1], exploits[len(exploits) // 2], exploits[-2]]
    return sorted(set(points))


def test_killed_runs_resume_exactly(reference, tmp_path):
    ref_log, ref_result = reference
    points = kill_points(ref_log)
    assert len(points) >= 5
    phases = {ref_log[p][1] for p in points}
    assert {"range_test", "trial", "exploit"} <= phases
    for i, kill_at in enumerate(points):
        directory = tmp_path / f"kill{kill_at}"
        directory.mkdir()
        killed = run_worker(directory, kill_at=kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert not (directory / "result.json").exists()
        if i < 2:  # a second process restarted from the very same checkpoint decides the same
            twin = tmp_path / f"twin{kill_at}"
            shutil.copytree(directory, twin)
        resumed = run_worker(directory)
        assert resumed.returncode == 0, resumed.stderr
        log = read_log(directory)
        assert log == ref_log, f"killed at {kill_at}: resumed run differs from the uninterrupted one"
        result = json.load(open(directory / "result.json"))
        # the resumed process knows every decision of the run: the history is in the state
        assert result["decisions"] == ref_result["decisions"]
        assert result["finite"] and not result["in_trial"]
        assert result["accuracy"] >= 0.9
        if i < 2:
            assert run_worker(twin).returncode == 0
            assert read_log(twin) == log
            assert json.load(open(twin / "result.json"))["decisions"] == result["decisions"]
