"""Synthetic training problems and a driver for testing controllers without PyTorch.

:class:`NoisyQuadratic` is the noisy quadratic model (Zhang et al. 2019): SGD on a
diagonal quadratic with gradient noise. It reproduces the trade-offs a learning-rate schedule
faces (a large rate converges fast to a high noise floor; a small one slowly to a low floor; too
large diverges) in microseconds per step, with exact snapshots. :func:`drive` runs a
:class:`~autolrs.core.controller.StageController` on such a problem, carrying out its decisions
with the same :class:`~autolrs.core.executor.Executor` loop as :class:`autolrs.AutoLRS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolrs.core.actions import Action
from autolrs.core.controller import StageController
from autolrs.core.decision import Decision
from autolrs.core.executor import Executor
from autolrs.core.observations import Loss, Start

__all__ = ["DriveRecord", "NoisyQuadratic", "drive", "synthetic_curve"]


class NoisyQuadratic:
    """SGD on ``0.5 * sum(h_i * x_i**2)`` with gradient noise of variance ``noise * h_i``.

    Args:
        dim: Number of coordinates.
        curvature: ``(smallest, largest)`` of the log-spaced curvatures h_i; plain SGD diverges
            above a learning rate of ``2 / largest``.
        noise: Gradient-noise scale.
        seed: Seed of the initial point and the noise.
    """

    def __init__(
        self,
        dim: int = 32,
        curvature: tuple[float, float] = (1e-2, 1.0),
        noise: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.h = np.logspace(math.log10(curvature[0]), math.log10(curvature[1]), dim)
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.x = self.rng.standard_normal(dim)
        self.steps = 0
        self._slots: dict[str, tuple[np.ndarray, dict[str, Any], int]] = {}

    def loss(self) -> float:
        """The exact objective (the 'validation loss')."""
        with np.errstate(over="ignore", invalid="ignore"):
            return float(0.5 * np.sum(self.h * self.x * self.x))

    def train_step(self, lr: float) -> float:
        """One SGD step at ``lr``; returns the mini-batch loss measured before the update."""
        noise = self.rng.standard_normal(self.x.shape) * np.sqrt(self.noise * self.h)
        with np.errstate(over="ignore", invalid="ignore"):
            observed = self.loss() * (1.0 + 0.05 * self.rng.standard_normal())
            self.x = self.x - lr * (self.h * self.x + noise)
        self.steps += 1
        return observed

    def finite(self) -> bool:
        """Whether every coordinate is finite."""
        return bool(np.all(np.isfinite(self.x)))

    def snapshot(self, slot: str) -> None:
        """Stores the point and the noise generator's state in ``slot``."""
        self._slots[slot] = (self.x.copy(), self.rng.bit_generator.state, self.steps)

    def restore(self, slot: str) -> None:
        """Loads ``slot`` back (the step counter keeps counting spent steps)."""
        x, rng_state, _ = self._slots[slot]
        self.x = x.copy()
        self.rng.bit_generator.state = rng_state

    def discard(self, slot: str) -> None:
        """Forgets ``slot``."""
        self._slots.pop(slot, None)


def synthetic_curve(
    steps: int,
    *,
    start: float = 2.0,
    floor: float = 0.5,
    time_constant: float = 100.0,
    noise: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """A noisy exponential loss curve ``floor + (start - floor) * exp(-t / time_constant)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=float)
    return floor + (start - floor) * np.exp(-t / time_constant) + noise * rng.standard_normal(steps)


@dataclass
class DriveRecord:
    """What :func:`drive` observed, one entry per training step."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    in_trial: list[bool] = field(default_factory=list)
    evaluations: int = 0
    actions: list[Any] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class _ProblemExecutor(Executor):
    """Carries a controller's decisions out on a :class:`NoisyQuadratic` (for :func:`drive`)."""

    def __init__(
        self,
        controller: StageController,
        problem: NoisyQuadratic,
        validation: Callable[[], float],
        record: DriveRecord,
    ) -> None:
        super().__init__(controller)
        self.problem, self.validation, self.record = problem, validation, record
        self.lr: float | None = controller.lr

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def snapshot(self, slot: str) -> None:
        self.problem.snapshot(slot)

    def restore(self, slot: str) -> None:
        self.problem.restore(slot)

    def discard(self, slot: str) -> None:
        self.problem.discard(slot)

    def evaluate(self) -> float:
        self.record.evaluations += 1
        return self.validation()

    def apply(self, action: Action) -> Decision | None:
        self.record.actions.append(action)
        return super().apply(action)

    def on_events(self, events: list[dict[str, Any]]) -> None:
        self.record.events.extend(events)


def drive(
    controller: StageController,
    problem: NoisyQuadratic,
    steps: int,
    *,
    start: bool = True,
    validation: Callable[[], float] | None = None,
    record: DriveRecord | None = None,
) -> DriveRecord:
    """Trains ``problem`` for ``steps`` steps under ``controller``, carrying out its decisions.

    Each step's loss is told as a :class:`~autolrs.core.observations.Loss` through an
    :class:`~autolrs.core.executor.Executor` (the one :class:`autolrs.AutoLRS` uses too): the
    :class:`~autolrs.core.decision.Decision` that comes back is carried out (an ``Evaluate``
    action is answered with a :class:`~autolrs.core.observations.Validation`; if ``validation``
    raises, the controller is told :class:`~autolrs.core.observations.Abort` and the problem
    restored before the error goes on), and its outlook says whether the next step must report
    the model's finiteness.

    Args:
        controller: The controller (started here unless ``start`` is False).
        problem: The synthetic problem.
        steps: Training steps to run.
        start: Whether to tell the controller :class:`~autolrs.core.observations.Start` first.
        validation: The validation function (default: the problem's exact loss).
        record: A record to append to (for resumed runs).
    """
    rec = record or DriveRecord()
    executor = _ProblemExecutor(controller, problem, validation or problem.loss, rec)
    if start:
        executor.tell(Start())
    for _ in range(steps):
        lr = float(executor.lr)  # type: ignore[arg-type]  # set by Start
        rec.lrs.append(lr)
        rec.in_trial.append(controller.in_trial)
        finite_check = executor.outlook.needs_finite_check
        loss = problem.train_step(lr)
        rec.losses.append(loss)
        executor.tell(Loss(loss, problem.finite() if finite_check else True))
    return rec
