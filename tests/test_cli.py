from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autolrs.cli import main


def test_demo_prints_the_comparison_and_writes_log_and_figure(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    assert main(["demo", "--steps", "240", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # the demo's single thread is undone
    out = capsys.readouterr().out
    assert "autolrs from AdamW 1e-3" in out and "AdamW 1e-3 fixed" in out
    # process CPU time on one thread (stable on a busy machine), not wall time
    assert "CPU s (1 thread)" in out and "wall" not in out
    assert "warm-up+cosine" in out and "per stage:" in out
    assert (tmp_path / "schedule.png").stat().st_size > 10_000
    events = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert any(e["event"] == "decision" for e in events)
    # every method ran the same number of steps
    rows = [line for line in out.splitlines() if line.startswith(("autolrs from", "AdamW"))]
    assert len(rows) == 3 and all(" 240 " in row for row in rows)


def test_plot_draws_a_run(tmp_path):
    import torch

    from autolrs import AutoLRS

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    log = tmp_path / "run.jsonl"
    sched = AutoLRS(model, opt, total_steps=150, seed=0, log_file=log)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    sched.finish()
    png = tmp_path / "out" / "schedule.png"
    assert main(["plot", str(log), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_reports_missing_and_foreign_files(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing.jsonl")]) == 2
    assert "error" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "something"}\n')
    assert main(["plot", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    assert "no autolrs events" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "autolrs.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "autolrs" in out.stdout


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["nonsense"])
