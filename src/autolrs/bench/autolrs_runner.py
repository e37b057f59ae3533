"""Running autolrs under the benchmark harness: the training loop every autolrs method shares.

:func:`run_autolrs` trains the workload's model with :class:`~autolrs.torch.scheduler.AutoLRS`
for a given :class:`~autolrs.core.config.Config`, reports every optimizer step to the harness
and records what the scheduler decided and spent in ``ctx.result.extra["autolrs"]``. The
registered methods (:mod:`autolrs.bench.methods`) and the studies in ``benchmarks/studies``
call it with their configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from autolrs.bench.harness import RunContext
from autolrs.core.config import Config
from autolrs.events import step_accounting
from autolrs.torch.scheduler import AutoLRS

__all__ = ["run_autolrs"]


class _TimedValidation:
    """The holdout loss as ``val_fn``, counting its calls and the seconds they take."""

    def __init__(self, evaluate: Callable[[], float]) -> None:
        self.evaluate = evaluate
        self.seconds = 0.0
        self.calls = 0

    def __call__(self) -> float:
        start = time.perf_counter()
        self.calls += 1
        value = self.evaluate()
        self.seconds += time.perf_counter() - start
        return value


def run_autolrs(
    ctx: RunContext, config: Config, lr_range: tuple[float, float] | None = None
) -> None:
    """Trains ``ctx``'s workload with AutoLRS under ``config`` for ``ctx.budget`` steps.

    The optimizer starts at ``ctx.start_lr`` (the workload's default rate when unset); the
    holdout loss is the validation function. Every optimizer step (trials included) is
    reported to ``ctx``; the scheduler's decisions, range test, candidates, step accounting
    and controller and validation seconds land in ``ctx.result.extra["autolrs"]``, even when
    the budget runs out mid-stage.

    Args:
        ctx: The harness's run context (workload, seed, budget).
        config: The AutoLRS configuration to run.
        lr_range: The learning-rate range to search (None: AutoLRS runs its range test).

    Raises:
        BudgetSpent: When the budget is spent (the harness catches it).
    """
    work = ctx.workload
    model = ctx.model()
    start_lr = ctx.start_lr if ctx.start_lr is not None else work.default_lr
    opt = work.make_optimizer(model.parameters(), lr=start_lr)
    val_fn = _TimedValidation(lambda: work.evaluate(model, "holdout")["loss"])
    sched = AutoLRS(
        model,
        opt,
        total_steps=ctx.budget,
        val_fn=val_fn,
        config=config,
        seed=ctx.seed,
        lr_range=lr_range,
    )
    step_seconds = 0.0
    ctx.result.extra["autolrs"] = {}
    try:
        for batch in sched.wrap(ctx.batches()):
            lr = opt.param_groups[0]["lr"]
            loss = work.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            before_val = val_fn.seconds
            start = time.perf_counter()
            sched.step(loss)
            step_seconds += time.perf_counter() - start - (val_fn.seconds - before_val)
            ctx.step(model, loss.detach(), lr, committed=not sched.in_trial, survives=True)
    finally:
        ctx.result.extra["autolrs"] = _record(sched, step_seconds, val_fn)


def _record(sched: AutoLRS, step_seconds: float, val_fn: _TimedValidation) -> dict[str, Any]:
    """What the run's ``extra["autolrs"]`` keeps of the scheduler and its costs."""
    events = sched.events
    return {
        "decisions": [[d["step"], d["lr"]] for d in sched.decisions],
        "lr_range": list(sched.lr_range) if sched.lr_range else None,
        "controller_seconds": step_seconds,
        "val_seconds": val_fn.seconds,
        "val_fn_calls": val_fn.calls,
        "val_calls": sum(
            1 for e in events if e["event"] == "candidate" and e["mode"] == "validation"
        ),
        "rollbacks": sum(1 for e in events if e["event"] == "rollback"),
        "accounting": step_accounting(events),
        "candidates": [
            [e["stage"], e["lr"], e["start"], e["end"], e["forecast"], e["diverged"]]
            for e in events
            if e["event"] == "candidate"
        ],
        "range_test": next(
            (
                [e["start"], e["end"], e["low"], e["high"]]
                for e in events
                if e["event"] == "range_test"
            ),
            None,
        ),
    }
