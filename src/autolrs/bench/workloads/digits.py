"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images), a small CNN."""

from __future__ import annotations

import torch
from torch import nn

from autolrs.bench.workloads.base import Batch, Split, Workload

__all__ = ["DigitsCNN", "load_digits_splits", "make_digits"]


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions (16, 32 channels), 2x2 max-pooling, a 64-unit hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_digits_splits(seed: int = 0) -> tuple[Split, Split, Split]:
    """(train, holdout, score) = (70 %, 10 %, 20 %) of the digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(labels, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_score, n_holdout = int(0.2 * len(x)), int(0.1 * len(x))
    score = Split(x[:n_score], y[:n_score])
    holdout = Split(x[n_score : n_score + n_holdout], y[n_score : n_score + n_holdout])
    train = Split(x[n_score + n_holdout :], y[n_score + n_holdout :])
    return train, holdout, score


def _cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def make_digits(optimizer: str = "sgd") -> Workload:
    """The ``digits`` workload (SGD with momentum 0.9 by default, the benchmark's recipe)."""
    train, holdout, score = load_digits_splits()
    return Workload(
        name="digits",
        description="sklearn digits 8x8, CNN 16/32 + fc64, batch 64",
        optimizer=optimizer,
        weight_decay=5e-4 if optimizer == "sgd" else 1e-2,
        batch_size=64,
        step_hint=400,
        default_lr=0.1 if optimizer == "sgd" else 1e-3,
        train=train,
        holdout=holdout,
        score=score,
        build_model=lambda seed: DigitsCNN(),
        loss=_cross_entropy,
    )
