"""What the controller answers (:meth:`StageController.tell`): one :class:`Decision`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autolrs.core.actions import Action

__all__ = ["Decision", "Outlook", "constant"]


@dataclass(frozen=True)
class Outlook:
    """What the executor may do before the controller must look at a loss again.

    Attributes:
        quiet_steps: Upcoming steps whose losses may be told later, in one batch: within them
            the controller changes nothing but the learning rate (as :meth:`planned_lr` says)
            unless a loss is abnormal (non-finite, exploding, above the divergence bound).
        needs_finite_check: Whether the next step commits the model to a snapshot (the executor
            then says whether the parameters are finite).
        rates: ``rates(ahead)``, the learning rate of the step ``ahead`` steps after the next.
    """

    quiet_steps: int
    needs_finite_check: bool
    rates: Callable[[int], float]

    def planned_lr(self, ahead: int) -> float:
        """The learning rate of the step ``ahead`` steps after the next (0: the next).

        Exact within :attr:`quiet_steps` (the range test's sweep, an annealed trial and the
        final decay change it every step).
        """
        return self.rates(ahead)


def constant(lr: float) -> Callable[[int], float]:
    """A rate plan that holds ``lr``."""
    value = float(lr)
    return lambda ahead: value


@dataclass(frozen=True)
class Decision:
    """The controller's answer to one observation.

    Attributes:
        actions: To carry out in order before the next training step; an
            :class:`~autolrs.core.actions.Evaluate` is always last (then tell the
            :class:`~autolrs.core.observations.Validation` it asks for).
        outlook: What may happen before the next observation must be looked at.
        events: The events recorded since the previous decision (JSON-safe dicts).
        failure: Why the run gave up (None while it goes on): the executor should stop.
    """

    actions: tuple[Action, ...]
    outlook: Outlook
    events: tuple[dict[str, Any], ...] = ()
    failure: str | None = None
