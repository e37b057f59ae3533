"""Tiny models and data for the torch-layer tests."""

from __future__ import annotations

import torch
from torch import nn


def make_model(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(8, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1)]
    return nn.Sequential(*layers)


def make_data(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :1] * x[:, 1:2] + 0.5 * x[:, 2:3]).tanh() + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 32, seed: int = 0):
    """Endless shuffled batches (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - size + 1, size):
            idx = perm[i : i + size]
            yield x[idx], y[idx]


def train(sched, model, opt, data, steps: int, *, fault=None):
    """Runs ``steps`` steps; ``fault(step, loss) -> loss`` may corrupt the loss."""
    losses = []
    for step, (xb, yb) in zip(range(steps), data):
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if fault is not None:
            loss = fault(step, loss)
        losses.append(float(loss.detach()))
        sched.step(loss)
    return losses


def state_equal(a: dict, b: dict) -> bool:
    """Bit-for-bit equality of two (nested) state dicts."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    return a == b
