"""Setting the optimizer's learning rates, and remembering what AutoLRS left in its groups.

:class:`GroupRates` writes one rate into every parameter group (scaled by the group's ratio to
the largest group at construction) and reads back what the groups then hold, so that a change
made by anything else (another scheduler) can be told apart exactly; it also remembers each
group's momentum and betas, which a cycling scheduler changes.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["GroupRates", "lr_value", "momenta"]


def lr_value(lr: Any) -> float:
    """A learning rate (float or tensor) as a float."""
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def momenta(optimizer: torch.optim.Optimizer) -> list[Any]:
    """Each group's momentum and betas (what a cycling scheduler such as OneCycleLR changes)."""
    return [
        (
            lr_value(g["momentum"]) if "momentum" in g else None,
            tuple(lr_value(b) for b in g["betas"]) if "betas" in g else None,
        )
        for g in optimizer.param_groups
    ]


class GroupRates:
    """The rates AutoLRS sets in an optimizer's parameter groups.

    Args:
        optimizer: The optimizer whose groups' rates are set. The ratios of the groups' rates at
            construction are kept: the largest group gets the rate set.

    Attributes:
        ratios: Each group's rate over the largest group's.
        target: The rate last set (None before the first).
        applied: The groups' rates as they held them right after the last setting (empty when
            unknown: before the first setting, or after a restore reloaded the groups).
        momenta: The groups' momentum and betas as AutoLRS last saw them.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        lrs = self.current()
        self.top = max(lrs)
        self.ratios = [lr / self.top if self.top > 0 else 1.0 for lr in lrs]
        self.target: float | None = None
        self.applied: list[float] = []
        self.momenta = momenta(optimizer)

    def current(self) -> list[float]:
        """The learning rate each group holds now."""
        return [lr_value(g["lr"]) for g in self.optimizer.param_groups]

    def set(self, lr: float | None, *, force: bool = False) -> None:
        """Sets every group's rate to ``lr`` times its ratio (None: nothing to set).

        Nothing is written when the groups already hold exactly what the last setting of the
        same rate left, unless ``force``.
        """
        if lr is None:
            return
        groups = self.optimizer.param_groups
        if (
            not force
            and lr == self.target
            and self.applied
            and all(lr_value(g["lr"]) == v for g, v in zip(groups, self.applied))
        ):
            return
        self.target = lr
        self.set_each([lr * ratio for ratio in self.ratios])

    def set_each(self, lrs: list[float]) -> None:
        """Writes one rate into each group (as :meth:`current` reads them)."""
        for group, lr in zip(self.optimizer.param_groups, lrs):
            if isinstance(group["lr"], torch.Tensor):
                # A tensor learning rate keeps its type (and device), as torch's own
                # schedulers do; it may round the value (float32).
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        # What the groups now hold, read back: the pre-step hook compares against it exactly.
        self.applied = self.current()

    def changed_elsewhere(self) -> bool:
        """Whether a group's rate differs from what the last setting left in it."""
        # ``applied`` holds the rates as the groups store them (a float32 tensor rounds them),
        # so any difference is a change made by something else.
        return bool(self.applied) and any(
            lr_value(g["lr"]) != lr for g, lr in zip(self.optimizer.param_groups, self.applied)
        )

    def momenta_changed(self) -> bool:
        """Whether the groups' momentum/betas changed since last seen (then remembers them)."""
        now = momenta(self.optimizer)
        if now == self.momenta:
            return False
        self.momenta = now
        return True

    def reloaded(self) -> None:
        """The groups were reloaded (a restore, a resume): forget the rates set, read the
        momenta again."""
        self.applied = []
        self.momenta = momenta(self.optimizer)
