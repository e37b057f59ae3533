"""What an :class:`~autolrs.torch.scheduler.AutoLRS` run reports about itself: read-only
properties over its controller, executor and misuse detector (the training loop's face stays in
``scheduler.py``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from autolrs.core.config import Config

if TYPE_CHECKING:
    from autolrs.core.controller import StageController
    from autolrs.torch.executor import TorchExecutor
    from autolrs.torch.misuse import MisuseDetector

__all__ = ["RunStatus"]


class RunStatus:
    """The read-only view of a run that :class:`~autolrs.torch.scheduler.AutoLRS` exposes."""

    _controller: StageController
    _executor: TorchExecutor
    _misuse: MisuseDetector
    _pending: list[Any]
    _drawn: int
    events: list[dict[str, Any]]

    @property
    def in_trial(self) -> bool:
        """True while a candidate is being tried (its weights may still be rolled back)."""
        return self._controller.in_trial

    @property
    def finished(self) -> bool:
        """True once ``total_steps`` steps were taken."""
        return self._controller.step + len(self._pending) >= (
            self._controller.total_steps or math.inf
        )

    @property
    def stage(self) -> int:
        """Index of the current stage (1-based; 0 during the range test)."""
        return self._controller.stage

    @property
    def phase(self) -> str:
        """``"warmup"``, ``"range_test"``, ``"ramp"``, ``"trial"``, ``"exploit"``, ``"final"`` or
        ``"done"``."""
        return self._controller.phase

    @property
    def lr_range(self) -> tuple[float, float] | None:
        """The interval searched (found by the range test when none was given)."""
        return self._controller.search_range

    @property
    def config(self) -> Config:
        """The method's settings."""
        return self._controller.config

    @property
    def steps_taken(self) -> int:
        """Optimizer steps reported so far (trials included)."""
        return self._controller.step + len(self._pending)

    @property
    def optimizer_steps(self) -> int:
        """Calls of ``optimizer.step()`` seen since construction (a step hook counts them)."""
        return self._misuse.optimizer_steps

    @property
    def snapshot_bytes(self) -> int:
        """Memory held by the live snapshots."""
        return self._executor.store.nbytes()

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """One entry per stage decision: step, stage, chosen lr and its forecast."""
        return [
            {k: e[k] for k in ("step", "stage", "lr", "forecast", "exploit_steps", "reason")}
            for e in self.events
            if e["event"] == "decision"
        ]

    @property
    def batches_drawn(self) -> int:
        """Fresh batches :meth:`wrap` has drawn from the user's iterables (replays excluded),
        over the whole run (a resumed run counts on from the saved one): the data position."""
        return self._drawn
