"""The AutoLRS settings a framework callback is given, and how it builds its scheduler.

Both :mod:`autolrs.integrations.huggingface` and :mod:`autolrs.integrations.lightning` take the
same :class:`autolrs.AutoLRS` keyword arguments and build the scheduler the same way once the
framework hands them the model and optimizer: :class:`SchedulerSettings` holds those arguments
and builds it; :class:`SettingsAttributes` keeps each one readable and writable on the callback
under its own name (``callback.seed``, ``callback.config``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from autolrs.core.config import Config
from autolrs.torch.scheduler import AutoLRS

__all__ = ["SchedulerSettings", "SettingsAttributes"]


@dataclasses.dataclass
class SchedulerSettings:
    """The :class:`autolrs.AutoLRS` keyword arguments of a framework callback.

    Args:
        val_fn: Callable returning a validation loss, or None.
        config: autolrs settings (default ``Config()``).
        seed: Seed of the search.
        lr_range: ``(low, high)``; None runs the range test.
        total_steps: Optimizer steps of the run; None lets the framework's estimate stand.
        log_file: JSONL event file (written by the leading process only).
        snapshot_device: Where snapshots live (``"cpu"``: host memory).

    Raises:
        TypeError: If ``val_fn`` is neither callable nor None.
    """

    val_fn: Callable[[], float] | None = None
    config: Config | None = None
    seed: int | None = None
    lr_range: tuple[float, float] | None = None
    total_steps: int | None = None
    log_file: str | None = None
    snapshot_device: str | None = None

    def __post_init__(self) -> None:
        if self.val_fn is not None and not callable(self.val_fn):
            raise TypeError(f"val_fn must be callable or None, got {self.val_fn!r}")

    def build(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int | None,
        val_fn: Callable[[], float] | None,
        leader: bool,
    ) -> AutoLRS:
        """The scheduler of a run, on the framework's model and optimizer.

        Args:
            model: The model being trained.
            optimizer: Its (unwrapped) torch optimizer.
            total_steps: The run's budget as the callback resolved it.
            val_fn: The validation function as the callback resolved it (its own, or one
                built from the framework's validation data), or None.
            leader: Whether this process writes the log file (the main process).
        """
        return AutoLRS(
            model,
            optimizer,
            total_steps=total_steps,
            lr_range=self.lr_range,
            val_fn=val_fn,
            config=self.config,
            seed=self.seed,
            log_file=self.log_file if leader else None,
            snapshot_device=self.snapshot_device,
        )


class _Setting:
    """A callback attribute that reads and writes one field of its ``settings``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, callback: Any, owner: type | None = None) -> Any:
        if callback is None:
            return self
        return getattr(callback.settings, self.name)

    def __set__(self, callback: Any, value: Any) -> None:
        setattr(callback.settings, self.name, value)


class SettingsAttributes:
    """Mixin of the callbacks: their :class:`SchedulerSettings` (``settings``), each field also
    an attribute of the callback (as it was before the settings had a class of their own)."""

    settings: SchedulerSettings
    val_fn = _Setting()
    config = _Setting()
    seed = _Setting()
    lr_range = _Setting()
    total_steps = _Setting()
    log_file = _Setting()
    snapshot_device = _Setting()
