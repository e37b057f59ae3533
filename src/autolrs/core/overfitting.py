"""The overfitting guard (``Config.overfit_guard``): validation checks while the rate is held
or decays, and the rule that says the model has started to overfit.

With a validation function and a budget, the exploit and final phases evaluate it every
``total_steps / CHECKS`` steps. Each new lowest validation loss is snapshotted (slot ``BEST``).
The model overfits when, at ``RISES`` checks in a row, the validation loss lies more than the
guard's margin above that lowest value *while the training loss lies below its level at that
check*: the gap between them widens. (A validation loss that rises with the training loss, as
after a move to a larger rate, is that rate's noise level, not overfitting.) Then the model goes
back to the ``BEST`` state and the rate decays to zero over ``1 / CHECKS`` of the budget: early
stopping, as a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autolrs.core.phases.base import Context

__all__ = ["CHECKS", "RISES", "check_every", "observe_check"]

CHECKS = 20  # validation checks per budget
RISES = 3  # consecutive checks above the margin that say the model overfits
TRAIN_WINDOW = 8  # training losses averaged into the training level at a check


def check_every(ctx: Context) -> int | None:
    """Steps between two checks (None: the guard is off, or no validation function or budget)."""
    if ctx.config.overfit_guard is None or not ctx.validation or ctx.total_steps is None:
        return None
    return max(1, ctx.total_steps // CHECKS)


def observe_check(ctx: Context, value: float, training: Sequence[float]) -> str | None:
    """Records one check's validation ``value`` with the recent ``training`` losses.

    Returns:
        ``"best"`` (a new lowest value: snapshot it), ``"overfit"`` (the model overfits) or None.
    """
    run, margin = ctx.run, ctx.config.overfit_guard
    assert margin is not None  # checks run only with the guard on
    if not math.isfinite(value):
        return None  # a fault of the validation function, not evidence of overfitting
    recent = list(training[-TRAIN_WINDOW:]) or run.level.recent[-TRAIN_WINDOW:]
    train = float(np.mean(recent)) if recent else math.inf
    verdict = None
    if run.best_validation is None or value < run.best_validation:
        run.best_validation, run.train_at_best = value, train
        run.validation_rises = 0
        verdict = "best"
    elif value > run.best_validation * (1.0 + margin) and (
        run.train_at_best is None or train < run.train_at_best
    ):
        run.validation_rises += 1
    else:
        run.validation_rises = 0
    ctx.emit("validation_check", value=value, best=run.best_validation, rises=run.validation_rises)
    if run.validation_rises >= RISES:
        return "overfit"
    return verdict
