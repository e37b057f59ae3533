"""What an executor tells the controller (:meth:`StageController.tell`).

Example:
    >>> from autolrs.core import StageController
    >>> c = StageController(lr_range=(1e-3, 1.0), seed=0)
    >>> first = c.tell(Start())
    >>> decision = c.tell(Loss(2.3))
    >>> decision.outlook.quiet_steps >= 0
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

__all__ = ["Abort", "Loss", "Losses", "Observation", "Spent", "Start", "Validation"]


@dataclass(frozen=True)
class Start:
    """The first training step is about to be taken (told once, first)."""


@dataclass(frozen=True)
class Loss:
    """The training loss of the step just taken.

    Attributes:
        value: The loss (a non-finite value is a fault).
        model_finite: Whether every parameter is finite after the step; consulted only when the
            outlook said the step commits (:attr:`Outlook.needs_finite_check`).
    """

    value: float
    model_finite: bool = True


@dataclass(frozen=True)
class Losses:
    """The losses of several steps at once, oldest first (at most ``quiet_steps + 1``).

    Attributes:
        values: One loss per step.
        model_finite: Whether the parameters are finite after the last step, or a callable that
            says so (called only when that step commits).
    """

    values: Sequence[float]
    model_finite: bool | Callable[[], bool] = True


@dataclass(frozen=True)
class Validation:
    """The validation loss an :class:`~autolrs.core.actions.Evaluate` action asked for."""

    value: float


@dataclass(frozen=True)
class Abort:
    """The executor could not go on (e.g. the validation function raised): restore and retry."""

    reason: str


@dataclass(frozen=True)
class Spent:
    """``steps`` steps were taken on a state that is now abandoned (a buffered batch went on
    after an abnormal loss). Told to a phase by the controller, never by an executor."""

    steps: int


Observation = Union[Start, Loss, Losses, Validation, Abort, Spent]
