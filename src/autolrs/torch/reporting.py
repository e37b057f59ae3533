"""Where a run's events and training losses go besides ``AutoLRS.events``.

:class:`Reporter` writes the events to the JSONL log file (``log_file``, which ``autolrs plot``
draws, with the training loss averaged over bins of steps by :class:`LossBin`) and to
TensorBoard (``tensorboard``), on the leading process only.
"""

from __future__ import annotations

import math
import os
from typing import Any

from autolrs.events import EventLog

__all__ = ["LossBin", "Reporter", "summary_writer", "write_scalars"]


class Reporter:
    """The run's JSONL log and TensorBoard writer.

    Args:
        log_file: Path of the JSONL log file, or None.
        tensorboard: A ``SummaryWriter`` (or any object with ``add_scalar``), a log directory,
            or None.
        total_steps: The run's budget (sets the width of the training-loss bins).
        leader: Whether this process writes (rank 0); the others write nothing.

    Attributes:
        log: The JSONL event log (held until the first step: a resume may replace its run).
        tensorboard: The summary writer, or None.
    """

    def __init__(
        self, log_file: str | os.PathLike[str] | None, tensorboard: Any, total_steps: int | None,
        *, leader: bool,
    ) -> None:
        self.log = EventLog(log_file, enabled=leader)
        self.log.hold()  # until the first step: load_state_dict() may make this a resumed run
        self.tensorboard = summary_writer(tensorboard) if leader else None
        self._loss_bin = LossBin(total_steps)  # training-loss records of the log file

    def emit(self, events: list[dict[str, Any]]) -> None:
        """Writes ``events`` to the log file and their scalars to TensorBoard."""
        self.log.emit(events)
        if self.tensorboard is not None:
            write_scalars(self.tensorboard, events)

    def learning_rate(self, lr: float, step: int) -> None:
        """Writes the rate of step ``step`` to TensorBoard."""
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("autolrs/lr", lr, step)

    def losses(self, first: int, values: list[float], part: Any) -> None:
        """Adds the training losses of steps ``first``, ... of ``part`` to the log's bins."""
        if self.log.path is not None:
            self.log.record(self._loss_bin.add(first, values, part))

    def close(self) -> None:
        """Writes the last bin, closes the log file and flushes TensorBoard."""
        self.log.record(self._loss_bin.flush())
        self.log.close()
        if self.tensorboard is not None:
            self.tensorboard.flush()


class LossBin:
    """Averages the training loss over bins of steps, for the log file's ``train_loss``
    records (``autolrs plot`` draws them): about 200 bins per budget, 10 steps without one."""

    def __init__(self, total_steps: int | None) -> None:
        self.width = max(1, (total_steps or 2000) // 200)
        self.start: int | None = None
        self.values: list[float] = []
        self.part: Any = None

    def add(self, first: int, values: list[float], part: Any = None) -> list[dict[str, Any]]:
        """Adds the losses of steps ``first``, ``first + 1``, ... of ``part`` (a phase of the
        run); returns the bins they completed (a bin never spans a gap in the steps, nor two
        parts: the plot draws each part in its own style)."""
        out: list[dict[str, Any]] = []
        if part != self.part:
            out += self.flush()
            self.part = part
        for step, value in enumerate(values, first):
            if self.start is not None and step != self.start + len(self.values):
                out += self.flush()
            if self.start is None:
                self.start = step
            self.values.append(value)
            if len(self.values) >= self.width:
                out += self.flush()
        return out

    def flush(self) -> list[dict[str, Any]]:
        """The current bin as a record (none when it is empty)."""
        if self.start is None:
            return []
        finite = [v for v in self.values if math.isfinite(v)]
        record = {
            "event": "train_loss",
            "step": self.start + len(self.values) - 1,
            "start": self.start,
            "loss": sum(finite) / len(finite) if finite else None,
            "steps": len(self.values),
        }
        self.start, self.values = None, []
        return [record]


def summary_writer(target: Any) -> Any:
    """A SummaryWriter for ``target`` (a writer, a log directory, or None)."""
    if target is None:
        return None
    if hasattr(target, "add_scalar"):
        return target
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            'tensorboard logging needs the tensorboard package; install it with: '
            'pip install "autolrs[tensorboard]"'
        ) from err
    return SummaryWriter(log_dir=str(target))


def write_scalars(writer: Any, events: list[dict[str, Any]]) -> None:
    """Writes the scalars of candidate, decision and rollback events."""
    for event in events:
        kind, step = event.get("event"), event.get("step", 0)
        if kind == "candidate":
            writer.add_scalar("autolrs/candidate_lr", event["lr"], step)
            if event.get("forecast") is not None:
                writer.add_scalar("autolrs/candidate_forecast", event["forecast"], step)
        elif kind == "decision":
            writer.add_scalar("autolrs/chosen_lr", event["lr"], step)
            if event.get("forecast") is not None:
                writer.add_scalar("autolrs/chosen_forecast", event["forecast"], step)
            writer.add_scalar("autolrs/stage", event.get("stage", 0), step)
        elif kind == "rollback":
            writer.add_scalar("autolrs/rollbacks", 1.0, step)
