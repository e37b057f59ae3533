"""Does a late duel between the held rate and a lower one fix the rate held (issue 19)?

The default holds the first search's pick to the final decay (``stage_candidates = (6, 1)``).
On fashion-cnn that pick is the tuned cosine's peak (0.1), and holding it seemed to trail the
cosine, while holding about half of it seemed to beat it (measured later with
``hold_horizon.py``: holding 0.1 beats the cosine there; ``docs/method.md``). This study
gives the second stage two cooled candidates instead of one: the held rate and ``--factor``
below it, each a trial of the stage's usual length (``trial_fraction`` of its tau) from the
trained model; the held rate stays unless the lower one beats it by ``Config.expand_margin``.
The duel runs only while the steps already discarded plus its losing trial stay within
``--allowance`` of the budget (bar (c) of issue 19), so small budgets, whose search already
spends more, hold as before.

It is a prototype made by replacing two functions of :mod:`autolrs.core.phases.trial_plan`
for the run (the searcher of a later two-candidate stage and the stage's sizing, which then
ignores ``Config.discard_budget``; its runs set that and the small-budget ramp to None, as the
default had them when this study ran), not a configuration of the library. Each run is scored
like the fair suite.

Usage (repository root):

    .venv/bin/python benchmarks/studies/late_duel.py fashion-cnn 1000 0.1 --seeds 5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from autolrs.core import Config
from autolrs.core.expand import ExpandSearcher
from autolrs.core.phases import trial_plan, trials
from autolrs.core.phases.base import Context
from autolrs.core.phases.stage import TrialPlan
from autolrs.core.planning import (
    StagePlan,
    decay_length,
    plan_stage,
    stage_trial_fraction,
    trial_steps_for,
)
from autolrs.core.search import Searcher

sys.path.insert(0, str(Path(__file__).parent))
from start_sweep import summary_line, sweep_start  # noqa: E402  (a sibling study)


@contextmanager
def late_duel(factor: float, allowance: float) -> Iterator[None]:
    """Inside it, every later two-candidate stage is a duel of the held rate and ``factor``
    below it, run only within ``allowance`` of the budget discarded."""
    default_searcher, default_sizing = trials.new_searcher, trial_plan._sized_plan

    def new_searcher(ctx: Context, plan: TrialPlan) -> Searcher:
        held = ctx.run.last_lr
        if held is None or plan.candidates != 2:
            return default_searcher(ctx, plan)
        return ExpandSearcher(
            held, held / factor / 1.01, held, factor=factor, max_steps=1,
            margin=ctx.config.expand_margin, reference=None, progress_share=None,
        )

    def sized_plan(ctx: Context) -> StagePlan | None:
        cfg, run = ctx.config, ctx.run
        assert ctx.total_steps is not None  # the duel needs a budget
        remaining = ctx.total_steps - run.step - decay_length(cfg, ctx.total_steps)
        holds = run.last_lr is not None or trial_plan.held_first(ctx) is not None
        k = trial_plan.stage_candidates(cfg, run.stage, budgeted=True, holds_rate=holds)
        if run.stage >= 1 and k > 1:
            losing = (k - 1) * trial_steps_for(cfg, run.taus.nominal)
            if run.discarded + losing > allowance * ctx.total_steps:
                k = 1
        share = stage_trial_fraction(cfg, run.stage)
        plan = plan_stage(cfg, run.taus.nominal, run.taus.maximum, remaining, k, share)
        if plan is None and k > 1 and run.stage >= 1:
            plan = plan_stage(cfg, run.taus.nominal, run.taus.maximum, remaining, 1)
        return plan

    trials.new_searcher, trial_plan._sized_plan = new_searcher, sized_plan
    try:
        yield
    finally:
        trials.new_searcher, trial_plan._sized_plan = default_searcher, default_sizing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("budget", type=int)
    parser.add_argument("start", type=float, help="the rate the optimizer is built with")
    parser.add_argument("--factor", type=float, default=2.0, help="how far below the duel looks")
    parser.add_argument("--allowance", type=float, default=0.1, help="discarded share allowed")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with late_duel(args.factor, args.allowance):
        out = sweep_start(args.workload, args.budget, args.start, args.seeds,
                          Config(stage_candidates=(6, 2, 1), discard_budget=None,
                                 small_budget_ramp=None))
    print(summary_line(f"{args.workload} B={args.budget} late duel /{args.factor:g}", out),
          flush=True)


if __name__ == "__main__":
    main()
