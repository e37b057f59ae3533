"""``AutoLRSCallback`` for the Hugging Face ``transformers.Trainer``.

    from autolrs.integrations.huggingface import AutoLRSCallback

    args = TrainingArguments(..., lr_scheduler_type="constant")
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[AutoLRSCallback()])
    trainer.train()

How it plugs in (public Trainer API only):

- ``on_train_begin`` builds an :class:`autolrs.AutoLRS` on the Trainer's model and (unwrapped)
  optimizer, with ``total_steps = state.max_steps``. The optimizer's learning rate
  (``TrainingArguments.learning_rate``) is a fallback: a learning-rate range test places the
  search, and the learning rate is where autolrs starts only where that test finds nothing, as
  it may on a pre-trained model. Left at the Trainer's default (5e-5), it is reported once
  (``AutoLRSWarning``): set it to your best guess.
- The training loss of every micro-batch is read from the model's output (``outputs.loss``, as
  every transformers model returns it when given labels) by a forward hook; if the model returns
  none, from the Trainer's logs, which then needs ``logging_steps=1``.
- ``on_step_end`` (after ``optimizer.step()`` and the Trainer's scheduler step) reports the
  step's mean loss: autolrs may roll the weights back and sets the learning rate of the next
  optimizer step. The Trainer's own scheduler is thereby overridden; anything but
  ``lr_scheduler_type="constant"`` and no warm-up is reported as mis-wiring. With the constant
  schedule the callback keeps that scheduler's ``base_lrs`` at autolrs' rates, so the Trainer's
  own logged ``learning_rate`` (what TensorBoard, W&B and ``state.log_history`` show) is the rate
  each step really used; ``autolrs_lr`` in the logs is the rate of the next step.
- ``on_save`` writes ``autolrs_state.pt`` (controller state and the stage snapshot's tensors)
  into the checkpoint folder; resuming with ``trainer.train(resume_from_checkpoint=...)`` finds
  it in ``output_dir/checkpoint-<step>`` (or pass ``resume_from=``).

Batches are drawn by the Trainer, so candidates see different batches: the Trainer owns its
data loader and offers no hook to rewind it, so the common random numbers of
``AutoLRS.wrap`` are not available here.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

from autolrs.integrations import require

transformers = require("transformers", "hf", "autolrs.integrations.huggingface")

import torch  # noqa: E402

from autolrs.core.config import Config  # noqa: E402
from autolrs.exceptions import AutoLRSWarning  # noqa: E402
from autolrs.integrations._builder import SchedulerSettings, SettingsAttributes  # noqa: E402
from autolrs.torch.scheduler import AutoLRS  # noqa: E402

__all__ = ["AutoLRSCallback", "STATE_FILE"]

STATE_FILE = "autolrs_state.pt"


def _unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (or the optimizer)."""
    inner = getattr(optimizer, "optimizer", None)
    if isinstance(inner, torch.optim.Optimizer):
        return inner
    return optimizer


def _default_learning_rate(arguments: type) -> float | None:
    """The library default of ``learning_rate`` in this ``TrainingArguments`` class."""
    import dataclasses

    if not dataclasses.is_dataclass(arguments):
        return None
    for field in dataclasses.fields(arguments):
        if field.name == "learning_rate" and isinstance(field.default, float):
            return field.default
    return None


def _output_loss(output: Any) -> torch.Tensor | None:
    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.dim() == 0:
        return loss.detach()
    return None


class AutoLRSCallback(transformers.TrainerCallback, SettingsAttributes):
    """Lets autolrs set the Trainer's learning rate.

    Args:
        val_fn: Callable returning a validation loss (float) for the search, or None.
        val_dataset: Instead of ``val_fn``: a dataset (e.g. the Trainer's ``eval_dataset``) whose
            first ``val_batches`` batches give the validation loss (the model's ``loss`` output,
            batches collated by ``transformers.default_data_collator``).
        val_batches: Batches of ``val_dataset`` evaluated per validation call.
        val_batch_size: Their batch size.
        config: autolrs settings (default ``Config()``).
        seed: Seed of the search.
        lr_range: ``(low, high)``; None runs the range test.
        total_steps: Optimizer steps of the run; default the Trainer's ``max_steps``.
        log_file: JSONL event file (written by the main process).
        snapshot_device: ``"cpu"`` keeps snapshots in host memory.
        resume_from: Checkpoint folder holding ``autolrs_state.pt`` to resume from (default:
            ``output_dir/checkpoint-<global_step>`` when the Trainer resumes).
    """

    def __init__(
        self,
        *,
        val_fn: Callable[[], float] | None = None,
        val_dataset: Any = None,
        val_batches: int = 8,
        val_batch_size: int = 32,
        config: Config | None = None,
        seed: int | None = None,
        lr_range: tuple[float, float] | None = None,
        total_steps: int | None = None,
        log_file: str | None = None,
        snapshot_device: str | None = None,
        resume_from: str | None = None,
    ) -> None:
        self.settings = SchedulerSettings(
            val_fn=val_fn, config=config, seed=seed, lr_range=lr_range, total_steps=total_steps,
            log_file=log_file, snapshot_device=snapshot_device,
        )
        if val_fn is not None and val_dataset is not None:
            raise ValueError("pass either val_fn or val_dataset, not both")
        self.val_dataset = val_dataset
        self.val_batches = int(val_batches)
        self.val_batch_size = int(val_batch_size)
        self.resume_from = resume_from
        self.sched: AutoLRS | None = None
        self._losses: list[torch.Tensor] = []
        self._pending = False
        self._hook: Any = None
        self._constant_schedule = False

    # ------------------------------------------------------------------ events
    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        if model is None or optimizer is None:
            raise RuntimeError(
                "AutoLRSCallback needs the Trainer's model and optimizer at on_train_begin"
            )
        self._constant_schedule = self._check_wiring(args)
        self._check_default_rate(args, optimizer)
        val_fn = self.val_fn
        if self.val_dataset is not None:
            val_fn = self._dataset_loss(model)
        total = self.total_steps or (
            state.max_steps if state.max_steps and state.max_steps > 0 else None
        )
        self.sched = self.settings.build(
            model,
            _unwrap_optimizer(optimizer),
            total_steps=total,
            val_fn=val_fn,
            leader=state.is_world_process_zero,
        )
        if state.global_step > 0:
            self._resume(args, state)
        self._hook = model.register_forward_hook(self._capture_loss)
        self._report_rates(kwargs.get("lr_scheduler"))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._pending:
            raise RuntimeError(
                "AutoLRSCallback could not read the training loss of the last step: the model's "
                "output has no `loss`. Return the loss from forward() (transformers models do when "
                "given labels) or set TrainingArguments(logging_steps=1)."
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sched is None:
            return
        if self._losses:
            loss = torch.stack(self._losses).float().mean()
            self._losses = []
            self.sched.step(loss)
        else:
            self._pending = True  # maybe the Trainer logs it (logging_steps=1): see on_log
        self._report_rates(kwargs.get("lr_scheduler"))

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.sched is None or logs is None:
            return
        if self._pending and "loss" in logs:
            self._pending = False
            self.sched.step(float(logs["loss"]))
        logs["autolrs_lr"] = self.sched.get_last_lr()[0]

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sched is None:
            return
        state_dict = self.sched.state_dict()  # collective under torch.distributed: every rank
        if not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if not os.path.isdir(folder):
            warnings.warn(
                f"AutoLRSCallback: checkpoint folder {folder} not found; the search state was not "
                "saved (resuming will restart the search)",
                AutoLRSWarning,
                stacklevel=2,
            )
            return
        torch.save(state_dict, os.path.join(folder, STATE_FILE))
        with open(os.path.join(folder, "autolrs_controller.json"), "w", encoding="utf-8") as f:
            json.dump(state_dict["controller"], f)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sched is not None:
            self.sched.finish()
            self.sched.remove_hooks()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # ------------------------------------------------------------------ helpers
    def _report_rates(self, lr_scheduler: Any) -> None:
        """Makes the Trainer's constant scheduler hold autolrs' rates for the next step.

        The Trainer logs ``lr_scheduler.get_last_lr()`` read right after ``optimizer.step()``,
        then steps the scheduler. Holding autolrs' rates as the scheduler's ``base_lrs`` makes its
        ``step()`` set what autolrs chose anyway, and as its last rates (``get_last_lr()`` returns
        torch's ``LRScheduler._last_lr``) makes the logged ``learning_rate`` the rate the step used.
        """
        if self.sched is None or not self._constant_schedule or lr_scheduler is None:
            return
        if isinstance(getattr(lr_scheduler, "base_lrs", None), list):
            rates = [float(g["lr"]) for g in self.sched.optimizer.param_groups]
            lr_scheduler.base_lrs = list(rates)
            lr_scheduler._last_lr = list(rates)

    def _capture_loss(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if module.training:
            loss = _output_loss(output)
            if loss is not None:
                self._losses.append(loss)

    def _resume(self, args: Any, state: Any) -> None:
        assert self.sched is not None
        folder = self.resume_from or os.path.join(
            args.output_dir, f"checkpoint-{state.global_step}"
        )
        path = os.path.join(folder, STATE_FILE)
        if not os.path.exists(path):
            warnings.warn(
                f"AutoLRSCallback: resuming at step {state.global_step} but {path} does not exist; "
                "the search restarts from here (pass resume_from= to name the checkpoint folder)",
                AutoLRSWarning,
                stacklevel=2,
            )
            return
        self.sched.load_state_dict(torch.load(path, weights_only=False))

    def _check_wiring(self, args: Any) -> bool:
        """Warns when the Trainer's schedule would fight autolrs; True when it is constant."""
        kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        problems = []
        if kind != "constant":
            problems.append(f"lr_scheduler_type={kind!r}")
        if getattr(args, "warmup_steps", 0) or getattr(args, "warmup_ratio", 0):
            problems.append("a warm-up")
        if problems:
            warnings.warn(
                f"AutoLRSCallback sets the learning rate at every step, so the Trainer's "
                f"{' and '.join(problems)} has no effect and its logged learning_rate is not "
                "the one used (see autolrs_lr in the logs). Set "
                "TrainingArguments(lr_scheduler_type='constant', warmup_steps=0).",
                AutoLRSWarning,
                stacklevel=3,
            )
        return not problems

    def _check_default_rate(self, args: Any, optimizer: Any) -> None:
        """Says once when the optimizer starts from ``TrainingArguments``' default rate."""
        default = _default_learning_rate(type(args))
        lr = float(_unwrap_optimizer(optimizer).param_groups[0]["lr"])
        if default is None or args.learning_rate != default or not math.isclose(lr, default):
            return
        warnings.warn(
            f"TrainingArguments.learning_rate is {default:g}, the Trainer's default, which you "
            "may never have chosen. autolrs uses the optimizer's learning rate as the "
            "starting point of its search where its learning-rate range test finds nothing (as "
            f"it may on a pre-trained model): then this run starts from {default:g}. Set "
            "TrainingArguments(learning_rate=...) to your best guess for this model (e.g. 1e-3 "
            "for AdamW on a small model trained from scratch; keep 5e-5 if that is your guess "
            "for fine-tuning).",
            AutoLRSWarning,
            stacklevel=3,
        )

    def _dataset_loss(self, model: torch.nn.Module) -> Callable[[], float]:
        loader = torch.utils.data.DataLoader(
            self.val_dataset,
            batch_size=self.val_batch_size,
            collate_fn=transformers.default_data_collator,
        )
        batches = []
        for i, batch in enumerate(loader):
            if i >= self.val_batches:
                break
            batches.append(batch)

        @torch.no_grad()
        def evaluate() -> float:
            was_training = model.training
            model.eval()
            try:
                losses = []
                device = next(model.parameters()).device
                for batch in batches:
                    inputs = {
                        k: v.to(device) if isinstance(v, torch.Tensor) else v
                        for k, v in batch.items()
                    }
                    loss = _output_loss(model(**inputs))
                    if loss is None:
                        raise ValueError(
                            "val_dataset needs a model that returns a loss for its batches"
                        )
                    losses.append(float(loss))
                return float(sum(losses) / len(losses)) if losses else math.nan
            finally:
                model.train(was_training)

        return evaluate
