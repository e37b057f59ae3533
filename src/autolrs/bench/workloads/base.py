"""What a benchmark workload provides."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Batch", "Split", "Workload", "endless_batches", "evaluate_classifier"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Split:
    """Inputs and targets of one split, kept in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Workload:
    """A model, its data and its training recipe.

    Attributes:
        name: Registry name.
        description: One line for reports.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adamw"``: the workload's optimizer family.
        weight_decay: The workload's weight decay.
        batch_size: Training batch size.
        step_hint: H, the number of steps the tuned cosine baseline is given.
        default_lr: The naive default learning rate of the optimizer family.
        train: The training split.
        holdout: The tuning holdout (the only validation data a self-tuning method may see).
        score: The score split (only the harness sees it).
        build_model: ``seed -> model``.
        loss: ``(model, batch) -> scalar loss``.
        has_accuracy: Whether :meth:`evaluate` reports an accuracy.
        eval_batch: Batch size for evaluation.
    """

    name: str
    description: str
    optimizer: str
    weight_decay: float
    batch_size: int
    step_hint: int
    default_lr: float
    train: Split
    holdout: Split
    score: Split
    build_model: Callable[[int], nn.Module]
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    has_accuracy: bool = True
    eval_batch: int = 512
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        """Steps every method may take: 1.5 x the step hint (AlgoPerf's self-tuning factor)."""
        return int(round(1.5 * self.step_hint))

    def model(self, seed: int) -> nn.Module:
        """A freshly initialised model (the same for every method with this seed)."""
        torch.manual_seed(seed)
        return self.build_model(seed)

    def make_optimizer(self, params: Any, lr: float) -> torch.optim.Optimizer:
        """The workload's optimizer at learning rate ``lr``."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer family {self.optimizer!r}")

    def batches(self, seed: int) -> Iterator[Batch]:
        """Endless training batches in an order fixed by ``seed`` (same for every method)."""
        return endless_batches(self.train, self.batch_size, seed, self.extra.get("sampler"))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Mean loss (and accuracy) of ``model`` on ``"holdout"`` or ``"score"``."""
        data = {"holdout": self.holdout, "score": self.score, "train": self.train}[split]
        was_training = model.training
        model.eval()
        try:
            return evaluate_classifier(model, data, self.loss, self.eval_batch, self.has_accuracy)
        finally:
            model.train(was_training)


def endless_batches(
    split: Split, batch_size: int, seed: int, sampler: Callable[..., Batch] | None = None
) -> Iterator[Batch]:
    """Shuffled mini-batches, epoch after epoch, in a deterministic order."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    if sampler is not None:
        while True:
            yield sampler(split, batch_size, generator)
    n = len(split)
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            yield split.x[idx], split.y[idx]


def evaluate_classifier(
    model: nn.Module,
    split: Split,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    batch_size: int,
    accuracy: bool,
) -> dict[str, float]:
    """Mean loss over ``split`` (weighted by batch size) and, optionally, top-1 accuracy."""
    total_loss, total_correct, count, targets = 0.0, 0.0, 0, 0
    for start in range(0, len(split), batch_size):
        xb = split.x[start : start + batch_size]
        yb = split.y[start : start + batch_size]
        n = len(xb)
        total_loss += float(loss_fn(model, (xb, yb))) * n
        if accuracy:
            logits = model(xb)
            total_correct += float((logits.argmax(-1) == yb).float().sum())
            targets += yb.numel()
        count += n
    out = {"loss": total_loss / count}
    if accuracy:
        out["accuracy"] = total_correct / max(targets, 1)
    return out
