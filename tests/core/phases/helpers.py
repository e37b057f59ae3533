"""Building a phase alone: a context with a run, the default plug-ins and an event log."""

from __future__ import annotations

import numpy as np

from autolrs.core import Config
from autolrs.core.actions import SetLR
from autolrs.core.phases.base import Context, PendingEvents
from autolrs.core.planning import first_tau
from autolrs.core.run import Run, TauPlan
from autolrs.core.space import SearchSpace
from autolrs.core.strategies import forecaster_factory, searcher_factory


def context(
    config: Config | None = None,
    *,
    total_steps: int | None = None,
    lr_range: tuple[float, float] | None = None,
    validation: bool = False,
    seed: int = 0,
) -> Context:
    config = config or Config.stagewise()
    tau = first_tau(config, total_steps)
    run = Run(
        taus=TauPlan(tau, int(round(tau * config.tau_max_factor))),
        space=SearchSpace(None if lr_range is None else list(lr_range)),
    )
    run.started = True
    return Context(
        config,
        total_steps,
        validation,
        run,
        np.random.default_rng(seed),
        searcher_factory(config),
        forecaster_factory(config),
        PendingEvents(),
    )


def rate(actions) -> float | None:
    """The last rate the actions set (None: none)."""
    rates = [a.lr for a in actions if isinstance(a, SetLR)]
    return rates[-1] if rates else None


def events(ctx: Context, name: str) -> list[dict]:
    return [e for e in ctx.events.pending if e["event"] == name]
