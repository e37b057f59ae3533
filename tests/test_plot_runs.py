"""Event files appended by several runs, log levels, and what the figure shows."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from autolrs import AutoLRS
from autolrs.cli import main
from autolrs.events import EventLog, level, read_events, split_runs
from autolrs.plot import select_run


def _train(log, seed: int, steps: int = 120) -> None:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AutoLRS(model, opt, total_steps=steps, seed=seed, log_file=log)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    sched.finish()


def test_every_record_names_its_run_and_two_runs_in_one_file_stay_apart(tmp_path, capsys):
    log = tmp_path / "run.jsonl"
    _train(log, seed=0)
    _train(log, seed=1)  # the same script run twice appends to the same file
    runs = split_runs(read_events(log))
    assert len(runs) == 2
    first, second = runs.values()
    assert sum(e["event"] == "start" for e in first) == 1 == sum(e["event"] == "start" for e in second)
    assert main(["plot", str(log), "-o", str(tmp_path / "last.png")]) == 0
    out = capsys.readouterr().out
    assert "holds 2 runs" in out and list(runs)[1] in out  # the last run is drawn by default
    assert main(["plot", str(log), "--run", "1", "-o", str(tmp_path / "first.png")]) == 0
    assert list(runs)[0] in capsys.readouterr().out
    assert main(["plot", str(log), "--run", list(runs)[0], "-o", str(tmp_path / "id.png")]) == 0
    assert main(["plot", str(log), "--run", "3", "-o", str(tmp_path / "none.png")]) == 2
    assert "holds 2 run(s)" in capsys.readouterr().err


def test_files_written_before_runs_had_an_identity_split_at_each_start():
    events = [{"event": "start", "step": 0}, {"event": "stage", "step": 1}, {"event": "start", "step": 0}]
    runs = split_runs(events)
    assert list(runs) == ["1", "2"] and len(runs["1"]) == 2
    assert select_run(runs)[0] == "2" and select_run(runs, 1)[0] == "1"
    with pytest.raises(ValueError, match="does not exist"):
        select_run(runs, "nope")


def test_a_resumed_log_keeps_the_run_identity_it_is_given(tmp_path):
    path = tmp_path / "events.jsonl"
    EventLog(path, run="abc").emit([{"event": "start", "step": 0}])
    EventLog(path, run="abc").emit([{"event": "resume", "step": 5}])
    assert list(split_runs(read_events(path))) == ["abc"]


def test_normal_rollbacks_are_info_and_non_finite_ones_warnings():
    guard = {"event": "rollback", "phase": "exploit", "reason": "loss rose above the stage start"}
    nan = {"event": "rollback", "phase": "trial", "reason": "non-finite loss (retrying the candidate once)"}
    assert level(guard) == logging.INFO
    assert level(nan) == logging.WARNING
    assert level({"event": "overrun"}) == logging.WARNING
    assert level({"event": "decision"}) == logging.INFO


def test_the_figure_draws_rolled_back_steps_and_explains_them(tmp_path):
    events = [
        {"event": "segment", "kind": "trial", "start": 0, "end": 10, "lr": 0.1, "committed": False},
        {"event": "segment", "kind": "exploit", "start": 10, "end": 20, "lr": 0.1, "committed": False},
        {"event": "segment", "kind": "exploit", "start": 20, "end": 40, "lr": 0.05, "committed": True},
        {"event": "rollback", "step": 20, "phase": "exploit", "reason": "loss rose"},
        {"event": "candidate", "stage": 1, "index": 0, "lr": 0.1, "forecast": 0.5, "end": 10, "diverged": False},
        {"event": "candidate", "stage": 2, "index": 0, "lr": 0.1, "forecast": 0.005, "end": 30, "diverged": False},
    ]
    from autolrs.plot import plot_events

    png = tmp_path / "f.png"
    plot_events(events, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.dumps(events)  # the figure does not alter the events


# ------------------------------------------------------------------ the loss panel (issue 20)
def test_the_log_file_records_the_training_loss_of_every_step_once(tmp_path):
    log = tmp_path / "run.jsonl"
    _train(log, seed=0, steps=120)
    records = [e for e in read_events(log) if e["event"] == "train_loss"]
    assert sum(r["steps"] for r in records) == 120
    assert [r["start"] for r in records] == [1] + [r["step"] + 1 for r in records[:-1]]  # no gap
    assert all(r["loss"] > 0 for r in records)


def test_the_loss_panel_shares_the_step_axis_and_tells_kept_from_undone(tmp_path):
    from autolrs.plot import figure

    events = [
        {"event": "segment", "kind": "trial", "start": 0, "end": 10, "lr": 0.1, "committed": False},
        {"event": "segment", "kind": "exploit", "start": 10, "end": 20, "lr": 0.1, "committed": False},
        {"event": "segment", "kind": "exploit", "start": 20, "end": 40, "lr": 0.05, "committed": True},
        {"event": "rollback", "step": 20, "phase": "exploit", "reason": "loss rose"},
        {"event": "candidate", "stage": 1, "index": 0, "lr": 0.1, "forecast": 0.5, "end": 10,
         "diverged": False, "mode": "validation"},
        *({"event": "train_loss", "step": s, "start": s - 4, "loss": 1.0 / s, "steps": 5} for s in range(5, 41, 5)),
        {"event": "validation_check", "step": 15, "value": 0.4},
        {"event": "validation_check", "step": 30, "value": 0.3},
    ]
    fig = figure(events)
    top, middle, _ = fig.axes
    assert middle.get_shared_x_axes().joined(top, middle)
    lines = [ln for ln in middle.get_lines() if len(ln.get_xdata())]
    styles = {(ln.get_linestyle(), ln.get_color()): list(ln.get_xdata()) for ln in lines if ln.get_linestyle() != "None"}
    assert styles[("-", "tab:orange")] == [5, 10]  # the candidate's trial
    assert styles[(":", "tab:blue")] == [15, 20]  # spent, then rolled back
    assert styles[("-", "tab:blue")] == [25, 30, 35, 40]  # committed
    markers = {ln.get_markerfacecolor() if ln.get_markerfacecolor() == "none" else "filled": list(ln.get_xdata())
               for ln in lines if ln.get_marker() == "o"}
    assert markers["none"] == [15, 10] and markers["filled"] == [30]  # hollow where rolled back
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_log_without_training_losses_still_plots(tmp_path):
    from autolrs.plot import plot_events

    events = [{"event": "segment", "kind": "exploit", "start": 0, "end": 10, "lr": 0.1, "committed": True}]
    plot_events(events, tmp_path / "old.png")
    assert (tmp_path / "old.png").read_bytes()[:4] == b"\x89PNG"


def test_step_accounting_of_a_log_file_ignores_its_loss_records(tmp_path):
    from autolrs.events import step_accounting

    log = tmp_path / "run.jsonl"
    _train(log, seed=0, steps=120)
    events = read_events(log)
    assert any(e["event"] == "train_loss" for e in events)
    assert step_accounting(events) == step_accounting([e for e in events if e["event"] != "train_loss"])
    assert sum(step_accounting(events).values()) == 120
