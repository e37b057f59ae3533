"""What the controller asks its executor to do.

The controller never touches tensors: after each observation it answers with a tuple of actions
that the executor (:class:`autolrs.AutoLRS`, or an integration) carries out in order, before the
next training step. An :class:`Evaluate` is always last; the executor then calls the user's
validation function and tells the controller the value, which answers with more actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Action", "Discard", "Evaluate", "Restore", "SetLR", "Snapshot", "BEST", "STAGE", "WINNER"]

STAGE = "stage"
"""Slot holding the state at the start of the current stage (the last committed state)."""

WINNER = "winner"
BEST = "best"
"""The state at the lowest validation loss the overfitting checks saw (``Config.overfit_guard``)."""
"""Slot holding the best candidate's trained state (when ``Config.keep_winner`` is on)."""


@dataclass(frozen=True)
class SetLR:
    """Use learning rate ``lr`` (for the largest parameter group) from the next step on."""

    lr: float


@dataclass(frozen=True)
class Snapshot:
    """Copy model, optimizer, extra state and RNG states into ``slot`` (replacing its content)."""

    slot: str


@dataclass(frozen=True)
class Restore:
    """Load the state held in ``slot`` back into model, optimizer, extra state and RNGs."""

    slot: str


@dataclass(frozen=True)
class Discard:
    """Free the memory held by ``slot``."""

    slot: str


@dataclass(frozen=True)
class Evaluate:
    """Call the validation function and tell the controller its value."""


Action = Union[SetLR, Snapshot, Restore, Discard, Evaluate]
