"""Carrying out the controller's decisions: the one loop every executor shares.

:class:`Executor` tells the controller an observation, carries the
:class:`~autolrs.core.decision.Decision` out in order (an
:class:`~autolrs.core.actions.Evaluate` is answered with a
:class:`~autolrs.core.observations.Validation`, whose decision is carried out in turn), keeps
the latest outlook and failure, and hands the events to a hook. What an action means for a
model is left to a subclass: :class:`autolrs.AutoLRS` sets a PyTorch optimizer's rate and
snapshots model and optimizer; :func:`autolrs.testing.drive` does the same on a synthetic
problem.

Example:
    >>> from autolrs.core import Executor, Loss, Start, StageController
    >>> class Recorder(Executor):
    ...     lr = None
    ...     def set_lr(self, lr): self.lr = lr
    ...     def snapshot(self, slot): pass
    ...     def restore(self, slot): pass
    >>> ex = Recorder(StageController(lr_range=(1e-3, 1.0), seed=0))
    >>> _ = ex.tell(Start())
    >>> ex.lr == ex.controller.lr
    True
    >>> _ = ex.tell(Loss(2.3))
    >>> ex.outlook.quiet_steps >= 0
    True
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from autolrs.core.actions import Action, Discard, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.controller import StageController
from autolrs.core.decision import Decision, Outlook
from autolrs.core.observations import Abort, Observation, Validation

__all__ = ["Executor"]


class Executor(abc.ABC):
    """Tells a :class:`StageController` observations and carries its decisions out.

    Subclasses say what the actions do on their model: :meth:`set_lr`, :meth:`snapshot` and
    :meth:`restore` (abstract), :meth:`discard` (default: nothing to free) and :meth:`evaluate`
    (needed only when the controller was built with ``validation=True``). :meth:`on_events`
    receives the events of each decision, before its actions are carried out.

    Several processes training together (e.g. under ``torch.distributed``) each run an
    executor; only the leader (rank 0) tells its controller. ``broadcast`` then hands the
    leader's actions, events, failure and controller state to every process: the others load
    that state and rebuild the outlook from it (an outlook holds a callable, which is not sent).

    Args:
        controller: The controller whose decisions are carried out.
        broadcast: For a multi-process run, ``broadcast(obj)`` returns the leader's ``obj`` in
            every process (a collective: every process calls it, at the same points); None
            (default) for a single process.
        leader: Whether this process decides (rank 0); ignored without ``broadcast``.

    Attributes:
        controller: The controller.
        outlook: The latest decision's :class:`~autolrs.core.decision.Outlook` (the
            controller's current one before the first): how many upcoming losses may be told
            later in one batch, whether the next step needs a finiteness check, and the rates
            of the steps until then.
        failure: The latest decision's failure (None while the run goes on).

    Warning:
        Every action of a decision is carried out before the next training step, in order;
        an :class:`~autolrs.core.actions.Evaluate` comes last. Call :meth:`resync` after
        loading a state into the controller directly.
    """

    def __init__(
        self,
        controller: StageController,
        *,
        broadcast: Callable[[Any], Any] | None = None,
        leader: bool = True,
    ) -> None:
        self.controller = controller
        self._broadcast = broadcast
        self._leader = bool(leader) or broadcast is None
        self.outlook: Outlook = controller.outlook()
        self.failure: str | None = controller.failure

    # ------------------------------------------------------------------ backend operations
    @abc.abstractmethod
    def set_lr(self, lr: float) -> None:
        """Makes the next training step use learning rate ``lr``."""

    @abc.abstractmethod
    def snapshot(self, slot: str) -> None:
        """Copies the training state (model, optimizer, RNGs...) into ``slot``."""

    @abc.abstractmethod
    def restore(self, slot: str) -> None:
        """Loads the training state held in ``slot`` back."""

    def discard(self, slot: str) -> None:
        """Frees ``slot`` (default: nothing to free)."""

    def evaluate(self) -> float:
        """The validation loss of the current model (asked for by an ``Evaluate`` action).

        If it raises, the executor tells the controller
        :class:`~autolrs.core.observations.Abort` (whose actions restore a committed state),
        carries that out, and lets the error through.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot evaluate: the controller asked for a validation "
            "loss; implement evaluate() or build the controller with validation=False"
        )

    def abort_reason(self, error: BaseException) -> str:
        """The reason told with :class:`Abort` when :meth:`evaluate` raised ``error``."""
        return f"the validation function raised {type(error).__name__}"

    def on_events(self, events: list[dict[str, Any]]) -> None:
        """Receives each decision's events (JSON-safe dicts), in order (default: dropped)."""

    # ------------------------------------------------------------------ protocol
    def tell(self, observation: Observation) -> Decision:
        """Tells ``observation`` and carries the decision out (with its follow-ups).

        Returns:
            The last decision carried out (that of the last validation when an ``Evaluate``
            asked for one); :attr:`outlook` and :attr:`failure` are its.
        """
        return self.execute(self.decide(observation))

    def decide(self, observation: Observation) -> Decision:
        """The controller's decision on ``observation`` (the leader's, in every process).

        Nothing is carried out. In a multi-process run every process must call this at the
        same point (it broadcasts).
        """
        if self._broadcast is None:
            return self.controller.tell(observation)
        decision = self.controller.tell(observation) if self._leader else None
        payload = None
        if decision is not None:
            state = self.controller.state_dict()
            payload = (list(decision.actions), list(decision.events), decision.failure, state)
        actions, events, failure, state = self._broadcast(payload)
        if decision is not None:
            return decision
        self.controller.load_state_dict(state)
        return Decision(tuple(actions), self.controller.outlook(), tuple(events), failure)

    def execute(self, decision: Decision) -> Decision:
        """Carries ``decision`` out: events to :meth:`on_events`, then the actions in order
        (:meth:`apply`).

        An ``Evaluate`` is answered with the :class:`Validation` of :meth:`evaluate`, and the
        decision on it carried out in turn.

        Returns:
            The last decision carried out.
        """
        while True:
            self.outlook, self.failure = decision.outlook, decision.failure
            if decision.events:
                self.on_events(list(decision.events))
            follow_up: Decision | None = None
            for action in decision.actions:
                follow_up = self.apply(action)
                if follow_up is not None:  # an Evaluate, always the last action
                    break
            if follow_up is None:
                return decision
            decision = follow_up

    def apply(self, action: Action) -> Decision | None:
        """Carries out one action.

        Returns:
            For an ``Evaluate``, the decision on the :class:`Validation` of :meth:`evaluate`
            (not yet carried out); None for the other actions.

        Raises:
            TypeError: If ``action`` is not a :mod:`autolrs.core.actions` action.
        """
        if isinstance(action, SetLR):
            self.set_lr(action.lr)
        elif isinstance(action, Snapshot):
            self.snapshot(action.slot)
        elif isinstance(action, Restore):
            self.restore(action.slot)
        elif isinstance(action, Discard):
            self.discard(action.slot)
        elif isinstance(action, Evaluate):
            return self.decide(Validation(self._validate()))
        else:
            raise TypeError(
                f"unknown action {action!r}: expected SetLR, Snapshot, Restore, Discard or "
                "Evaluate"
            )
        return None

    def resync(self) -> None:
        """Reads the outlook and failure from the controller again (after it loaded a state)."""
        self.outlook, self.failure = self.controller.outlook(), self.controller.failure

    def _validate(self) -> float:
        """:meth:`evaluate`; if it raises, tells ``Abort``, carries that out, and re-raises."""
        try:
            return self.evaluate()
        except BaseException as error:  # noqa: BLE001 - re-raised below, after the rollback
            # Never leave the model in a candidate's state: roll back, then let the error out.
            self.tell(Abort(self.abort_reason(error)))
            raise
