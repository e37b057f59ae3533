"""Common random numbers: every candidate of a stage sees the same batches.

:meth:`autolrs.AutoLRS.wrap` draws batches through a :class:`ReplayBuffer`. While a stage's
candidates are being tried, the batches the first candidate drew are recorded; after each
rollback to the stage snapshot the buffer is replayed from its start, so every candidate (and
the exploit phase, which starts from the same snapshot) trains on the same batches in the same
order. Replayed batches do not consume the underlying loader: exploring costs steps, not data.

The buffer holds references to the batches the loader yielded (about tau' of them); batches must
not be modified in place by the training loop.
"""

from __future__ import annotations

from typing import Any

from autolrs.core.actions import STAGE, WINNER

__all__ = ["ReplayBuffer"]

_EMPTY = object()


class ReplayBuffer:
    """Batches recorded since the stage snapshot, and the position of the model's timeline."""

    EMPTY: Any = _EMPTY
    """The sentinel :meth:`next` returns when a fresh batch is due (:meth:`is_empty`)."""

    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.cursor = 0
        self.winner_cursor = 0

    def next(self) -> Any:
        """The next recorded batch, or a sentinel (:meth:`is_empty`) when a fresh one is due."""
        if self.cursor < len(self.batches):
            batch = self.batches[self.cursor]
            self.cursor += 1
            return batch
        return _EMPTY

    @staticmethod
    def is_empty(batch: Any) -> bool:
        """Whether :meth:`next` found nothing to replay."""
        return batch is _EMPTY

    def record(self, batch: Any) -> None:
        """Appends a freshly drawn batch (only while candidates are being tried)."""
        self.batches.append(batch)
        self.cursor = len(self.batches)

    def on_snapshot(self, slot: str) -> None:
        """A new stage starts with an empty buffer; the winner remembers its position."""
        if slot == STAGE:
            self.batches, self.cursor, self.winner_cursor = [], 0, 0
        elif slot == WINNER:
            self.winner_cursor = self.cursor

    def on_restore(self, slot: str) -> None:
        """Rewinds the timeline with the model."""
        if slot == STAGE:
            self.cursor = 0
        elif slot == WINNER:
            self.cursor = self.winner_cursor
        else:
            self.batches, self.cursor, self.winner_cursor = [], 0, 0

    def state_dict(self) -> dict[str, Any]:
        """The recorded batches and positions (batches are saved as they are)."""
        return {
            "batches": list(self.batches),
            "cursor": self.cursor,
            "winner_cursor": self.winner_cursor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output."""
        self.batches = list(state["batches"])
        self.cursor = int(state["cursor"])
        self.winner_cursor = int(state["winner_cursor"])
