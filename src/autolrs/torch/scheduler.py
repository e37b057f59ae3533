"""``AutoLRS``: the learning-rate scheduler users add to a PyTorch training loop.

:class:`AutoLRS` is the training loop's face: it buffers the reported losses, tells them to the
controller in batches, draws (and replays) batches through :meth:`AutoLRS.wrap`, and saves and
resumes the run. What it delegates: argument checks (:mod:`autolrs.torch.arguments`), carrying
the controller's actions out (:mod:`autolrs.torch.executor`), noticing a miswired loop
(:mod:`autolrs.torch.misuse`), the log file and TensorBoard (:mod:`autolrs.torch.reporting`)
and the texts of its warnings (:mod:`autolrs.torch.notices`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from autolrs.core.actions import STAGE
from autolrs.core.config import Config
from autolrs.core.controller import StageController
from autolrs.core.observations import Abort, Start
from autolrs.events import logger
from autolrs.exceptions import DivergenceError
from autolrs.torch.arguments import (
    STATE_VERSION,
    check_arguments,
    check_state,
    default_sync_every,
    loss_value,
)
from autolrs.torch.distributed import Collective
from autolrs.torch.executor import TorchExecutor
from autolrs.torch.misuse import MisuseDetector, has_grad_scaler
from autolrs.torch.notices import (
    NonFiniteRun,
    OnceWarnings,
    finished_message,
    no_budget_message,
    ran_out_message,
    unfinished_message,
    warn_resumed_settings,
    where_in_run,
)
from autolrs.torch.rates import GroupRates
from autolrs.torch.replay import ReplayBuffer
from autolrs.torch.reporting import Reporter
from autolrs.torch.status import RunStatus

__all__ = ["AutoLRS"]

T = TypeVar("T")


class AutoLRS(RunStatus):
    """Finds the learning rate of each stage of training on the fly (Jin et al., ICLR 2021).

    Training is cut into stages. At the start of a stage autolrs snapshots the model and
    optimizer, tries a few learning rates proposed by Bayesian optimisation for a short trial
    each (rolling back to the snapshot between them), forecasts from each trial's loss curve
    the loss the stage would end with, and trains the stage with the best one. No bounds or
    schedule need to be chosen. The optimizer's learning rate is a fallback: with
    ``total_steps`` a learning-rate range test places the first search (one step below its
    pick) whatever that rate is; the learning rate is where autolrs starts only where the range
    test finds nothing (a pre-trained model), where ``lr_range`` is given, or without
    ``total_steps`` (runs too short to search, under 30 steps without ``lr_range``, keep it and
    decay it).

    Args:
        model: The model being trained.
        optimizer: Its optimizer (any ``torch.optim.Optimizer``) over the model's parameters.
            Per-group learning-rate ratios at construction are kept: the largest group gets the
            chosen rate. Learning rates may be floats or tensors (a tensor keeps its type: it is
            updated in place). One AutoLRS per optimizer: a newer instance on the same
            optimizer takes it over from the older one.
        total_steps: Optimizer steps the run will take, trials included. Stages are then
            planned to end inside it (never in the middle of a trial). None: the paper's
            absolute stage lengths, repeated until you stop.
        lr_range: ``(low, high)`` interval to search. None (default): a short learning-rate
            range test at the start finds it (its steps count as training steps).
        val_fn: Callable returning a validation loss (float or 0-d tensor; lower is better,
            so not an accuracy: return 1 - accuracy if that is what you have) of the current
            model. Used when the config judges trials by validation loss; otherwise the
            training loss is the objective. It must not change the weights. The model's
            train/eval mode is restored after each call. A ``val_fn`` whose values rise while
            the training loss falls from the first checks (an accuracy), or that returns
            NaN/inf twice in a row while the training loss is finite, is dropped with an
            ``AutoLRSWarning``: candidates are then scored by their training loss.
        config: The method's settings; default ``Config()``, the paper's ``Config.paper()``.
        seed: Seed of the search (same seed, same losses -> same decisions).
        log_file: Path (``str`` or ``os.PathLike``) of a JSONL file receiving every event
            (stage, candidate, decision, rollback); ``autolrs plot`` draws it.
        extra_state: Other objects with ``state_dict``/``load_state_dict`` that a rollback must
            rewind with the model (e.g. ``torch.amp.GradScaler``, an EMA). A ``GradScaler``
            belongs here: it skips ``optimizer.step()`` on inf/nan gradients, which AutoLRS then
            expects.
        snapshot_device: Where snapshots live: None (default) keeps each tensor on its own
            device; ``"cpu"`` copies them to host memory (saves accelerator memory). Any
            ``torch.device`` (or its name, e.g. ``"cuda:0"``) usable in this process.
        sync_every: At most this many steps between reads of the buffered losses (one device
            synchronisation each). None: 1 on CPU, 16 on accelerators, and under
            ``torch.distributed`` only where the controller may act (once per trial). A
            non-finite loss is then noticed late; the steps in between are counted as spent and
            rolled back.
        process_group: Under ``torch.distributed``, the group whose ranks train together
            (default: the world). Construct ``AutoLRS`` identically on every rank: losses are
            averaged over the ranks, rank 0 decides, every rank rolls back its own snapshot.
            ``val_fn``, ``finish()`` and ``state_dict()`` must then be called on every rank.
        tensorboard: A ``torch.utils.tensorboard.SummaryWriter`` (any object with
            ``add_scalar``) or a log directory (``str`` or ``os.PathLike``): the learning rate,
            each candidate's forecast and each decision are written as scalars (a directory
            needs the ``tensorboard`` package: ``pip install "autolrs[tensorboard]"``).

    Raises:
        TypeError: If ``model``, ``optimizer``, ``val_fn``, ``config``, ``log_file``,
            ``tensorboard``, ``snapshot_device`` or an ``extra_state`` entry has the wrong type.
        ValueError: If ``total_steps``, ``lr_range``, ``sync_every`` or ``snapshot_device`` is
            invalid, the optimizer has no parameters, or none of its parameters is one of the
            model's.

    Warns:
        AutoLRSWarning: If ``optimizer`` is already driven by an earlier AutoLRS instance that
            has taken steps (e.g. a re-run notebook cell); this instance takes it over.

    Example:
        >>> import torch
        >>> from autolrs import AutoLRS
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> sched = AutoLRS(model, opt, total_steps=200, seed=0)
        >>> x, y = torch.randn(64, 4), torch.randn(64, 1)
        >>> for _ in range(200):
        ...     loss = torch.nn.functional.mse_loss(model(x), y)
        ...     opt.zero_grad(); loss.backward(); opt.step()
        ...     sched.step(loss)
        >>> sched.finished
        True

    Warning:
        When resuming, construct ``AutoLRS`` with the same arguments, then call
        :meth:`load_state_dict`; load the model's and optimizer's own state dicts as usual.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int | None = None,
        lr_range: tuple[float, float] | None = None,
        val_fn: Callable[[], Any] | None = None,
        config: Config | None = None,
        seed: int | None = None,
        log_file: str | os.PathLike[str] | None = None,
        extra_state: Sequence[Any] = (),
        snapshot_device: str | torch.device | None = None,
        sync_every: int | None = None,
        process_group: Any = None,
        tensorboard: Any = None,
    ) -> None:
        extra, snapshot_device = check_arguments(
            model, optimizer, val_fn=val_fn, config=config, extra_state=extra_state,
            sync_every=sync_every, seed=seed, log_file=log_file, tensorboard=tensorboard,
            snapshot_device=snapshot_device,
        )
        self.model = model
        self.optimizer = optimizer
        self.val_fn = val_fn
        rates = GroupRates(optimizer)
        self._controller = StageController(
            config,
            total_steps=total_steps,
            lr_range=lr_range,
            validation=val_fn is not None,
            seed=seed,
            default_lr=rates.top if rates.top > 0 else None,
        )
        self._comm = Collective(process_group)
        self._reporter = Reporter(log_file, tensorboard, total_steps, leader=self._comm.is_leader)
        self.events: list[dict[str, Any]] = []
        self.sync_every = default_sync_every(sync_every, optimizer, self._comm.enabled)
        self._pending: list[float | torch.Tensor] = []  # losses not yet told
        self._step_lrs: list[float] = []  # the rate each buffered loss's step used
        self._non_finite = NonFiniteRun()  # the latest run of NaN/inf losses, for messages
        self._notices = OnceWarnings()
        self._finished = False  # finish() ran
        self._drawn = 0  # fresh batches wrap() drew from the user's iterable (its position)
        self._skip = 0  # batches a resumed wrap() skips to reach the saved run's position
        self._misuse = MisuseDetector(
            self, optimizer, rates, self._notices, has_scaler=has_grad_scaler(extra)
        )
        self._executor = TorchExecutor(
            self._controller, self, rates=rates, extra_state=extra,
            snapshot_device=snapshot_device, comm=self._comm, notices=self._notices,
            on_events=self._emit,
        )
        before = rates.current()
        try:
            self._executor.tell(Start())
        except BaseException:
            # ``val_fn`` may run here (a small budget's ramp measures where it starts): if it
            # raises, the optimizer is left as it was built, hooks and rates.
            rates.set_each(before)
            self._misuse.remove_hooks()
            raise

    # ------------------------------------------------------------------ public
    def step(self, loss: float | torch.Tensor) -> None:
        """Reports the loss of the training step just taken; call it after ``optimizer.step()``.

        May roll the model and optimizer back to a snapshot and sets the learning rate of the
        next step.

        Args:
            loss: The step's training loss: a Python number or a 0-d tensor (it is detached;
                on accelerators it is read only every ``sync_every`` steps).

        Raises:
            TypeError: If ``loss`` is not a number or a 0-d tensor.
            DivergenceError: If training kept diverging after ``Config.max_rollbacks``
                consecutive rollbacks (the model is restored to its last finite state first).
            AutoLRSError: If a newer AutoLRS instance took this one's optimizer over.
        """
        self._misuse.check_still_driving()
        value = loss_value(loss)
        self._misuse.check_wiring()
        self._reporter.log.release()
        if self._controller.total_steps is None and self.steps_taken == 0:
            # A supported mode (the paper's), not a mistake: the autolrs logger's WARNING (shown
            # by default, like a warning) says once what it does, without failing strict tests.
            if self._comm.is_leader:
                logger.warning("%s", no_budget_message(self.config))
        rates = self._executor.rates
        self._step_lrs.append(rates.target or 0.0)
        self._reporter.learning_rate(rates.target or 0.0, self.steps_taken)
        self._pending.append(value)
        if len(self._pending) > self._window():
            self._sync()
        self._misuse.check_budget(self.steps_taken, self._controller.total_steps)
        # Whatever happened since the last step (a rollback, or a framework's own scheduler that
        # steps after optimizer.step()), the next step uses autolrs' learning rate.
        rates.set(self._executor.outlook.planned_lr(len(self._pending)))

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group, as the next step will use it."""
        return self._executor.rates.current()

    def wrap(self, iterable: Iterable[T], *, skip_drawn: bool = False) -> Iterator[T]:
        """Yields batches from ``iterable``, replaying them to every candidate of a stage.

        The batches drawn by a stage's first candidate are recorded and given again, in the
        same order, to every later candidate and to the exploit phase, so that candidates are
        compared on the same data (common random numbers). Replayed batches do not consume
        ``iterable``. The iteration ends once ``total_steps`` steps were taken.

        With ``total_steps``, a re-iterable (a ``DataLoader``, a list) that runs out is gone
        over again (a new pass: a new epoch, reshuffled if the loader shuffles) until
        ``total_steps``, so a loop over epochs around ``wrap()`` is not needed (a
        ``DistributedSampler``'s ``set_epoch`` is advanced at each new pass). An iterator (a
        generator) cannot be restarted: when it runs out before ``total_steps`` the iteration
        ends with an ``AutoLRSWarning`` saying the run is unfinished. Without ``total_steps``,
        one pass. After the run finished, ``wrap()`` yields nothing (and says why, once).

        Batches must not be modified in place by the training loop. Recorded batches are
        kept in memory (about tau' of them).

        Args:
            iterable: A data loader or any iterable of batches (iterated once per call).
            skip_drawn: After :meth:`load_state_dict`, first draw and drop the
                :attr:`batches_drawn` batches the saved run had drawn, so that an iterable
                yielding the same sequence as before (same seed, same order) resumes where the
                saved run was. Leave it False when ``iterable`` is already at that position (a
                stateful loader or generator you restored yourself).

        Raises:
            RuntimeError: If ``optimizer.step()`` ran 100 times without ``sched.step(loss)``
                (the loop forgot it: nothing is searched, and an endless iterable never ends).
        """
        restartable = not isinstance(iterable, Iterator)  # a DataLoader or a list, not a generator
        cycle = restartable and self._controller.total_steps is not None
        if self.finished:
            self._notices.warn("wrap-finished", finished_message(self._controller.total_steps))
            return
        iterator = iter(iterable)
        if not skip_drawn:
            self._skip = 0
        passes = 0
        while self._skip:  # across calls: the saved position may lie in a later pass
            batch, iterator, passes = _draw(iterable, iterator, cycle, passes)
            if ReplayBuffer.is_empty(batch):
                return  # the saved position lies in a later pass over the data
            self._skip -= 1
        while not self.finished:
            self._misuse.check_unreported()
            batch = self._executor.replay.next()
            if ReplayBuffer.is_empty(batch):
                batch, iterator, passes = _draw(iterable, iterator, cycle, passes)
                if ReplayBuffer.is_empty(batch):
                    self._ran_out(restartable)
                    return
                self._drawn += 1
                self._executor.record(batch)
            yield batch

    def _ran_out(self, restartable: bool) -> None:
        """Says once that the batches ran out before ``total_steps`` (nothing to say without
        a budget: one pass is then the loop's length)."""
        total = self._controller.total_steps
        if total is not None:
            self._notices.warn("ran-out", ran_out_message(
                self.steps_taken, total, restartable, self.phase, self.in_trial
            ))

    def finish(self) -> None:
        """Leaves the model in a committed state, for a run that stops early.

        Tells the buffered losses; if a candidate (or the range test) is still being tried,
        restores the last committed weights (the stage snapshot) and its learning rate, and
        says so once (``AutoLRSWarning``). Safe to call twice.
        """
        if self._pending:
            self._sync()
        if self._controller.in_trial:
            where = where_in_run(self.phase, self.stage, self.steps_taken)
            sweep = self.phase == "range_test"
            saved = self._executor.snapshot_steps
            discarded = self.steps_taken > saved.get(STAGE, 0)
            self._executor.tell(Abort("finish() called during a trial"))
            if discarded:
                self._notices.warn("unfinished", unfinished_message(
                    where, sweep, saved.get(STAGE), self._controller.total_steps,
                    self.get_last_lr()[0],
                ))
        self._finished = True
        self._reporter.close()

    def __del__(self) -> None:
        # A loop that ends mid-trial without finish(): the model keeps a candidate's weights.
        try:
            if self._finished or not self._misuse.hooks or not self._controller.in_trial:
                return
            if self.steps_taken == 0 or self._controller.finished:
                return
            logger.warning(
                "%s was garbage-collected during %s without sched.finish(): the model holds a "
                "candidate's uncommitted weights, not the last committed state. Call "
                "sched.finish() when the loop ends (or use `with AutoLRS(...) as sched:`): it "
                "restores the last committed state.",
                f"the AutoLRS instance at {id(self):#x}",
                where_in_run(self.phase, self.stage, self.steps_taken),
            )
        except Exception:  # noqa: BLE001 - never raise from a finaliser (interpreter exit)
            pass

    def __enter__(self) -> AutoLRS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def remove_hooks(self) -> None:
        """Detaches AutoLRS from the optimizer's step hooks (e.g. before deleting it)."""
        self._misuse.remove_hooks()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, for ``torch.save``.

        ``{"version", "controller": <JSON-safe>, "snapshots": <tensors>, "replay": <batches>,
        "lr_ratios", "events", "run", "batches_drawn"}``: the events are the run's whole history
        (:attr:`events` and :attr:`decisions` carry on from them after a resume), ``run`` is its
        identity in the JSONL log. The snapshot tensors are shared with the live ones
        (``torch.save`` copies them); buffered losses are told first.
        """
        if self._pending:
            self._sync()
        executor = self._executor
        return {
            "version": STATE_VERSION,
            "controller": self._controller.state_dict(),
            "snapshots": executor.store.state_dict(),
            "replay": executor.replay.state_dict(),
            "lr_ratios": list(executor.rates.ratios),
            "events": list(self.events),
            "run": self._reporter.log.run,
            "batches_drawn": self._drawn,
            "val_watch": executor.watch.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from :meth:`state_dict`'s output.

        The controller continues with the config and budget it was saved with (a warning names
        any difference from the constructor's config). The learning rate is set to the saved
        run's current one.

        Raises:
            StateDictError: If ``state`` is not an autolrs state dict of this version.
        """
        check_state(state, len(self.optimizer.param_groups))
        before, budget = self._controller.config, self._controller.total_steps
        self._controller.load_state_dict(state["controller"])
        warn_resumed_settings(
            before, budget, self._controller.config, self._controller.total_steps
        )
        self._executor.load_state(
            state["snapshots"], state["replay"], state["lr_ratios"], state.get("val_watch")
        )
        # The history, the log's run identity and the data position (absent in older states).
        self.events = list(state.get("events", self.events))
        log = self._reporter.log
        log.discard()  # this instance's own start: the saved run goes on instead
        log.run = str(state.get("run", log.run))
        self._drawn = self._skip = int(state.get("batches_drawn", 0))
        self._pending = []
        self._step_lrs = []
        self._executor.rates.set(self._controller.lr)
        self._executor.resync()
        self._emit([{"event": "resume", "step": self._controller.step}])

    # ------------------------------------------------------------------ losses
    def _window(self) -> int:
        """Losses buffered before the next read: the outlook's quiet steps, capped by
        ``sync_every``."""
        return min(self._executor.outlook.quiet_steps, self.sync_every - 1)

    def _read_pending(self) -> list[float]:
        """The buffered losses as floats (one device transfer), emptying the buffer."""
        tensors = [v for v in self._pending if isinstance(v, torch.Tensor)]
        values_iter = iter(torch.stack(tensors).double().cpu().tolist() if tensors else [])
        values = [next(values_iter) if isinstance(v, torch.Tensor) else v for v in self._pending]
        self._pending = []
        return values

    def _sync(self) -> None:
        """Reads the buffered losses and tells them: the one controller call of a sync."""
        values = self._comm.mean(self._read_pending())
        lrs, self._step_lrs = self._step_lrs[-len(values):], []
        lrs = [0.0] * (len(values) - len(lrs)) + lrs
        first = self._controller.step + 1
        self._non_finite.note(first, values, lrs)
        part = (self.phase, self.stage, self._executor.restores)  # a bin never spans two
        self._reporter.losses(first, values, part)
        self._executor.tell_losses(values)
        failure = self._executor.failure
        if failure is not None:
            raise DivergenceError(self._non_finite.divergence_message(
                failure, self._executor.snapshot_steps.get(STAGE), self.config.max_rollbacks + 1
            ))

    def _emit(self, events: list[dict[str, Any]]) -> None:
        """Adds a decision's events to :attr:`events`, the log file and TensorBoard."""
        if events:
            self.events.extend(events)
            self._reporter.emit(events)


def _draw(
    iterable: Iterable[T], iterator: Iterator[T], cycle: bool, passes: int
) -> tuple[Any, Iterator[T], int]:
    """The next batch (a new pass over ``iterable`` when ``cycle`` and it ran out), the
    iterator it came from and the passes begun; the replay buffer's empty mark at the end."""
    try:
        return next(iterator), iterator, passes
    except StopIteration:
        if not cycle:
            return ReplayBuffer.EMPTY, iterator, passes
    sampler = getattr(iterable, "sampler", None)
    if callable(getattr(sampler, "set_epoch", None)) and isinstance(
        getattr(sampler, "epoch", None), int
    ):
        sampler.set_epoch(sampler.epoch + 1)  # a DistributedSampler reshuffles per pass
    iterator = iter(iterable)
    try:
        return next(iterator), iterator, passes + 1
    except StopIteration:
        return ReplayBuffer.EMPTY, iterator, passes + 1
