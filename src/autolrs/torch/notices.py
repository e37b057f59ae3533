"""What :class:`autolrs.AutoLRS` says to the user: once-only warnings and their texts.

:class:`OnceWarnings` raises each kind of ``AutoLRSWarning`` once per instance, pointing at the
user's line; the functions build the messages about the run's length, an unfinished run and a
divergence, and :class:`NonFiniteRun` keeps the run of non-finite losses a divergence message
names.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

from autolrs.core.config import Config
from autolrs.exceptions import AutoLRSWarning

__all__ = [
    "NonFiniteRun",
    "OnceWarnings",
    "finished_message",
    "no_budget_message",
    "overrun_message",
    "ran_out_message",
    "unfinished_message",
    "warn_resumed_settings",
    "where_in_run",
]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_level() -> int:
    """The ``stacklevel`` that makes a warning raised by this function's caller name the first
    frame outside autolrs (the user's line, however deep inside autolrs it was noticed)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


class OnceWarnings:
    """Raises each kind of ``AutoLRSWarning`` at most once, naming the user's line."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.said

    def warn(self, key: str, message: str) -> None:
        """Warns ``message`` unless a warning of kind ``key`` was raised already."""
        if key not in self.said:
            self.said.add(key)
            warnings.warn(message, AutoLRSWarning, stacklevel=caller_level())


def warn_resumed_settings(
    before: Config, budget: int | None, saved: Config, saved_budget: int | None
) -> None:
    """Warns, naming the caller of ``AutoLRS.load_state_dict``, when the saved run's config or
    ``total_steps`` (with which it resumes) differ from the constructor's."""
    diff = before.diff(saved)
    if diff:
        warnings.warn(
            f"resuming with the saved config; it differs from the constructor's in {diff}",
            AutoLRSWarning,
            stacklevel=3,
        )
    if budget != saved_budget:
        warnings.warn(
            f"resuming with the saved total_steps={saved_budget} (the stages "
            f"were planned for it), not the constructor's {budget}",
            AutoLRSWarning,
            stacklevel=3,
        )


def where_in_run(phase: str, stage: int, steps: int) -> str:
    """Where the run is, for messages: the range test or a stage's trial, and the step."""
    what = "the range test" if phase == "range_test" else f"stage {stage}'s trials"
    return f"{what} (step {steps})"


def no_budget_message(config: Config) -> str:
    """What a run without ``total_steps`` does, said at its first step."""
    return (
        "no total_steps was given, so autolrs does not know how long the run is: every stage "
        f"searches {config.candidates} learning rates with the paper's absolute lengths (then "
        f"{config.tau} steps at the chosen one), the rate never decays to zero, and a loop that "
        "stops in the middle of a trial leaves that stage undecided (sched.finish() then "
        "restores the last committed weights). Pass total_steps=<optimizer steps of the whole "
        "run> (e.g. len(loader) * epochs) whenever you know it."
    )


def overrun_message(total: int, step: int, lr: float) -> str:
    """Training went on past ``total_steps``."""
    return (
        f"training continues past total_steps={total} (this is step {step}): "
        "total_steps counts optimizer steps, every batch and the search's trials "
        "included, not epochs; for N epochs pass total_steps=len(loader) * N. The "
        f"schedule has ended; the learning rate holds at {lr:.3g}."
    )


def finished_message(total: int | None) -> str:
    """``wrap()`` called after the run took its budget."""
    return (
        f"wrap() yields nothing: the run already took its total_steps="
        f"{total} steps. wrap() starts a new pass over a DataLoader "
        "(or any re-iterable) by itself until total_steps, so a loop over epochs around it "
        "is not needed; to train longer, build AutoLRS with a larger total_steps."
    )


def ran_out_message(
    steps: int, total: int, restartable: bool, phase: str, in_trial: bool
) -> str:
    """The batches given to ``wrap()`` ran out before ``total_steps``."""
    why = (
        "it yields no batch"
        if restartable
        else "it is an iterator (a generator?), which wrap() cannot restart"
    )
    return (
        f"the iterable given to wrap() ran out after {steps} of total_steps="
        f"{total} steps ({why}): the run is unfinished ({phase} phase"
        + (", in the middle of a trial" if in_trial else "")
        + "). Pass a DataLoader or a list (wrap() starts a new pass over them until "
        "total_steps), an endless generator, or call wrap() again with more batches; call "
        "sched.finish() if the run ends here."
    )


def unfinished_message(
    where: str, sweep: bool, committed: int | None, budget: int | None, lr: float
) -> str:
    """What finish() did when the loop ended during a trial, and what to do."""
    at = f" at step {committed}" if committed is not None else ""
    state = f"the state before the range test{at}" if sweep else f"the stage snapshot{at}"
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
        f"rate {lr:.3g}; the steps since were discarded. {fix}"
    )


class NonFiniteRun:
    """The latest run of non-finite training losses: since which step, how many, and the
    highest and lowest rates they were taken at (None while the last loss was finite)."""

    def __init__(self) -> None:
        self.run: tuple[int, int, float, float] | None = None  # since, count, high, low

    def note(self, first: int, values: list[float], lrs: list[float]) -> None:
        """Adds the losses of steps ``first``, ``first + 1``, ... taken at rates ``lrs``."""
        for offset, (value, lr) in enumerate(zip(values, lrs)):
            if math.isfinite(value):
                self.run = None
                continue
            since, count, high, low = self.run or (first + offset, 0, lr, lr)
            self.run = (since, count + 1, max(high, lr), min(low, lr))

    def divergence_message(self, failure: str, committed: int | None, rollbacks: int) -> str:
        """The controller's failure, with the likely cause and where the weights are.

        Args:
            failure: The controller's failure.
            committed: The step the last committed state was saved at (None: unknown).
            rollbacks: The rollbacks a failure takes (``Config.max_rollbacks + 1``).
        """
        where = (
            f"The weights hold the last committed state (the one saved at step {committed})."
            if committed is not None
            else "The weights hold the last committed state."
        )
        if self.run is not None and self.run[1] >= rollbacks:
            since, count, high, low = self.run
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
