"""``AutoLRS``: the learning-rate scheduler users add to a PyTorch training loop."""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from autolrs.core.config import Config
from autolrs.core.controller import StageController
from autolrs.core.executor import Executor
from autolrs.core.actions import STAGE
from autolrs.core.observations import Abort, Losses, Start
from autolrs.events import EventLog, logger
from autolrs.exceptions import AutoLRSError, AutoLRSWarning, DivergenceError, StateDictError
from autolrs.torch.distributed import Collective
from autolrs.torch.replay import ReplayBuffer
from autolrs.torch.snapshot import SnapshotStore
from autolrs.torch.validation import ValidationWatch, training_level

__all__ = ["AutoLRS"]

T = TypeVar("T")
_VERSION = 1
# Attribute of an optimizer naming (by weak reference) the AutoLRS instance that drives it.
_DRIVER_ATTR = "_autolrs_driver"


class AutoLRS:
    """Finds the learning rate of each stage of training on the fly (Jin et al., ICLR 2021).

    Training is cut into stages. At the start of a stage autolrs snapshots the model and
    optimizer, tries a few learning rates proposed by Bayesian optimisation for a short trial
    each (rolling back to the snapshot between them), forecasts from each trial's loss curve
    the loss the stage would end with, and trains the stage with the best one. No bounds or
    schedule need to be chosen: the optimizer's learning rate is where autolrs starts: a hint it
    searches around, within the range a learning-rate range test finds (runs too short to
    search, under 30 steps without ``lr_range``, keep it and decay it).

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
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not any(len(g["params"]) for g in optimizer.param_groups):
            raise ValueError("optimizer has no parameters: pass it the model's parameters")
        _check_optimizer_matches_model(optimizer, model)
        if val_fn is not None and not callable(val_fn):
            raise TypeError(f"val_fn must be callable or None, got {type(val_fn).__name__}")
        if config is not None and not isinstance(config, Config):
            raise TypeError(f"config must be an autolrs.Config, got {type(config).__name__}")
        if isinstance(extra_state, (str, bytes)) or not isinstance(extra_state, Iterable):
            raise TypeError("extra_state must be a sequence of objects with state_dict()")
        extra = list(extra_state)
        for obj in extra:
            if not (callable(getattr(obj, "state_dict", None)) and callable(
                getattr(obj, "load_state_dict", None)
            )):
                raise TypeError(
                    f"extra_state entries need state_dict() and load_state_dict(); "
                    f"a {type(obj).__name__} has not"
                )
        if sync_every is not None and (
            isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1
        ):
            raise ValueError(f"sync_every must be an integer >= 1 or None, got {sync_every!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if log_file is not None and not isinstance(log_file, (str, os.PathLike)):
            raise TypeError(
                f"log_file must be a path (str or os.PathLike) or None, got "
                f"{type(log_file).__name__} ({log_file!r:.40}); e.g. log_file='runs/autolrs.jsonl'"
            )
        _check_tensorboard(tensorboard)
        snapshot_device = _snapshot_device(snapshot_device)
        self.model = model
        self.optimizer = optimizer
        self.val_fn = val_fn
        lrs = [_lr_value(g["lr"]) for g in optimizer.param_groups]
        top = max(lrs)
        self._ratios = [lr / top if top > 0 else 1.0 for lr in lrs]
        self._controller = StageController(
            config,
            total_steps=total_steps,
            lr_range=lr_range,
            validation=val_fn is not None,
            seed=seed,
            default_lr=top if top > 0 else None,
        )
        self._store = SnapshotStore(model, optimizer, extra, device=snapshot_device)
        self._replay = ReplayBuffer()
        self._comm = Collective(process_group)
        self._log = EventLog(log_file, enabled=self._comm.is_leader)
        self._log.hold()  # until the first step: load_state_dict() may make this a resumed run
        self._tensorboard = _summary_writer(tensorboard) if self._comm.is_leader else None
        self.events: list[dict[str, Any]] = []
        if sync_every is None:
            on_cpu = all(p.device.type == "cpu" for g in optimizer.param_groups for p in g["params"])
            sync_every = (1 << 30) if self._comm.enabled else (1 if on_cpu else 16)
        self.sync_every = sync_every
        self._pending: list[float | torch.Tensor] = []
        self._applied: list[float] = []
        self._optimizer_steps = 0
        self._optimizer_steps_seen = 0
        self._warned: set[str] = set()
        # A GradScaler legitimately skips optimizer.step() on overflow.
        self._has_scaler = any("Scaler" in type(obj).__name__ for obj in extra)
        self._applied_target: float | None = None
        self._superseded = False
        self._momenta = _momenta(optimizer)
        self._drawn = 0  # fresh batches wrap() drew from the user's iterable (its position)
        self._skip = 0  # batches a resumed wrap() skips to reach the saved run's position
        self._init_notices(total_steps)
        self._take_over(optimizer)
        self._hooks = (
            optimizer.register_step_pre_hook(self._enforce_lr),
            optimizer.register_step_post_hook(self._count_optimizer_step),
        )
        self._executor = _ActionExecutor(self)
        self._executor.tell(Start())

    def _init_notices(self, total_steps: int | None) -> None:
        """What the messages about misuse and faults, and the log's loss records, draw on."""
        self._watch = ValidationWatch()  # stops trusting a val_fn that returns an accuracy/NaN
        self._recent: list[float] = []  # the latest training losses told (the watch's level)
        self._step_lrs: list[float] = []  # the rate each buffered loss's step used
        self._non_finite: tuple[int, int, float, float] | None = None  # since, count, high, low
        self._snapshot_steps: dict[str, int] = {}  # the step at which each slot was saved
        self._finished = False  # finish() ran
        self._loss_bin = _LossBin(total_steps)  # training-loss records of the log file
        self._restores = 0  # rollbacks carried out (a training-loss bin ends at each)

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
        if self._superseded:
            raise AutoLRSError(
                f"{self._describe()} no longer drives its optimizer: a newer AutoLRS instance "
                "was created on the same optimizer and took it over. Step only the newest "
                "instance; create only one AutoLRS per optimizer."
            )
        value = _loss_value(loss)
        self._check_wiring()
        self._log.release()
        if self._controller.total_steps is None and self.steps_taken == 0:
            # A supported mode (the paper's), not a mistake: the autolrs logger's WARNING (shown
            # by default, like a warning) says once what it does, without failing strict tests.
            if self._comm.is_leader:
                logger.warning("%s", _no_budget_message(self.config))
        self._step_lrs.append(self._applied_target or 0.0)
        if self._tensorboard is not None:
            self._tensorboard.add_scalar("autolrs/lr", self._applied_target or 0.0, self.steps_taken)
        self._pending.append(value)
        if len(self._pending) > self._window:
            self._sync()
        total = self._controller.total_steps
        if total is not None and self.steps_taken > total and "overrun" not in self._warned:
            self._warn_once(
                "overrun",
                f"training continues past total_steps={total} (this is step {self.steps_taken}): "
                "total_steps counts optimizer steps, every batch and the search's trials "
                "included, not epochs; for N epochs pass total_steps=len(loader) * N. The "
                f"schedule has ended; the learning rate holds at {self.get_last_lr()[0]:.3g}.",
            )
        # Whatever happened since the last step (a rollback, or a framework's own scheduler that
        # steps after optimizer.step()), the next step uses autolrs' learning rate.
        self._set_lr(self._executor.outlook.planned_lr(len(self._pending)))

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group, as the next step will use it."""
        return [_lr_value(g["lr"]) for g in self.optimizer.param_groups]

    @property
    def in_trial(self) -> bool:
        """True while a candidate is being tried (its weights may still be rolled back)."""
        return self._controller.in_trial

    @property
    def finished(self) -> bool:
        """True once ``total_steps`` steps were taken."""
        return self._controller.step + len(self._pending) >= (
            self._controller.total_steps or math.inf
        )

    @property
    def stage(self) -> int:
        """Index of the current stage (1-based; 0 during the range test)."""
        return self._controller.stage

    @property
    def phase(self) -> str:
        """``"range_test"``, ``"trial"``, ``"exploit"``, ``"final"`` or ``"done"``."""
        return self._controller.phase

    @property
    def lr_range(self) -> tuple[float, float] | None:
        """The interval searched (found by the range test when none was given)."""
        return self._controller.search_range

    @property
    def config(self) -> Config:
        """The method's settings."""
        return self._controller.config

    @property
    def steps_taken(self) -> int:
        """Optimizer steps reported so far (trials included)."""
        return self._controller.step + len(self._pending)

    @property
    def optimizer_steps(self) -> int:
        """Calls of ``optimizer.step()`` seen since construction (a step hook counts them)."""
        return self._optimizer_steps

    @property
    def snapshot_bytes(self) -> int:
        """Memory held by the live snapshots."""
        return self._store.nbytes()

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """One entry per stage decision: step, stage, chosen lr and its forecast."""
        return [
            {k: e[k] for k in ("step", "stage", "lr", "forecast", "exploit_steps", "reason")}
            for e in self.events
            if e["event"] == "decision"
        ]

    @property
    def batches_drawn(self) -> int:
        """Fresh batches :meth:`wrap` has drawn from the user's iterables (replays excluded),
        over the whole run (a resumed run counts on from the saved one): the data position."""
        return self._drawn

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
            self._say_finished()
            return
        iterator = iter(iterable)
        if not skip_drawn:
            self._skip = 0
        passes = 0
        while self._skip:  # across calls: the saved position may lie in a later pass
            batch, iterator, passes = self._draw(iterable, iterator, cycle, passes)
            if ReplayBuffer.is_empty(batch):
                return  # the saved position lies in a later pass over the data
            self._skip -= 1
        while not self.finished:
            self._check_unreported()
            batch = self._replay.next()
            if ReplayBuffer.is_empty(batch):
                batch, iterator, passes = self._draw(iterable, iterator, cycle, passes)
                if ReplayBuffer.is_empty(batch):
                    self._ran_out(restartable)
                    return
                self._drawn += 1
                if self._controller.phase == "trial":
                    self._replay.record(batch)
            yield batch

    def _draw(
        self, iterable: Iterable[T], iterator: Iterator[T], cycle: bool, passes: int
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

    def _check_unreported(self) -> None:
        if self._optimizer_steps - self._optimizer_steps_seen >= _UNREPORTED_LIMIT:
            raise RuntimeError(
                f"optimizer.step() ran {self._optimizer_steps - self._optimizer_steps_seen} "
                "times without sched.step(loss): AutoLRS decides nothing and the learning "
                "rate stays where it is. Call sched.step(loss) after every optimizer.step()."
            )

    def _say_finished(self) -> None:
        self._warn_once(
            "wrap-finished",
            f"wrap() yields nothing: the run already took its total_steps="
            f"{self._controller.total_steps} steps. wrap() starts a new pass over a DataLoader "
            "(or any re-iterable) by itself until total_steps, so a loop over epochs around it "
            "is not needed; to train longer, build AutoLRS with a larger total_steps.",
        )

    def _ran_out(self, restartable: bool) -> None:
        """Says once that the batches ran out before ``total_steps`` (nothing to say without
        a budget: one pass is then the loop's length)."""
        total = self._controller.total_steps
        if total is None:
            return
        why = (
            "it yields no batch"
            if restartable
            else "it is an iterator (a generator?), which wrap() cannot restart"
        )
        self._warn_once(
            "ran-out",
            f"the iterable given to wrap() ran out after {self.steps_taken} of total_steps="
            f"{total} steps ({why}): the run is unfinished ({self.phase} phase"
            + (", in the middle of a trial" if self.in_trial else "")
            + "). Pass a DataLoader or a list (wrap() starts a new pass over them until "
            "total_steps), an endless generator, or call wrap() again with more batches; call "
            "sched.finish() if the run ends here.",
        )

    def finish(self) -> None:
        """Leaves the model in a committed state, for a run that stops early.

        Tells the buffered losses; if a candidate (or the range test) is still being tried,
        restores the last committed weights (the stage snapshot) and its learning rate, and
        says so once (``AutoLRSWarning``). Safe to call twice.
        """
        if self._pending:
            self._sync()
        if self._controller.in_trial:
            where, sweep = self._trial_description(), self.phase == "range_test"
            discarded = self.steps_taken > self._snapshot_steps.get(STAGE, 0)
            self._executor.tell(Abort("finish() called during a trial"))
            if discarded:
                self._warn_once("unfinished", self._unfinished_message(where, sweep))
        self._finished = True
        self._log.record(self._loss_bin.flush())
        self._log.close()
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def _trial_description(self) -> str:
        """Where the run is, for messages: the range test or a stage's trial, and the step."""
        what = "the range test" if self.phase == "range_test" else f"stage {self.stage}'s trials"
        return f"{what} (step {self.steps_taken})"

    def _unfinished_message(self, where: str, sweep: bool) -> str:
        """What finish() did when the loop ended during a trial, and what to do."""
        committed = self._snapshot_steps.get(STAGE)
        at = f" at step {committed}" if committed is not None else ""
        state = f"the state before the range test{at}" if sweep else f"the stage snapshot{at}"
        budget = self._controller.total_steps
        fix = (
            "Pass total_steps (the optimizer steps of the whole run, e.g. len(loader) * "
            "epochs): stages are then planned to end inside it, never mid-trial."
            if budget is None
            else f"The run was planned for total_steps={budget}; let the loop run that long "
            "(wrap() starts a new pass over a DataLoader by itself)."
        )
        return (
            f"the training loop ended during {where}, before the trial was decided: the model "
            f"was restored to the last committed state ({state}) at learning "
            f"rate {self.get_last_lr()[0]:.3g}; the steps since were discarded. {fix}"
        )

    def __del__(self) -> None:
        # A loop that ends mid-trial without finish(): the model keeps a candidate's weights.
        try:
            if self._finished or not self._hooks or not self._controller.in_trial:
                return
            if self.steps_taken == 0 or self._controller.finished:
                return
            logger.warning(
                "%s was garbage-collected during %s without sched.finish(): the model holds a "
                "candidate's uncommitted weights, not the last committed state. Call "
                "sched.finish() when the loop ends (or use `with AutoLRS(...) as sched:`): it "
                "restores the last committed state.",
                f"the AutoLRS instance at {id(self):#x}",
                self._trial_description(),
            )
        except Exception:  # noqa: BLE001 - never raise from a finaliser (interpreter exit)
            pass

    def __enter__(self) -> AutoLRS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

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
        return {
            "version": _VERSION,
            "controller": self._controller.state_dict(),
            "snapshots": self._store.state_dict(),
            "replay": self._replay.state_dict(),
            "lr_ratios": list(self._ratios),
            "events": list(self.events),
            "run": self._log.run,
            "batches_drawn": self._drawn,
            "val_watch": self._watch.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from :meth:`state_dict`'s output.

        The controller continues with the config and budget it was saved with (a warning names
        any difference from the constructor's config). The learning rate is set to the saved
        run's current one.

        Raises:
            StateDictError: If ``state`` is not an autolrs state dict of this version.
        """
        if not isinstance(state, dict):
            raise StateDictError(f"state must be a dict from AutoLRS.state_dict(), got {type(state).__name__}")
        if state.get("version") != _VERSION:
            raise StateDictError(
                f"AutoLRS state has version {state.get('version')!r}; this release reads "
                f"version {_VERSION}"
            )
        missing = [k for k in ("controller", "snapshots", "replay", "lr_ratios") if k not in state]
        if missing:
            raise StateDictError(f"AutoLRS state misses key(s) {missing}")
        if len(state["lr_ratios"]) != len(self.optimizer.param_groups):
            raise StateDictError(
                f"the saved run had {len(state['lr_ratios'])} parameter groups, this optimizer "
                f"has {len(self.optimizer.param_groups)}"
            )
        before, budget = self._controller.config, self._controller.total_steps
        self._controller.load_state_dict(state["controller"])
        diff = before.diff(self._controller.config)
        if diff:
            warnings.warn(
                f"resuming with the saved config; it differs from the constructor's in {diff}",
                AutoLRSWarning,
                stacklevel=2,
            )
        if budget != self._controller.total_steps:
            warnings.warn(
                f"resuming with the saved total_steps={self._controller.total_steps} (the stages were "
                f"planned for it), not the constructor's {budget}",
                AutoLRSWarning,
                stacklevel=2,
            )
        self._store.load_state_dict(state["snapshots"])
        self._replay.load_state_dict(state["replay"])
        self._ratios = [float(r) for r in state["lr_ratios"]]
        # The history, the log's run identity and the data position (absent in older states).
        self.events = list(state.get("events", self.events))
        self._log.discard()  # this instance's own start: the saved run goes on instead
        self._log.run = str(state.get("run", self._log.run))
        self._drawn = self._skip = int(state.get("batches_drawn", 0))
        self._momenta = _momenta(self.optimizer)
        self._pending = []
        self._step_lrs = []
        self._applied = []
        if isinstance(state.get("val_watch"), dict):
            self._watch.load_state_dict(state["val_watch"])
        self._set_lr(self._controller.lr)
        self._executor.resync()
        self._emit([{"event": "resume", "step": self._controller.step}])

    # ------------------------------------------------------------------ internals
    def _count_optimizer_step(self, *_: Any) -> None:
        self._optimizer_steps += 1
        unreported = self._optimizer_steps - self._optimizer_steps_seen
        if unreported >= 2 and not self._superseded:
            self._warn_once(
                "unreported",
                f"optimizer.step() ran {unreported} times without sched.step(loss): AutoLRS "
                "hears no loss, decides nothing, and the learning rate stays at "
                f"{self.get_last_lr()[0]:.3g}. Call sched.step(loss) after every "
                "optimizer.step().",
            )

    def remove_hooks(self) -> None:
        """Detaches AutoLRS from the optimizer's step hooks (e.g. before deleting it)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = ()

    def _check_wiring(self) -> None:
        skipped = self._optimizer_steps == self._optimizer_steps_seen
        if skipped and not self._has_scaler and _gradients_pending(self.optimizer):
            # Gradients are there and finite, yet the optimizer has not stepped since the last
            # report: this report came before optimizer.step() (or a second time after one).
            # A rollback now would apply those gradients to restored weights: refuse.
            first = self._controller.step + len(self._pending) == 0
            raise RuntimeError(
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
        if skipped and not self._has_scaler and "no-step" not in self._warned:
            scaler_hint = (
                "pass the scaler to AutoLRS as extra_state=[scaler]: skipped steps are then "
                "expected (they still count) and rollbacks rewind the scaler's scale too."
            )
            if _gradients_not_finite(self.optimizer):
                message = (
                    "AutoLRS.step() was called but optimizer.step() was not called since the "
                    "last one, and the gradients hold inf/nan: a torch.amp.GradScaler skips "
                    f"optimizer.step() on such gradients. If you use one, {scaler_hint}"
                )
            elif self._optimizer_steps > 0:
                message = (
                    "AutoLRS.step() was called but optimizer.step() was not called since the "
                    "last one (it was called before, so a step was skipped). If a "
                    "torch.amp.GradScaler skips steps (it does on inf/nan gradients), "
                    f"{scaler_hint} Otherwise call sched.step(loss) once after every "
                    "optimizer.step()."
                )
            else:
                message = (
                    "AutoLRS.step() was called but optimizer.step() was not called since the "
                    "last one; call sched.step(loss) once after every optimizer.step(). If a "
                    "torch.amp.GradScaler skipped the step (it does on inf/nan gradients), "
                    f"{scaler_hint}"
                )
            self._warn_once("no-step", message)
        self._optimizer_steps_seen = self._optimizer_steps

    def _take_over(self, optimizer: torch.optim.Optimizer) -> None:
        """Marks ``optimizer`` as driven by this instance, detaching an earlier live one."""
        ref = getattr(optimizer, _DRIVER_ATTR, None)
        stale = ref() if isinstance(ref, weakref.ref) else None
        if (
            isinstance(stale, AutoLRS)
            and stale is not self
            and stale.optimizer is optimizer
            and stale._hooks
        ):
            # Two instances would fight over the learning rate before every step: the newest
            # one wins, the earlier one is detached (its step() then raises).
            used = stale.optimizer_steps > 0 or stale.steps_taken > 0
            description = stale._describe()
            mid_trial = stale.in_trial
            stale.remove_hooks()
            stale._superseded = True
            if used:
                warnings.warn(
                    "this optimizer is already driven by another AutoLRS instance created "
                    f"earlier ({description}); create only one per optimizer: e.g. after "
                    "re-running a notebook cell, rebuild the optimizer too (and the model"
                    + (
                        ": the earlier instance was in the middle of a trial, so the model "
                        "holds a candidate's weights"
                        if mid_trial
                        else ""
                    )
                    + "). The earlier instance was detached; this one now sets the learning rate.",
                    AutoLRSWarning,
                    stacklevel=3,
                )
        try:
            setattr(optimizer, _DRIVER_ATTR, weakref.ref(self))
        except AttributeError:  # pragma: no cover - an optimizer class with __slots__
            pass

    def _describe(self) -> str:
        """Names this instance for messages: its id, progress and phase."""
        return (
            f"AutoLRS instance at {id(self):#x}: {self.steps_taken} steps taken, "
            f"stage {self.stage}, phase {self.phase!r}"
        )

    def _enforce_lr(self, *_: Any) -> None:
        """Optimizer pre-step hook: the step must use AutoLRS' learning rate."""
        # ``_applied`` holds the rates as the groups store them (a float32 tensor rounds them),
        # so any difference is a change made by something else.
        if self._applied and any(
            _lr_value(g["lr"]) != lr for g, lr in zip(self.optimizer.param_groups, self._applied)
        ):
            self._warn_once(
                "wiring",
                "the learning rate was changed by something other than AutoLRS (another LR "
                "scheduler?); remove it: AutoLRS sets the learning rate itself and overrides it.",
            )
            self._set_lr(self._applied_target, force=True)
        momenta = _momenta(self.optimizer)
        if momenta != self._momenta:
            self._warn_once(
                "momentum",
                "the optimizer's momentum/betas changed between steps, not by AutoLRS (a "
                "scheduler that cycles momentum, such as OneCycleLR or CyclicLR?): remove it. "
                "AutoLRS overrides its learning rate but not its momentum, which then follows a "
                "cycle planned for another schedule.",
            )
            self._momenta = momenta

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, AutoLRSWarning, stacklevel=_caller_level())

    def _read_pending(self) -> list[float]:
        tensors = [v for v in self._pending if isinstance(v, torch.Tensor)]
        values_iter = iter(torch.stack(tensors).double().cpu().tolist() if tensors else [])
        values = [next(values_iter) if isinstance(v, torch.Tensor) else v for v in self._pending]
        self._pending = []
        return values

    @property
    def _window(self) -> int:
        """Losses buffered before the next read: the outlook's quiet steps, capped by
        ``sync_every``."""
        return min(self._executor.outlook.quiet_steps, self.sync_every - 1)

    def _sync(self) -> None:
        """Reads the buffered losses and tells them: the one controller call of a sync."""
        values = self._comm.mean(self._read_pending())
        self._note_losses(values)
        if self._comm.enabled:
            # Only where the controller may commit a snapshot is every rank's model checked.
            at_boundary = len(values) > self._executor.outlook.quiet_steps
            finite = self._comm.all_true(self._store.model_finite()) if at_boundary else True
            self._executor.tell(Losses(values, model_finite=finite))
        else:
            self._executor.tell(Losses(values, model_finite=self._store.model_finite))
        if self._executor.failure is not None:
            raise DivergenceError(self._divergence_message(self._executor.failure))

    def _note_losses(self, values: list[float]) -> None:
        """Keeps the latest training losses, and the run of non-finite ones with its rates."""
        lrs, self._step_lrs = self._step_lrs[-len(values):], []
        lrs = [0.0] * (len(values) - len(lrs)) + lrs
        first = self._controller.step + 1
        for offset, (value, lr) in enumerate(zip(values, lrs)):
            if math.isfinite(value):
                self._non_finite = None
                continue
            since, count, high, low = self._non_finite or (first + offset, 0, lr, lr)
            self._non_finite = (since, count + 1, max(high, lr), min(low, lr))
        self._recent = (self._recent + list(values))[-16:]
        if self._log.path is not None:
            part = (self.phase, self.stage, self._restores)  # a bin never spans two of them
            self._log.record(self._loss_bin.add(first, values, part))

    def _divergence_message(self, failure: str) -> str:
        """The controller's failure, with the likely cause and where the weights are."""
        committed = self._snapshot_steps.get(STAGE)
        where = (
            f"The weights hold the last committed state (the one saved at step {committed})."
            if committed is not None
            else "The weights hold the last committed state."
        )
        rollbacks = self.config.max_rollbacks + 1
        if self._non_finite is not None and self._non_finite[1] >= rollbacks:
            since, count, high, low = self._non_finite
            return (
                f"{failure.split(';')[0]}: the training loss was NaN/inf at every one of the "
                f"last {count} steps (since "
                f"step {since}), at every learning rate autolrs tried, from {high:.3g} down to "
                f"{low:.3g}: a loss that stays non-finite at such small rates comes from the "
                "data or the model, not the learning rate (check the inputs and labels for "
                "NaN/inf, a log or a division of zero in the loss, the model's initialisation). "
                + where
            )
        return f"{failure} {where}"

    def _emit(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.events.extend(events)
            self._log.emit(events)
            if self._tensorboard is not None:
                _write_scalars(self._tensorboard, events)

    def _evaluate(self) -> tuple[float, BaseException | None]:
        """Calls val_fn on this rank: its value, or what it raised."""
        assert self.val_fn is not None
        was_training = self.model.training
        try:
            return _validation_value(self.val_fn()), None
        except BaseException as err:  # noqa: BLE001 - re-raised by the executor, on every rank
            return math.nan, err
        finally:
            self.model.train(was_training)

    def _fallback_validation(self) -> float:
        """What answers the controller once val_fn is not trusted: a candidate's recent
        training loss in a trial; elsewhere (an overfitting check) NaN, which skips the check."""
        if self._controller.phase == "trial":
            return training_level(self._recent)
        return math.nan

    def _set_lr(self, lr: float | None, *, force: bool = False) -> None:
        if lr is None:
            return
        groups = self.optimizer.param_groups
        if (
            not force
            and lr == self._applied_target
            and self._applied
            and all(_lr_value(g["lr"]) == v for g, v in zip(groups, self._applied))
        ):
            return
        self._applied_target = lr
        for group, ratio in zip(groups, self._ratios):
            if isinstance(group["lr"], torch.Tensor):
                # A tensor learning rate keeps its type (and device), as torch's own
                # schedulers do; it may round the value (float32).
                group["lr"].fill_(lr * ratio)
            else:
                group["lr"] = lr * ratio
        # What the groups now hold, read back: the pre-step hook compares against it exactly.
        self._applied = [_lr_value(g["lr"]) for g in groups]


class _ActionExecutor(Executor):
    """Carries the controller's decisions out on an :class:`AutoLRS`'s model and optimizer.

    Under ``torch.distributed`` rank 0 decides and the decision is broadcast
    (:class:`~autolrs.core.executor.Executor`); every rank carries it out on its own model.
    """

    def __init__(self, sched: AutoLRS) -> None:
        comm = sched._comm
        super().__init__(
            sched._controller,
            broadcast=comm.broadcast if comm.enabled else None,
            leader=comm.is_leader,
        )
        self._sched = sched
        self._elsewhere: BaseException | None = None  # raised for a val_fn that failed remotely

    def set_lr(self, lr: float) -> None:
        self._sched._set_lr(lr)

    def snapshot(self, slot: str) -> None:
        self._sched._snapshot_steps[slot] = self._sched._controller.step
        self._sched._store.save(slot)
        self._sched._replay.on_snapshot(slot)

    def restore(self, slot: str) -> None:
        sched = self._sched
        sched._store.restore(slot)
        sched._restores += 1
        sched._replay.on_restore(slot)
        sched._applied = []  # the optimizer's param groups now hold the snapshot's rates
        sched._momenta = _momenta(sched.optimizer)

    def discard(self, slot: str) -> None:
        self._sched._store.discard(slot)

    def evaluate(self) -> float:
        """val_fn's value averaged over the ranks; if it raised on any rank, raises on every
        rank (the executor then rolls back everywhere before the error gets out)."""
        sched = self._sched
        if not sched._watch.trusted:
            return sched._fallback_validation()
        comm = sched._comm
        value, error = sched._evaluate()
        if not comm.all_true(error is None):
            if error is not None:
                raise error
            self._elsewhere = RuntimeError(
                "val_fn raised on another rank; the trial was rolled back"
            )
            raise self._elsewhere
        value = comm.mean([value])[0]
        level = training_level(sched._recent)
        if sched._watch.observe(value, level, committed=not sched.in_trial) is not None:
            sched._warn_once("val_fn", sched._watch.message())
            return sched._fallback_validation()
        return value

    def abort_reason(self, error: BaseException) -> str:
        if error is self._elsewhere:
            return "val_fn raised on another rank"
        return f"val_fn raised {type(error).__name__}"

    def on_events(self, events: list[dict[str, Any]]) -> None:
        self._sched._emit(events)


class _LossBin:
    """Averages the training loss over bins of steps, for the log file's ``train_loss``
    records (``autolrs plot`` draws them): about 200 bins per budget, 10 steps without one."""

    def __init__(self, total_steps: int | None) -> None:
        self.width = max(1, (total_steps or 2000) // 200)
        self.start: int | None = None
        self.values: list[float] = []
        self.part: Any = None

    def add(self, first: int, values: list[float], part: Any = None) -> list[dict[str, Any]]:
        """Adds the losses of steps ``first``, ``first + 1``, ... of ``part`` (a phase of the
        run); returns the bins they completed (a bin never spans a gap in the steps, nor two
        parts: the plot draws each part in its own style)."""
        out: list[dict[str, Any]] = []
        if part != self.part:
            out += self.flush()
            self.part = part
        for step, value in enumerate(values, first):
            if self.start is not None and step != self.start + len(self.values):
                out += self.flush()
            if self.start is None:
                self.start = step
            self.values.append(value)
            if len(self.values) >= self.width:
                out += self.flush()
        return out

    def flush(self) -> list[dict[str, Any]]:
        """The current bin as a record (none when it is empty)."""
        if self.start is None:
            return []
        finite = [v for v in self.values if math.isfinite(v)]
        record = {
            "event": "train_loss",
            "step": self.start + len(self.values) - 1,
            "start": self.start,
            "loss": sum(finite) / len(finite) if finite else None,
            "steps": len(self.values),
        }
        self.start, self.values = None, []
        return [record]


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning raised by this function's caller name the first
    frame outside autolrs (the user's line, however deep inside autolrs it was noticed)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _no_budget_message(config: Config) -> str:
    """What a run without ``total_steps`` does, said at its first step."""
    return (
        "no total_steps was given, so autolrs does not know how long the run is: every stage "
        f"searches {config.candidates} learning rates with the paper's absolute lengths (then "
        f"{config.tau} steps at the chosen one), the rate never decays to zero, and a loop that "
        "stops in the middle of a trial leaves that stage undecided (sched.finish() then "
        "restores the last committed weights). Pass total_steps=<optimizer steps of the whole "
        "run> (e.g. len(loader) * epochs) whenever you know it."
    )


def _lr_value(lr: Any) -> float:
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def _check_optimizer_matches_model(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module
) -> None:
    """Raises ValueError if none of the optimizer's parameters belongs to the model."""
    owned = {id(p) for p in model.parameters()}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if any(id(p) in owned for p in params):
        return
    # Lenient for models that keep trainable tensors in their state dict only.
    state = model.state_dict(keep_vars=True)
    owned.update(id(t) for t in state.values() if isinstance(t, torch.Tensor))
    if any(id(p) in owned for p in params):
        return
    raise ValueError(
        f"optimizer and model must match: none of the optimizer's {len(params)} parameters is a "
        f"parameter of the model ({type(model).__name__}). Build the optimizer from this "
        "model's parameters (e.g. torch.optim.SGD(model.parameters(), ...)) and pass the same "
        "model to AutoLRS; rollbacks restore the model, so they must be the same tensors."
    )


def _check_tensorboard(target: Any) -> None:
    """Raises TypeError unless ``target`` is None, a writer or a log directory."""
    if target is None or hasattr(target, "add_scalar"):
        return
    if isinstance(target, (str, os.PathLike)) and not isinstance(target, bool):
        return
    raise TypeError(
        f"tensorboard must be a torch.utils.tensorboard.SummaryWriter (or an object with "
        f"add_scalar), a log directory (str or os.PathLike) or None, got "
        f"{type(target).__name__} ({target!r:.40}); e.g. tensorboard='runs/autolrs'"
    )


def _snapshot_device(device: Any) -> torch.device | None:
    """``snapshot_device`` as a ``torch.device`` (None stays None), checked to be usable."""
    accepted = "'cpu', 'cuda', 'cuda:0', a torch.device, or None (each tensor stays on its device)"
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"snapshot_device must be a device name or torch.device, got "
            f"{type(device).__name__} ({device!r:.40}); accepted: {accepted}"
        )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"snapshot_device={device!r} is not a device; accepted: {accepted}"
        ) from err
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise ValueError(
            f"snapshot_device={device!r} is not usable in this process ({err}); accepted: "
            f"{accepted}"
        ) from err
    return parsed


_UNREPORTED_LIMIT = 100  # optimizer steps without sched.step(loss) after which wrap() stops


def _momenta(optimizer: torch.optim.Optimizer) -> list[Any]:
    """Each group's momentum and betas (what a cycling scheduler such as OneCycleLR changes)."""
    return [
        (
            _lr_value(g["momentum"]) if "momentum" in g else None,
            tuple(_lr_value(b) for b in g["betas"]) if "betas" in g else None,
        )
        for g in optimizer.param_groups
    ]


def _gradients_pending(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the parameters hold finite gradients (a backward ran; no GradScaler skip)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return bool(grads) and all(bool(torch.isfinite(grad).all()) for grad in grads)


def _gradients_not_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether some parameter's gradient holds inf or nan (a skipped GradScaler step's mark)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return any(not bool(torch.isfinite(grad).all()) for grad in grads)


def _loss_value(loss: Any) -> float | torch.Tensor:
    if isinstance(loss, torch.Tensor):
        if loss.dim() != 0:
            raise TypeError(
                f"loss must be a Python number or a 0-d tensor, got a tensor of shape "
                f"{tuple(loss.shape)}; reduce it first (e.g. loss.mean())"
            )
        if loss.is_complex() or loss.dtype == torch.bool:
            raise TypeError(f"loss must be a real number, got a {loss.dtype} tensor")
        return loss.detach()
    if isinstance(loss, bool) or not isinstance(loss, numbers.Real):
        raise TypeError(
            f"loss must be a Python number or a 0-d tensor, got {type(loss).__name__} "
            f"({loss!r:.40})"
        )
    return float(loss)


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


def _summary_writer(target: Any) -> Any:
    """A SummaryWriter for ``target`` (a writer, a log directory, or None)."""
    if target is None:
        return None
    if hasattr(target, "add_scalar"):
        return target
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            'tensorboard logging needs the tensorboard package; install it with: '
            'pip install "autolrs[tensorboard]"'
        ) from err
    return SummaryWriter(log_dir=str(target))


def _write_scalars(writer: Any, events: list[dict[str, Any]]) -> None:
    for event in events:
        kind, step = event.get("event"), event.get("step", 0)
        if kind == "candidate":
            writer.add_scalar("autolrs/candidate_lr", event["lr"], step)
            if event.get("forecast") is not None:
                writer.add_scalar("autolrs/candidate_forecast", event["forecast"], step)
        elif kind == "decision":
            writer.add_scalar("autolrs/chosen_lr", event["lr"], step)
            if event.get("forecast") is not None:
                writer.add_scalar("autolrs/chosen_forecast", event["forecast"], step)
            writer.add_scalar("autolrs/stage", event.get("stage", 0), step)
        elif kind == "rollback":
            writer.add_scalar("autolrs/rollbacks", 1.0, step)
