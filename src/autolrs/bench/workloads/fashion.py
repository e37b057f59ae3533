"""``fashion-cnn`` and ``fashion-resnet``: Fashion-MNIST from Debian's ``dataset-fashion-mnist``."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from autolrs.bench.workloads.base import Batch, Split, Workload

__all__ = ["FashionCNN", "ResNet8", "load_fashion", "make_fashion_cnn", "make_fashion_resnet"]

FASHION_DIR = os.environ.get("AUTOLRS_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "sudo apt-get install dataset-fashion-mnist  (or: make bench-deps)"
_MEAN, _STD = 0.2860, 0.3530
_CACHE: dict[str, tuple[Split, Split, Split]] = {}


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion(directory: str = FASHION_DIR) -> tuple[Split, Split, Split]:
    """(train 55,000, holdout 5,000 from the training set, score 2,000 from the test set).

    Raises:
        FileNotFoundError: If the Debian package's files are missing, naming the install command.
    """
    if directory in _CACHE:
        return _CACHE[directory]
    files = {
        name: os.path.join(directory, f"{name}-idx{3 if 'images' in name else 1}-ubyte.gz")
        for name in ("train-images", "train-labels", "t10k-images", "t10k-labels")
    }
    missing = [p for p in files.values() if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found ({missing[0]} is missing); install it with: {INSTALL_HINT}"
        )

    def images(name: str) -> torch.Tensor:
        x = torch.from_numpy(_read_idx(files[name]).astype(np.float32) / 255.0)
        return ((x - _MEAN) / _STD).unsqueeze(1)

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(_read_idx(files[name]).astype(np.int64))

    x, y = images("train-images"), labels("train-labels")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    xt, yt = images("t10k-images"), labels("t10k-labels")
    tperm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(1))[:2000]
    splits = (Split(x[5000:], y[5000:]), Split(x[:5000], y[:5000]), Split(xt[tperm], yt[tperm]))
    _CACHE[directory] = splits
    return splits


class FashionCNN(nn.Module):
    """conv 16 - pool - conv 32 - pool - fc 128 - fc 10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet8(nn.Module):
    """A ResNet with three residual blocks (16, 32, 64 channels) and BatchNorm: 8 weight layers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _fashion(name: str, description: str, step_hint: int, build: Callable[[int], nn.Module], **extra: Any) -> Workload:
    train, holdout, score = load_fashion()
    return Workload(
        name=name,
        description=description,
        optimizer="sgd",
        weight_decay=5e-4,
        batch_size=128,
        step_hint=step_hint,
        default_lr=0.1,
        train=train,
        holdout=Split(holdout.x[:1000], holdout.y[:1000]),
        score=score,
        build_model=build,
        loss=_cross_entropy,
        extra=dict(extra),
    )


def make_fashion_cnn() -> Workload:
    """The ``fashion-cnn`` workload: SGD momentum 0.9, weight decay 5e-4, batch 128."""
    return _fashion(
        "fashion-cnn",
        "Fashion-MNIST, CNN 16/32 + fc128, SGD m=0.9 wd 5e-4, batch 128",
        2000,
        lambda seed: FashionCNN(),
    )


def make_fashion_resnet() -> Workload:
    """The ``fashion-resnet`` workload: ResNet-8 with BatchNorm, SGD momentum 0.9, batch 128."""
    return _fashion(
        "fashion-resnet",
        "Fashion-MNIST, ResNet-8 with BatchNorm, SGD m=0.9 wd 5e-4, batch 128",
        900,
        lambda seed: ResNet8(),
        batchnorm=True,
    )
