"""``AutoLRSCallback`` for ``lightning.Trainer``.

    import lightning as L
    from autolrs.integrations.lightning import AutoLRSCallback

    trainer = L.Trainer(max_steps=2000, callbacks=[AutoLRSCallback()])
    trainer.fit(module)          # configure_optimizers returns an optimizer, no LR scheduler

- ``on_fit_start`` builds an :class:`autolrs.AutoLRS` on the LightningModule and its (single)
  optimizer, with ``total_steps = trainer.estimated_stepping_batches``, and says (an INFO line of
  Lightning's logger) which loss scores candidates: ``val_fn``'s; else the module's validation
  loss (its ``validation_step`` in eval mode on the first ``val_batches`` batches of
  ``val_dataloader=``, or of the validation dataloader given to ``fit``); else the training loss,
  and then nothing watches for overfitting.
- ``on_train_batch_end`` reads the loss from the ``training_step`` output and, once per optimizer
  step (gradient accumulation is respected), reports it: autolrs may roll the weights back and
  sets the next learning rate.
- The callback's ``state_dict()`` (controller state plus the stage snapshot's tensors) goes into
  Lightning checkpoints and comes back with ``trainer.fit(..., ckpt_path=...)``.
- Under the ``ddp`` strategy every rank runs the callback; rank 0 decides (see
  :mod:`autolrs.torch.distributed`).

Batches are drawn by Lightning's fit loop, which offers a callback no way to rewind its data
loader, so candidates see different batches: the common random numbers of ``AutoLRS.wrap``
(every candidate of a stage replays the same batches) are available only in a plain loop.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from autolrs.integrations import require

L = require("lightning", "lightning", "autolrs.integrations.lightning")

import torch  # noqa: E402

from autolrs.core.config import Config  # noqa: E402
from autolrs.exceptions import AutoLRSWarning  # noqa: E402
from autolrs.integrations._builder import SchedulerSettings, SettingsAttributes  # noqa: E402
from autolrs.torch.scheduler import AutoLRS  # noqa: E402

__all__ = ["AutoLRSCallback"]


class AutoLRSCallback(L.Callback, SettingsAttributes):
    """Lets autolrs set the learning rate of a Lightning training run.

    Args:
        val_fn: Callable returning a validation loss (float, lower is better). None (default):
            the module's validation loss (see ``val_dataloader``).
        val_dataloader: Instead of ``val_fn``: batches whose first ``val_batches`` give the
            validation loss, the mean of what the module's ``validation_step`` returns for them
            (a loss tensor, or a dict with ``"val_loss"`` or ``"loss"``) or, if it returns
            nothing, logs (``self.log("val_loss", ...)``, or the one key naming a loss). None:
            the validation dataloader given to ``trainer.fit`` (or the datamodule's), if the
            module has a ``validation_step``; without any, candidates are scored by the training
            loss.
        val_batches: Batches of the validation data evaluated per validation call.
        config: autolrs settings (default ``Config()``).
        seed: Seed of the search.
        lr_range: ``(low, high)``; None runs the range test.
        total_steps: Optimizer steps of the run; default ``trainer.estimated_stepping_batches``.
        log_file: JSONL event file (written by rank 0).
        snapshot_device: ``"cpu"`` keeps snapshots in host memory.
    """

    def __init__(
        self,
        *,
        val_fn: Callable[[], float] | None = None,
        val_dataloader: Iterable[Any] | None = None,
        val_batches: int = 8,
        config: Config | None = None,
        seed: int | None = None,
        lr_range: tuple[float, float] | None = None,
        total_steps: int | None = None,
        log_file: str | None = None,
        snapshot_device: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = SchedulerSettings(
            val_fn=val_fn, config=config, seed=seed, lr_range=lr_range, total_steps=total_steps,
            log_file=log_file, snapshot_device=snapshot_device,
        )
        if val_fn is not None and val_dataloader is not None:
            raise ValueError("pass either val_fn or val_dataloader, not both")
        if isinstance(val_batches, bool) or not isinstance(val_batches, int) or val_batches < 1:
            raise ValueError(f"val_batches must be an integer >= 1, got {val_batches!r}")
        self.val_dataloader = val_dataloader
        self.val_batches = val_batches
        self.sched: AutoLRS | None = None
        self._pending_state: dict[str, Any] | None = None
        self._losses: list[torch.Tensor] = []
        self._steps_seen = 0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(seed=self.seed, lr_range=self.lr_range)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(
                "AutoLRSCallback drives one optimizer; configure_optimizers returned "
                f"{len(optimizers)}"
            )
        if trainer.lr_scheduler_configs:
            warnings.warn(
                "AutoLRSCallback sets the learning rate itself: remove the LR scheduler "
                "returned by configure_optimizers (autolrs overrides it before every optimizer "
                "step).",
                AutoLRSWarning,
                stacklevel=2,
            )
        total = self.total_steps
        if total is None:
            estimate = trainer.estimated_stepping_batches
            total = int(estimate) if estimate is not None and math.isfinite(estimate) else None
        val_fn = self._validation(trainer, pl_module)
        self.sched = self.settings.build(
            pl_module, optimizers[0], total_steps=total, val_fn=val_fn,
            leader=trainer.is_global_zero,
        )
        self._steps_seen = self.sched.optimizer_steps
        if self._pending_state is not None:
            self.sched.load_state_dict(self._pending_state)
            self._pending_state = None

    def _validation(self, trainer: Any, pl_module: Any) -> Callable[[], float] | None:
        """The function that scores candidates (None: the training loss), said at the start."""
        if self.val_fn is not None:
            _say("candidates are scored by val_fn's validation loss")
            return self.val_fn
        loader, source = self.val_dataloader, "val_dataloader="
        if loader is None:
            loader, source = _trainer_val_dataloader(trainer, pl_module), "the Trainer's"
        if loader is None:
            _say(
                "candidates are scored by the training loss and nothing watches for "
                "overfitting: the module has no validation data (pass val_dataloaders to "
                "trainer.fit with a validation_step, or val_dataloader= / val_fn= to "
                "AutoLRSCallback)"
            )
            return None
        several = _several_val_dataloaders(trainer) and source != "val_dataloader="
        batches = list(itertools.islice(iter(loader), self.val_batches))
        evaluate = _module_loss(pl_module, batches, several)
        try:
            evaluate()  # at the start: a validation_step that gives no loss is said now
        except _NoLoss as err:
            warnings.warn(
                f"AutoLRSCallback cannot score candidates by the validation loss: {err}. "
                "Candidates are scored by the training loss instead and nothing watches for "
                "overfitting.",
                AutoLRSWarning,
                stacklevel=3,
            )
            return None
        _say(
            f"candidates are scored by the module's validation loss (validation_step on the "
            f"first {self.val_batches} batches of {source} validation dataloader)"
            if source != "val_dataloader="
            else f"candidates are scored by the module's validation loss (validation_step on "
            f"the first {self.val_batches} batches of val_dataloader=)"
        )
        return evaluate

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.sched is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            raise TypeError(
                "AutoLRSCallback needs training_step to return the loss (a tensor or a dict with "
                f"'loss'), got {type(outputs).__name__}"
            )
        self._losses.append(loss.detach())
        if self.sched.optimizer_steps > self._steps_seen:  # an optimizer step happened
            self._steps_seen = self.sched.optimizer_steps
            value = torch.stack(self._losses).float().mean()
            self._losses = []
            self.sched.step(value)
            self._steps_seen = self.sched.optimizer_steps

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.sched is not None:
            self.sched.finish()

    def state_dict(self) -> dict[str, Any]:
        if self.sched is not None:
            return {"autolrs": self.sched.state_dict()}
        return {"autolrs": self._pending_state} if self._pending_state is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("autolrs")
        if state is None:
            return
        if self.sched is not None:
            self.sched.load_state_dict(state)
        else:
            self._pending_state = state


class _NoLoss(TypeError):
    """The module's validation_step gave no loss AutoLRSCallback can read."""


def _say(message: str) -> None:
    """One INFO line of Lightning's own logger (shown by default, on rank 0)."""
    from lightning.pytorch.utilities import rank_zero_info

    rank_zero_info(f"AutoLRSCallback: {message}.")


def _trainer_val_dataloader(trainer: Any, pl_module: Any) -> Any:
    """The first validation dataloader of ``trainer.fit`` (or the datamodule), or None.

    Lightning loads it lazily, at the sanity check or the first validation; its validation loop
    loads it here instead (the same call, which the loop then finds done).
    """
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if trainer.limit_val_batches == 0 or not is_overridden("validation_step", pl_module):
        return None
    if trainer.val_dataloaders is None:
        trainer.fit_loop.epoch_loop.val_loop.setup_data()
    loaders = trainer.val_dataloaders
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return loaders


def _step_loss(output: Any, logged: dict[str, Any]) -> torch.Tensor:
    """The loss in what ``validation_step`` returned, or else in what it logged."""
    if isinstance(output, dict):
        output = output.get("val_loss", output.get("loss"))
    if isinstance(output, torch.Tensor) and output.numel() == 1:
        return output.detach().reshape(())
    named = [k for k in logged if "loss" in k.lower()]
    key = "val_loss" if "val_loss" in logged else (named[0] if len(named) == 1 else None)
    if key is not None and isinstance(logged[key], (torch.Tensor, float, int)):
        return torch.as_tensor(logged[key], dtype=torch.float32).detach().reshape(())
    raise _NoLoss(
        f"its validation_step returned {type(output).__name__} and logged "
        f"{sorted(logged) or 'nothing'}; return the loss from validation_step (or log it as "
        "'val_loss'), or pass AutoLRSCallback(val_fn=...)"
    )


def _several_val_dataloaders(trainer: Any) -> bool:
    """Whether the Trainer holds several validation dataloaders (validation_step then takes a
    ``dataloader_idx``; the first one's is used)."""
    loaders = trainer.val_dataloaders
    return isinstance(loaders, (list, tuple, dict)) and len(loaders) > 1


def _module_loss(pl_module: Any, batches: list[Any], several: bool = False) -> Callable[[], float]:
    """A ``val_fn``: the mean validation_step loss of ``batches``, with logging switched off
    (so that the search's evaluations never reach the Trainer's logged metrics)."""

    @torch.no_grad()
    def evaluate() -> float:
        logged: dict[str, Any] = {}
        was_training = pl_module.training
        pl_module.eval()
        pl_module.log = lambda name, value, *_, **__: logged.__setitem__(name, value)
        pl_module.log_dict = lambda values, *_, **__: logged.update(values)
        try:
            losses = []
            for index, batch in enumerate(batches):
                logged.clear()
                batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                extra = (0,) if several else ()  # dataloader_idx: the first dataloader's batches
                output = pl_module.validation_step(batch, index, *extra)
                losses.append(_step_loss(output, logged))
            return float(torch.stack(losses).float().mean()) if losses else math.nan
        finally:
            del pl_module.log, pl_module.log_dict
            pl_module.train(was_training)

    return evaluate
