"""Noticing the ways a training loop can misuse :class:`autolrs.AutoLRS`, and saying so.

:class:`MisuseDetector` hooks the optimizer's ``step()`` and watches for what would silently
break the search: ``sched.step(loss)`` called before ``optimizer.step()`` or not at all, another
scheduler changing the learning rate or cycling the momentum, a second AutoLRS instance on the
same optimizer, steps past ``total_steps``. A mistake that would corrupt a rollback raises; the
others warn once (an ``AutoLRSWarning``) and are repaired where they can be.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from autolrs.exceptions import AutoLRSError, AutoLRSWarning
from autolrs.torch.notices import OnceWarnings, overrun_message
from autolrs.torch.rates import GroupRates

__all__ = ["MisuseDetector", "Progress", "has_grad_scaler"]

# Attribute of an optimizer naming (by weak reference) the detector of the AutoLRS that drives it.
DRIVER_ATTR = "_autolrs_driver"
UNREPORTED_LIMIT = 100  # optimizer steps without sched.step(loss) after which wrap() stops

_SCALER_HINT = (
    "pass the scaler to AutoLRS as extra_state=[scaler]: skipped steps are then "
    "expected (they still count) and rollbacks rewind the scaler's scale too."
)


class Progress(Protocol):
    """What the detector reads of the scheduler it watches over (its public progress)."""

    @property
    def steps_taken(self) -> int:
        """Steps reported so far."""

    @property
    def stage(self) -> int:
        """The current stage."""

    @property
    def phase(self) -> str:
        """The current phase."""

    @property
    def in_trial(self) -> bool:
        """Whether the model may still be rolled back."""


def has_grad_scaler(extra_state: Sequence[Any]) -> bool:
    """Whether ``extra_state`` holds a GradScaler (it legitimately skips ``optimizer.step()``)."""
    return any("Scaler" in type(obj).__name__ for obj in extra_state)


class MisuseDetector:
    """Watches one optimizer's steps and a scheduler's reports for wiring mistakes.

    Built by the scheduler it watches: it takes the optimizer over from an earlier live
    AutoLRS (detaching it) and hooks ``optimizer.step()`` (before: the rate must be AutoLRS';
    after: the step is counted).

    Args:
        owner: The scheduler (its id and progress name it in messages).
        optimizer: The optimizer it drives.
        rates: The rates it sets (restored when something else changed them).
        notices: Where the warnings go (each kind said once).
        has_scaler: Whether a GradScaler may skip ``optimizer.step()``.

    Attributes:
        optimizer_steps: Calls of ``optimizer.step()`` seen since construction.
        hooks: The optimizer's step hooks (empty once detached).
        superseded: True once a newer instance took the optimizer over.
    """

    def __init__(
        self,
        owner: Progress,
        optimizer: torch.optim.Optimizer,
        rates: GroupRates,
        notices: OnceWarnings,
        *,
        has_scaler: bool,
    ) -> None:
        self.owner = owner
        self.optimizer = optimizer
        self.rates = rates
        self.notices = notices
        self.has_scaler = has_scaler
        self.optimizer_steps = 0
        self.reported_steps = 0  # optimizer_steps at the last sched.step(loss)
        self.superseded = False
        self._take_over(optimizer)
        self.hooks: tuple[Any, ...] = (
            optimizer.register_step_pre_hook(self.enforce_lr),
            optimizer.register_step_post_hook(self.count_optimizer_step),
        )

    # ------------------------------------------------------------------ the optimizer's hooks
    def enforce_lr(self, *_: Any) -> None:
        """Optimizer pre-step hook: the step must use AutoLRS' learning rate."""
        if self.rates.changed_elsewhere():
            self.notices.warn(
                "wiring",
                "the learning rate was changed by something other than AutoLRS (another LR "
                "scheduler?); remove it: AutoLRS sets the learning rate itself and overrides it.",
            )
            self.rates.set(self.rates.target, force=True)
        if self.rates.momenta_changed():
            self.notices.warn(
                "momentum",
                "the optimizer's momentum/betas changed between steps, not by AutoLRS (a "
                "scheduler that cycles momentum, such as OneCycleLR or CyclicLR?): remove it. "
                "AutoLRS overrides its learning rate but not its momentum, which then follows a "
                "cycle planned for another schedule.",
            )

    def count_optimizer_step(self, *_: Any) -> None:
        """Optimizer post-step hook: counts the step; says once when steps go unreported."""
        self.optimizer_steps += 1
        unreported = self.optimizer_steps - self.reported_steps
        if unreported >= 2 and not self.superseded:
            self.notices.warn(
                "unreported",
                f"optimizer.step() ran {unreported} times without sched.step(loss): AutoLRS "
                "hears no loss, decides nothing, and the learning rate stays at "
                f"{self.rates.current()[0]:.3g}. Call sched.step(loss) after every "
                "optimizer.step().",
            )

    def remove_hooks(self) -> None:
        """Detaches from the optimizer's step hooks."""
        for handle in self.hooks:
            handle.remove()
        self.hooks = ()

    # ------------------------------------------------------------------ the scheduler's checks
    def check_still_driving(self) -> None:
        """Raises AutoLRSError once a newer instance took the optimizer over."""
        if self.superseded:
            raise AutoLRSError(
                f"{self.describe()} no longer drives its optimizer: a newer AutoLRS instance "
                "was created on the same optimizer and took it over. Step only the newest "
                "instance; create only one AutoLRS per optimizer."
            )

    def check_wiring(self) -> None:
        """At each ``sched.step(loss)``: an ``optimizer.step()`` must have run since the last.

        Raises:
            RuntimeError: If none ran yet finite gradients wait (the report came before
                ``optimizer.step()``, or twice per step): a rollback would apply them to
                restored weights.
        """
        skipped = self.optimizer_steps == self.reported_steps
        if skipped and not self.has_scaler and _gradients_pending(self.optimizer):
            # Gradients are there and finite, yet the optimizer has not stepped since the last
            # report: this report came before optimizer.step() (or a second time after one).
            # A rollback now would apply those gradients to restored weights: refuse.
            raise RuntimeError(_reported_before_step_message(self.owner.steps_taken == 0))
        if skipped and not self.has_scaler and "no-step" not in self.notices:
            self.notices.warn("no-step", self._no_step_message())
        self.reported_steps = self.optimizer_steps

    def check_unreported(self) -> None:
        """Raises RuntimeError once ``optimizer.step()`` ran 100 times without a report."""
        if self.optimizer_steps - self.reported_steps >= UNREPORTED_LIMIT:
            raise RuntimeError(
                f"optimizer.step() ran {self.optimizer_steps - self.reported_steps} "
                "times without sched.step(loss): AutoLRS decides nothing and the learning "
                "rate stays where it is. Call sched.step(loss) after every optimizer.step()."
            )

    def check_budget(self, steps: int, total: int | None) -> None:
        """Says once when training goes on past ``total_steps``."""
        if total is not None and steps > total and "overrun" not in self.notices:
            self.notices.warn("overrun", overrun_message(total, steps, self.rates.current()[0]))

    def describe(self) -> str:
        """Names the scheduler for messages: its id, progress and phase."""
        owner = self.owner
        return (
            f"AutoLRS instance at {id(owner):#x}: {owner.steps_taken} steps taken, "
            f"stage {owner.stage}, phase {owner.phase!r}"
        )

    # ------------------------------------------------------------------ internals
    def _no_step_message(self) -> str:
        """Why ``sched.step(loss)`` came without an ``optimizer.step()`` (a skipped step)."""
        if _gradients_not_finite(self.optimizer):
            return (
                "AutoLRS.step() was called but optimizer.step() was not called since the "
                "last one, and the gradients hold inf/nan: a torch.amp.GradScaler skips "
                f"optimizer.step() on such gradients. If you use one, {_SCALER_HINT}"
            )
        if self.optimizer_steps > 0:
            return (
                "AutoLRS.step() was called but optimizer.step() was not called since the "
                "last one (it was called before, so a step was skipped). If a "
                "torch.amp.GradScaler skips steps (it does on inf/nan gradients), "
                f"{_SCALER_HINT} Otherwise call sched.step(loss) once after every "
                "optimizer.step()."
            )
        return (
            "AutoLRS.step() was called but optimizer.step() was not called since the "
            "last one; call sched.step(loss) once after every optimizer.step(). If a "
            "torch.amp.GradScaler skipped the step (it does on inf/nan gradients), "
            f"{_SCALER_HINT}"
        )

    def _take_over(self, optimizer: torch.optim.Optimizer) -> None:
        """Marks ``optimizer`` as driven by this detector, detaching an earlier live one."""
        ref = getattr(optimizer, DRIVER_ATTR, None)
        stale = ref() if isinstance(ref, weakref.ref) else None
        if (
            isinstance(stale, MisuseDetector)
            and stale is not self
            and stale.optimizer is optimizer
            and stale.hooks
        ):
            # Two instances would fight over the learning rate before every step: the newest
            # one wins, the earlier one is detached (its step() then raises).
            used = stale.optimizer_steps > 0 or stale.owner.steps_taken > 0
            description = stale.describe()
            mid_trial = stale.owner.in_trial
            stale.remove_hooks()
            stale.superseded = True
            if used:
                warnings.warn(
                    _taken_over_message(description, mid_trial),
                    AutoLRSWarning,
                    stacklevel=4,  # the line that built the AutoLRS (through its __init__)
                )
        try:
            setattr(optimizer, DRIVER_ATTR, weakref.ref(self))
        except AttributeError:  # pragma: no cover - an optimizer class with __slots__
            pass


def _taken_over_message(description: str, mid_trial: bool) -> str:
    """A newer instance took an optimizer over from a used one."""
    return (
        "this optimizer is already driven by another AutoLRS instance created "
        f"earlier ({description}); create only one per optimizer: e.g. after "
        "re-running a notebook cell, rebuild the optimizer too (and the model"
        + (
            ": the earlier instance was in the middle of a trial, so the model "
            "holds a candidate's weights"
            if mid_trial
            else ""
        )
        + "). The earlier instance was detached; this one now sets the learning rate."
    )


def _reported_before_step_message(first: bool) -> str:
    """``sched.step(loss)`` came before ``optimizer.step()`` (or twice per step)."""
    return (
        (
            "sched.step(loss) was called before optimizer.step(): "
            if first
            else "sched.step(loss) was called without an optimizer.step() since its "
            "last call (called before optimizer.step(), or twice per step): "
        )
        + "call it exactly once per training step, after optimizer.step():\n"
        "    loss.backward(); optimizer.step(); optimizer.zero_grad(); sched.step(loss)\n"
        "With gradient accumulation (several backward() calls per optimizer.step()), "
        "call sched.step once per optimizer.step(), not per micro-batch, with the mean "
        "loss of the accumulated micro-batches:\n"
        "    losses.append(loss.detach()); loss.backward()  # each micro-batch\n"
        "    optimizer.step(); optimizer.zero_grad()       # every N micro-batches\n"
        "    sched.step(torch.stack(losses).mean()); losses.clear()"
    )


def _gradients_pending(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the parameters hold finite gradients (a backward ran; no GradScaler skip)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return bool(grads) and all(bool(torch.isfinite(grad).all()) for grad in grads)


def _gradients_not_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether some parameter's gradient holds inf or nan (a skipped GradScaler step's mark)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return any(not bool(torch.isfinite(grad).all()) for grad in grads)
