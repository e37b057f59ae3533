"""Where a stage's trials search and how its winner is chosen: the stage's plan, its search
interval and searcher, the rate the first stage starts from, and the selection rule the trials
and exploit phases share. The trials themselves run in :mod:`autolrs.core.phases.trials`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autolrs.core._rng import spawn
from autolrs.core.config import Config
from autolrs.core.expand import PROGRESS_SHARE, ExpandSearcher, grid_point
from autolrs.core.phases.base import Context
from autolrs.core.phases.stage import TrialPlan, TrialResult
from autolrs.core.planning import StagePlan, decay_length, plan_stage, stage_trial_fraction
from autolrs.core.search import Searcher
from autolrs.core.selection import select

__all__ = [
    "anchored_rate",
    "anchored_start",
    "choose",
    "eligible",
    "expand_center",
    "first_center",
    "first_stage_searches",
    "held_first",
    "incumbent_rule",
    "new_searcher",
    "optimizer_lr",
    "plan_trials",
    "range_anchor",
    "restore_searcher",
    "stage_candidates",
    "start_rate_said",
]


def optimizer_lr(ctx: Context) -> float | None:
    """The optimizer's own rate when the first stage tries it first (``Config.try_optimizer_lr``):
    only before any stage committed, and only below half a rate known to break training."""
    run = ctx.run
    if not ctx.config.try_optimizer_lr or run.last_lr is not None or run.default_lr is None:
        return None
    return float(run.default_lr) if run.space.admits(run.default_lr) else None


def held_first(ctx: Context) -> float | None:
    """The rate a first stage that holds trains at (before any commit, with
    ``Config.try_optimizer_lr``): the optimizer's own, or, when the range test found it
    unusable, the nearest usable rate (:meth:`SearchSpace.start_rate`))."""
    cfg, run = ctx.config, ctx.run
    user = optimizer_lr(ctx)
    if user is not None or not cfg.try_optimizer_lr or run.space.range is None:
        return user
    smooth = cfg.expand_factor is not None
    start = run.space.start_rate(run.default_lr, cfg.range_test_bounds[1], smooth=smooth)
    return run.space.pick(cfg.range_test_bounds[1]) if start is None else start


def anchored_rate(ctx: Context) -> float | None:
    """The rate the first stage held (the optimizer's own, or the range's pick when that one
    is unusable) when the next (or running) search follows it and looks only above it
    (``Config.search_upward``); None otherwise."""
    cfg, run = ctx.config, ctx.run
    previous = run.last_lr
    if not (cfg.search_upward and cfg.try_optimizer_lr and cfg.stage_candidates):
        return None
    if ctx.total_steps is None or previous is None:
        return None
    # The rate recorded when it was held (a state saved before it was recorded: the optimizer's).
    held = run.held_lr if run.held_lr is not None else run.default_lr
    if held is not None and math.isclose(previous, held, rel_tol=1e-9):
        return previous
    return None


def expand_center(ctx: Context, candidates: int) -> float | None:
    """The rate a search of ``candidates`` expands from (``Config.expand_factor``, with a
    budget): the last committed rate; before any commit, :func:`first_center` (one step below
    the range test's pick, or the optimizer's rate made usable) or, when a first stage that
    held it ended worse than it started, half of it. None when the search is not an expanding
    one.

    The first search starts at the nearest point of a fixed grid
    (:func:`~autolrs.core.expand.grid_point`: the powers of ``Config.expand_factor``, inside
    the usable rates, :func:`_usable`), so that which rates it tries does not depend on where
    between two points the rate it starts from happened to lie: on digits
    (tuned 0.1; 0.2 breaks the net within a hundred steps) a grid through 0.05 tries 0.158,
    through 0.2 tries 0.632 and 0.2, and from such starts the medians at 400 steps were
    0.077-0.102 against 0.051-0.057 from starts on the grid through 0.1."""
    cfg, run = ctx.config, ctx.run
    if cfg.expand_factor is None or candidates <= 1:
        return None
    if ctx.total_steps is None or not cfg.try_optimizer_lr:
        return None
    if run.last_lr is not None:
        return run.last_lr
    if run.held_lr is not None:
        return run.held_lr / 2.0
    return first_center(ctx)


def first_center(ctx: Context) -> float | None:
    """Where the first expanding search starts (before any commit): the point of the grid
    nearest :func:`range_anchor` or else the optimizer's rate made usable (:func:`held_first`);
    None without ``Config.expand_factor`` or without a rate to start from."""
    cfg = ctx.config
    start = range_anchor(ctx)
    if start is None:
        start = held_first(ctx)
    if start is None or cfg.expand_factor is None:
        return None
    return grid_point(start, cfg.expand_factor, *_usable(ctx))


def anchored_start(ctx: Context) -> float | None:
    """Where the first search will start when the range test places it (:func:`range_anchor`):
    what the range test's event reports. None when it does not: no search fits the budget, the
    first stage holds a rate, or there is no anchor."""
    if ctx.run.last_lr is not None or ctx.run.held_lr is not None or range_anchor(ctx) is None:
        return None
    plan = _sized_plan(ctx)
    return None if plan is None else expand_center(ctx, plan.candidates)


def range_anchor(ctx: Context) -> float | None:
    """One ``Config.expand_factor`` step below the pick of the range the range test found
    (:meth:`SearchSpace.pick`), with ``Config.expand_from_range``: the first search starts there
    whatever the optimizer's rate. None when the range was given, the sweep's loss did not fall
    clearly below its start (its lowest point is noise, even where it diverged:
    :attr:`SearchSpace.placed`) or the option is off.

    Why not the optimizer's rate: the issue's users built it 1/100 to 10 times the rate a tuned
    cosine uses, and a search from there ended where it started on some seeds and not others;
    the range test's pick lay 1 to 18 times above the tuned rate on the five benchmark
    workloads, so one step below it the search has at most a few steps to go either way."""
    cfg, space = ctx.config, ctx.run.space
    if not cfg.expand_from_range or cfg.expand_factor is None or not space.placed:
        return None  # (only the range test's sweep sets ``placed``, and only when it fell)
    return space.pick(cfg.range_test_bounds[1]) / cfg.expand_factor


def _usable(ctx: Context) -> tuple[float, float]:
    """The rates an expanding search may try at all: not below the range the range test found
    (when it found one: else the sweep's start), not above half a rate known to break training,
    inside a range the user gave."""
    cfg, space = ctx.config, ctx.run.space
    low = space.floor if space.floor is not None else cfg.range_test_bounds[0]
    high = space.ceiling
    if space.range is not None and not space.auto:  # a range the user gave is a bound
        low, high = max(low, space.range[0]), min(high, space.range[1])
    return low, high


def _expand_interval(ctx: Context, center: float) -> tuple[float, float]:
    """Where an expanding search may reach: ``expand_steps`` steps either way of ``center``
    (the first search, before any commit, upward one more, for the probe of
    :meth:`ExpandSearcher._probes`), inside the usable rates (:func:`_usable`)."""
    cfg = ctx.config
    assert cfg.expand_factor is not None  # only for an expanding search
    reach = cfg.expand_factor**cfg.expand_steps
    probe = cfg.expand_factor if ctx.run.last_lr is None else 1.0
    usable_low, usable_high = _usable(ctx)
    low, high = max(center / reach, usable_low), min(center * reach * probe, usable_high)
    return min(low, center), max(high, center)


def choose(ctx: Context, healthy: list[TrialResult], searcher: Searcher) -> TrialResult:
    """The stage's winner among ``healthy``: an expanding search's own choice
    (:meth:`~autolrs.core.expand.ExpandSearcher.choose`), else
    :func:`~autolrs.core.selection.select` under :func:`incumbent_rule`."""
    if isinstance(searcher, ExpandSearcher):
        return searcher.choose(healthy)
    return select(healthy, **incumbent_rule(ctx))


def incumbent_rule(ctx: Context) -> dict[str, float | None]:
    """The keyword arguments of :func:`~autolrs.core.selection.select` for this stage: keep the
    held rate within ``keep_incumbent_within`` in an anchored search, else prefer larger rates
    within ``prefer_larger_within``."""
    held = anchored_rate(ctx)
    if held is not None and ctx.config.keep_incumbent_within is not None:
        return {"incumbent": held, "keep_incumbent_within": ctx.config.keep_incumbent_within}
    return {"prefer_larger_within": ctx.config.prefer_larger_within}


def _search_interval(ctx: Context) -> tuple[float, float]:
    """Where the next stage searches.

    The range, narrowed to the trust region around the previous stage's rate. A range the range
    test found is a guess, so the trust region may reach past it (never above half a rate known
    to break training); before any commit the range reaches up to the optimizer's rate when the
    first stage tries it.
    """
    cfg, run = ctx.config, ctx.run
    low, high = run.space.around(run.last_lr, cfg.trust_region)
    previous, factor, space = run.last_lr, cfg.trust_region, run.space
    staged = cfg.stage_candidates and ctx.total_steps is not None
    if space.auto and previous is not None and factor is not None and staged:
        ceiling = math.inf if space.cap is None else space.cap / 2.0
        if previous / factor < ceiling:
            low, high = previous / factor, min(previous * factor, ceiling)
    user = optimizer_lr(ctx)
    if user is not None:
        high = max(high, user)
    if anchored_rate(ctx) is not None and factor is not None:
        assert previous is not None  # an anchored search follows a held rate
        # Holding the user's own rate: only larger rates are tried (see Config.search_upward).
        ceiling = math.inf if space.cap is None else space.cap / 2.0
        bound = math.inf if space.auto else space.bounds[1]
        top = min(previous * factor, ceiling, bound)
        if top > previous * 1.01:
            low, high = previous, top
    return low, high


def stage_candidates(config: Config, stage: int, *, budgeted: bool, holds_rate: bool) -> int:
    """k, the candidates stage ``stage`` (0 for the first) tries.

    Args:
        config: The method's settings (``candidates``, ``later_candidates``,
            ``stage_candidates``).
        stage: The stage's index.
        budgeted: Whether the run has a step budget (``stage_candidates`` needs one).
        holds_rate: Whether there is a rate to hold (a committed one, the optimizer's or the
            range's pick); without one a single-candidate stage tries ``candidates`` instead.

    Returns:
        The number of candidates.
    """
    k = config.later_candidates if stage >= 1 and config.later_candidates else config.candidates
    if config.stage_candidates and budgeted:
        k = config.stage_candidates[min(stage, len(config.stage_candidates) - 1)]
        if k == 1 and not holds_rate:
            k = config.candidates  # nothing to hold: no optimizer rate and no range
    return k


def plan_trials(ctx: Context) -> TrialPlan | None:
    """The next stage's trials, fitted inside the budget (None: no stage fits any more)."""
    cfg, run = ctx.config, ctx.run
    plan = _sized_plan(ctx)
    if plan is None:
        return None
    mode = "train"
    if ctx.validation and cfg.objective != "train":
        paper_switch = cfg.objective == "paper" and run.taus.stages_at_max < 1
        mode = "train" if paper_switch else "validation"
    trial_steps = plan.trial_steps
    anneal = 0
    if cfg.anneal_fraction is not None and plan.candidates > 1:
        anneal = min(trial_steps - 1, max(2, int(round(cfg.anneal_fraction * trial_steps))))
    val_every = None
    if mode == "validation":
        # Evaluate every val_every steps; a trial ends on an evaluation. An annealed trial is
        # judged by one evaluation at its end.
        val_every = trial_steps if anneal else max(1, trial_steps // cfg.val_points)
        trial_steps = (trial_steps // val_every) * val_every
    # The reference code forecasts a validation series at int(tau / val_every) evaluations.
    horizon = plan.tau if val_every is None else plan.tau // val_every
    center = expand_center(ctx, plan.candidates)
    low, high = _search_interval(ctx) if center is None else _expand_interval(ctx, center)
    ramp = 0
    if center is not None and run.last_lr is None and run.held_lr is None and anneal:
        ramp = min(max(1, int(round(trial_steps / 3))), trial_steps - anneal - 1)
    return TrialPlan(
        trial_steps, plan.candidates, plan.tau, mode, val_every, anneal, horizon, run.step, low,
        high, max(ramp, 0),
    )


def _sized_plan(ctx: Context) -> StagePlan | None:
    """The stage's length and candidates, fitted inside the budget and the discard budget."""
    cfg, run = ctx.config, ctx.run
    remaining = None
    if ctx.total_steps is not None:
        remaining = ctx.total_steps - run.step - decay_length(cfg, ctx.total_steps)
    holds = run.last_lr is not None or held_first(ctx) is not None
    stage = _searches_done(ctx)
    k = stage_candidates(cfg, stage, budgeted=ctx.total_steps is not None, holds_rate=holds)
    share = stage_trial_fraction(cfg, stage)
    plan = plan_stage(cfg, run.taus.nominal, run.taus.maximum, remaining, k, share)
    affordable = None if plan is None else _affordable(ctx, plan.trial_steps)
    if plan is not None and affordable is not None and affordable < plan.candidates:
        return plan_stage(cfg, run.taus.nominal, run.taus.maximum, remaining, affordable, share)
    return plan


def _searches_done(ctx: Context) -> int:
    """The stages done, counting a ramp that stood in for the first search
    (``Config.small_budget_ramp``: the stage after it holds where it settled) as one."""
    cfg, run = ctx.config, ctx.run
    return run.stage + int(run.ramped and cfg.ramp_segment_fraction is None)


def _affordable(ctx: Context, trial_steps: int) -> int | None:
    """How many candidates the rest of ``Config.discard_budget`` pays for (all but one trial of
    a stage are thrown away), at least one; None without a discard budget."""
    cfg, run = ctx.config, ctx.run
    if cfg.discard_budget is None or ctx.total_steps is None:
        return None
    left = cfg.discard_budget * ctx.total_steps - run.discarded
    return 1 + max(0, int(left // trial_steps))


def first_stage_searches(ctx: Context) -> bool:
    """Whether the first stage is an expanding search, whose trials warm up on their own (so
    no warm-up comes before it): ``Config.expand_factor`` with a budget and a first stage of
    several candidates."""
    cfg = ctx.config
    staged = bool(cfg.stage_candidates) and cfg.stage_candidates[0] > 1  # type: ignore[index]
    return (
        cfg.expand_factor is not None and cfg.try_optimizer_lr and staged
        and ctx.total_steps is not None
    )


def eligible(results: list[TrialResult], searcher: Searcher) -> list[TrialResult]:
    """The healthy candidates that may win: with an expanding search, not one that broke
    training (:meth:`~autolrs.core.expand.ExpandSearcher.broke`: it ended clearly above the
    stage's start) nor one at the edge of stability
    (:meth:`~autolrs.core.expand.ExpandSearcher.at_edge`) while another is left."""
    healthy = [r for r in results if not r.diverged]
    if not isinstance(searcher, ExpandSearcher):
        return healthy
    unbroken = [r for r in healthy if not searcher.broke(r.lr)]
    inside = [r for r in unbroken if not searcher.at_edge(r.lr)]
    return inside or unbroken or healthy


def start_rate_said(ctx: Context) -> dict[str, Any] | None:
    """Before the first stage in a range the user gave (the range test says it otherwise): the
    ``start_rate`` event's fields when the optimizer's rate lies outside it (None: nothing to
    say)."""
    cfg, run = ctx.config, ctx.run
    if run.last_lr is not None or run.held_lr is not None or run.space.auto:
        return None
    if not cfg.try_optimizer_lr or run.default_lr is None or run.space.range is None:
        return None
    reason = run.space.why_not(run.default_lr)
    if reason is None:
        return None
    start = run.space.start_rate(run.default_lr, cfg.range_test_bounds[1],
                                 smooth=cfg.expand_factor is not None)
    return {"optimizer_lr": run.default_lr, "start_lr": start, "start_reason": reason}


def new_searcher(ctx: Context, plan: TrialPlan) -> Searcher:
    """A fresh searcher over the plan's interval: an
    :class:`~autolrs.core.expand.ExpandSearcher` from the rate the stage expands from
    (``Config.expand_factor``), else the configured one."""
    cfg, center = ctx.config, expand_center(ctx, plan.candidates)
    if center is None:
        return ctx.make_searcher(plan.search_low, plan.search_high, spawn(ctx.rng))
    assert cfg.expand_factor is not None  # expand_center says so
    # From near the initial model: both ways, progress counts. Later (after a commit, or after a
    # ramp, which trained through the rates below), only upward.
    first = ctx.run.last_lr is None
    return ExpandSearcher(
        center, plan.search_low, plan.search_high, factor=cfg.expand_factor,
        max_steps=cfg.expand_steps, margin=cfg.expand_margin, reference=_start_level(ctx, plan),
        progress_share=PROGRESS_SHARE if first else None, up_only=not first,
    )


def _start_level(ctx: Context, plan: TrialPlan) -> float | None:
    """The loss where a stage's trials start, on the scale they are scored on: the committed
    training-loss level; None in validation mode, where the trials phase measures it
    (``Trials.measuring``)."""
    if plan.mode == "validation":
        return None
    recent = [v for v in ctx.run.level.recent if math.isfinite(v)]
    return float(np.median(recent[-4:])) if recent else ctx.run.level.reference


def restore_searcher(ctx: Context, plan: TrialPlan, state: dict[str, Any]) -> Searcher:
    """The stage's searcher rebuilt from its saved state."""
    if state.get("kind") == ExpandSearcher.kind:
        return ExpandSearcher.from_state(state)
    searcher = ctx.make_searcher(plan.search_low, plan.search_high, None)
    searcher.load_state_dict(state)
    return searcher
