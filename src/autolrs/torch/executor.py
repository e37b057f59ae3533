"""Carrying the controller's decisions out on a PyTorch model and optimizer.

:class:`TorchExecutor` is :class:`autolrs.AutoLRS`' :class:`~autolrs.core.executor.Executor`:
it owns what the actions act on (the optimizer's rates, the snapshot store, the replay buffer
of ``wrap()``) and answers the controller's requests for a validation loss (``val_fn``, watched
by a :class:`~autolrs.torch.validation.ValidationWatch`). Under ``torch.distributed`` rank 0
decides and the decision is broadcast; every rank carries it out on its own model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from autolrs.core.controller import StageController
from autolrs.core.executor import Executor
from autolrs.core.observations import Losses
from autolrs.core.phases.base import Phase
from autolrs.torch.distributed import Collective
from autolrs.torch.notices import OnceWarnings
from autolrs.torch.rates import GroupRates
from autolrs.torch.replay import ReplayBuffer
from autolrs.torch.snapshot import SnapshotStore
from autolrs.torch.validation import ValidationWatch, training_level

__all__ = ["TorchExecutor", "TrainingRun"]

RECENT_LOSSES = 16  # training losses kept for the level a validation value is compared with


class TrainingRun(Protocol):
    """What the executor reads of the scheduler: the model and its validation function (read
    at each evaluation: ``sched.val_fn`` may be replaced after construction)."""

    model: torch.nn.Module
    val_fn: Callable[[], Any] | None


class TorchExecutor(Executor):
    """Carries the controller's decisions out on a model and its optimizer.

    Args:
        controller: The controller whose decisions are carried out.
        run: The scheduler's model and ``val_fn``.
        rates: The optimizer's rates (what ``SetLR`` sets).
        extra_state: Further objects a snapshot saves with the model and optimizer.
        snapshot_device: Where snapshots live (None: each tensor on its own device).
        comm: The ranks training together (rank 0 decides).
        notices: Where the warning about a distrusted ``val_fn`` goes.
        on_events: Receives each decision's events.

    Attributes:
        rates: The optimizer's rates.
        store: The snapshots of model, optimizer and extra state.
        replay: The batches ``wrap()`` replays to every candidate of a stage.
        watch: Whether ``val_fn`` is still trusted.
        snapshot_steps: The step at which each slot was saved.
        restores: Rollbacks carried out.
    """

    def __init__(
        self,
        controller: StageController,
        run: TrainingRun,
        *,
        rates: GroupRates,
        extra_state: Sequence[Any],
        snapshot_device: torch.device | None,
        comm: Collective,
        notices: OnceWarnings,
        on_events: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        super().__init__(
            controller,
            broadcast=comm.broadcast if comm.enabled else None,
            leader=comm.is_leader,
        )
        self.rates = rates
        self.store = SnapshotStore(run.model, rates.optimizer, extra_state, device=snapshot_device)
        self.replay = ReplayBuffer()
        self.watch = ValidationWatch()  # stops trusting a val_fn that returns an accuracy/NaN
        self.snapshot_steps: dict[str, int] = {}
        self.restores = 0
        self._run = run
        self._comm = comm
        self._notices = notices
        self._on_events = on_events
        self._recent: list[float] = []  # the latest training losses told (the watch's level)
        self._elsewhere: BaseException | None = None  # raised for a val_fn that failed remotely

    # ------------------------------------------------------------------ actions
    def set_lr(self, lr: float) -> None:
        self.rates.set(lr)

    def snapshot(self, slot: str) -> None:
        self.snapshot_steps[slot] = self.controller.step
        self.store.save(slot)
        self.replay.on_snapshot(slot)

    def restore(self, slot: str) -> None:
        self.store.restore(slot)
        self.restores += 1
        self.replay.on_restore(slot)
        self.rates.reloaded()  # the optimizer's param groups now hold the snapshot's rates

    def discard(self, slot: str) -> None:
        self.store.discard(slot)

    def on_events(self, events: list[dict[str, Any]]) -> None:
        self._on_events(events)

    # ------------------------------------------------------------------ losses and batches
    def tell_losses(self, values: list[float]) -> None:
        """Tells the training losses of the latest steps (already averaged over the ranks).

        The model's finiteness is checked where the controller may commit it: under
        ``torch.distributed`` on every rank, and only at such a step.
        """
        self._recent = (self._recent + list(values))[-RECENT_LOSSES:]
        if self._comm.enabled:
            at_boundary = len(values) > self.outlook.quiet_steps
            finite = self._comm.all_true(self.store.model_finite()) if at_boundary else True
            self.tell(Losses(values, model_finite=finite))
        else:
            self.tell(Losses(values, model_finite=self.store.model_finite))

    @property
    def records_batches(self) -> bool:
        """Whether a freshly drawn batch is recorded for replay: while a stage's candidates are
        tried, each later candidate (and the exploit phase) gets the first one's batches."""
        return self.controller.phase == Phase.TRIAL

    def record(self, batch: Any) -> None:
        """Records a freshly drawn batch for replay, if the run is at a point that needs it."""
        if self.records_batches:
            self.replay.record(batch)

    # ------------------------------------------------------------------ validation
    def evaluate(self) -> float:
        """val_fn's value averaged over the ranks; if it raised on any rank, raises on every
        rank (the executor then rolls back everywhere before the error gets out)."""
        if not self.watch.trusted:
            return self._fallback_validation()
        value, error = self._call_val_fn()
        if not self._comm.all_true(error is None):
            if error is not None:
                raise error
            self._elsewhere = RuntimeError(
                "val_fn raised on another rank; the trial was rolled back"
            )
            raise self._elsewhere
        value = self._comm.mean([value])[0]
        level = training_level(self._recent)
        if self.watch.observe(value, level, committed=not self.controller.in_trial) is not None:
            self._notices.warn("val_fn", self.watch.message())
            return self._fallback_validation()
        return value

    def abort_reason(self, error: BaseException) -> str:
        if error is self._elsewhere:
            return "val_fn raised on another rank"
        return f"val_fn raised {type(error).__name__}"

    def load_state(
        self, snapshots: dict[str, Any], replay: dict[str, Any], ratios: list[float],
        val_watch: Any,
    ) -> None:
        """Loads the parts of a saved AutoLRS state the actions act on (the optimizer's own
        state was loaded by the user: its groups are read again)."""
        self.store.load_state_dict(snapshots)
        self.replay.load_state_dict(replay)
        self.rates.ratios = [float(r) for r in ratios]
        self.rates.reloaded()
        if isinstance(val_watch, dict):
            self.watch.load_state_dict(val_watch)

    def _call_val_fn(self) -> tuple[float, BaseException | None]:
        """Calls val_fn on this rank: its value, or what it raised."""
        val_fn, model = self._run.val_fn, self._run.model
        assert val_fn is not None
        was_training = model.training
        try:
            return _validation_value(val_fn()), None
        except BaseException as err:  # noqa: BLE001 - re-raised by the executor, on every rank
            return math.nan, err
        finally:
            model.train(was_training)

    def _fallback_validation(self) -> float:
        """What answers the controller once val_fn is not trusted: a candidate's recent
        training loss in a trial; elsewhere (an overfitting check) NaN, which skips the check."""
        if self.controller.phase == Phase.TRIAL:
            return training_level(self._recent)
        return math.nan


def _validation_value(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(
                f"val_fn must return a number or a 0-d tensor, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"val_fn must return a number (the validation loss), got {type(value).__name__}"
        )
    return float(value)
