"""``AutoLRSCallback`` for ``lightning.Trainer``.

    import lightning as L
    from autolrs.integrations.lightning import AutoLRSCallback

    trainer = L.Trainer(max_steps=2000, callbacks=[AutoLRSCallback()])
    trainer.fit(module)          # configure_optimizers returns an optimizer, no LR scheduler

- ``on_fit_start`` builds an :class:`autolrs.AutoLRS` on the LightningModule and its (single)
  optimizer, with ``total_steps = trainer.estimated_stepping_batches``.
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

import math
import warnings
from collections.abc import Callable
from typing import Any

from autolrs.integrations import require

L = require("lightning", "lightning", "autolrs.integrations.lightning")

import torch  # noqa: E402

from autolrs.core.config import Config  # noqa: E402
from autolrs.exceptions import AutoLRSWarning  # noqa: E402
from autolrs.torch.scheduler import AutoLRS  # noqa: E402

__all__ = ["AutoLRSCallback"]


class AutoLRSCallback(L.Callback):
    """Lets autolrs set the learning rate of a Lightning training run.

    Args:
        val_fn: Callable returning a validation loss (float), or None (training loss).
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
        config: Config | None = None,
        seed: int | None = None,
        lr_range: tuple[float, float] | None = None,
        total_steps: int | None = None,
        log_file: str | None = None,
        snapshot_device: str | None = None,
    ) -> None:
        super().__init__()
        if val_fn is not None and not callable(val_fn):
            raise TypeError(f"val_fn must be callable or None, got {val_fn!r}")
        self.val_fn = val_fn
        self.config = config
        self.seed = seed
        self.lr_range = lr_range
        self.total_steps = total_steps
        self.log_file = log_file
        self.snapshot_device = snapshot_device
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
                f"AutoLRSCallback drives one optimizer; configure_optimizers returned {len(optimizers)}"
            )
        if trainer.lr_scheduler_configs:
            warnings.warn(
                "AutoLRSCallback sets the learning rate itself: remove the LR scheduler returned by "
                "configure_optimizers (autolrs overrides it before every optimizer step).",
                AutoLRSWarning,
                stacklevel=2,
            )
        total = self.total_steps
        if total is None:
            estimate = trainer.estimated_stepping_batches
            total = int(estimate) if estimate is not None and math.isfinite(estimate) else None
        self.sched = AutoLRS(
            pl_module,
            optimizers[0],
            total_steps=total,
            lr_range=self.lr_range,
            val_fn=self.val_fn,
            config=self.config,
            seed=self.seed,
            log_file=self.log_file if trainer.is_global_zero else None,
            snapshot_device=self.snapshot_device,
        )
        self._steps_seen = self.sched.optimizer_steps
        if self._pending_state is not None:
            self.sched.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
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
