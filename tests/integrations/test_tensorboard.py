"""TensorBoard scalars: the learning rate, candidates' forecasts and decisions."""

from __future__ import annotations

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from autolrs import AutoLRS, Config


def test_scalars_are_written(tmp_path):
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AutoLRS(model, opt, total_steps=120, seed=0, config=Config.stagewise(candidates=3), tensorboard=tmp_path)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(120):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    sched.finish()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"autolrs/lr", "autolrs/candidate_lr", "autolrs/candidate_forecast", "autolrs/chosen_lr"} <= tags
    assert len(events.Scalars("autolrs/lr")) == 120


def test_snapshot_memory_matches_the_documented_cost():
    # one snapshot = parameters + optimizer state: 2x the parameter bytes for SGD with momentum,
    # 3x for AdamW (plus a few scalars)
    model = nn.Linear(1000, 100)
    n_bytes = sum(p.numel() * 4 for p in model.parameters())
    for opt, factor in ((torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 2),
                        (torch.optim.AdamW(model.parameters(), lr=1e-3), 3)):
        x = torch.randn(8, 1000)
        model(x).sum().backward()
        opt.step()  # create the optimizer state
        sched = AutoLRS(model, opt, lr_range=(1e-4, 1e-1), seed=0)
        assert factor * n_bytes <= sched.snapshot_bytes <= factor * n_bytes + 10_000
        cpu = AutoLRS(model, opt, lr_range=(1e-4, 1e-1), seed=0, snapshot_device="cpu")
        assert cpu.snapshot_bytes == sched.snapshot_bytes
        sched.remove_hooks()
        cpu.remove_hooks()
