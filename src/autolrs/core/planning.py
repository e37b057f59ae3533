"""Stage lengths: the paper's doubling schedule, fitted inside a step budget when one is known."""

from __future__ import annotations

from dataclasses import dataclass

from autolrs.core.config import Config
from autolrs.core.run import TauPlan

__all__ = [
    "StagePlan",
    "decay_length",
    "first_tau",
    "plan_stage",
    "ramp_fraction",
    "range_test_length",
    "stage_trial_fraction",
    "tau_plan",
    "trial_steps_for",
    "warmup_length",
]


@dataclass(frozen=True)
class StagePlan:
    """How one stage is spent.

    Attributes:
        trial_steps: tau', steps per candidate.
        candidates: k, candidates tried.
        tau: Steps the stage's model advances with the chosen learning rate (the exploit phase;
            with ``keep_winner`` the winner's trial steps count towards it).
    """

    trial_steps: int
    candidates: int
    tau: int

    @property
    def search_steps(self) -> int:
        """Steps spent on trials."""
        return self.trial_steps * self.candidates


def first_tau(config: Config, total_steps: int | None) -> int:
    """The first stage's tau: ``config.tau``, or ``tau_fraction * total_steps`` with a budget."""
    if total_steps is None:
        return config.tau
    return max(config.min_trial_steps, int(round(config.tau_fraction * total_steps)))


def tau_plan(config: Config, total_steps: int | None) -> TauPlan:
    """The stage lengths a run starts with: :func:`first_tau`, growing up to
    ``tau_max_factor`` times it.

    Args:
        config: The method's settings.
        total_steps: The step budget, or None without one.

    Returns:
        The run's first :class:`~autolrs.core.run.TauPlan`.
    """
    tau0 = first_tau(config, total_steps)
    return TauPlan(tau0, max(tau0, int(round(tau0 * config.tau_max_factor))))


def range_test_length(config: Config, total_steps: int | None) -> int:
    """Steps of the learning-rate range test (at most ``range_test_fraction`` of the budget)."""
    if total_steps is None:
        return config.range_test_steps
    share = int(round(config.range_test_fraction * total_steps))
    return max(20, min(config.range_test_steps, share))


def ramp_fraction(
    config: Config, total_steps: int | None, *, range_test: bool = True
) -> float | None:
    """The share of the budget a ramp segment takes (None: no ramp).

    ``ramp_segment_fraction`` at every budget; else ``small_budget_ramp`` where
    ``discard_budget`` cannot pay for the range test (when one would run: ``range_test``) and
    two losing trials of the first search (at the trials' floor, ``min_trial_steps``): the
    ramp keeps its steps where a search would throw them away. Without a budget: None.
    """
    if total_steps is None:
        return None
    if config.ramp_segment_fraction is not None:
        return config.ramp_segment_fraction
    if config.small_budget_ramp is None or config.discard_budget is None:
        return None
    search = 2 * config.min_trial_steps
    if range_test:
        search += range_test_length(config, total_steps)
    return config.small_budget_ramp if config.discard_budget * total_steps < search else None


def decay_length(config: Config, total_steps: int | None) -> int:
    """Steps reserved at the end of the budget for the final decay (0 without a budget)."""
    if total_steps is None or config.final_decay_fraction <= 0:
        return 0
    return int(round(config.final_decay_fraction * total_steps))


def stage_trial_fraction(config: Config, stage: int) -> float:
    """tau' / tau of stage ``stage`` (0: the first): ``first_trial_fraction`` there when it is
    set, else ``trial_fraction``."""
    if stage == 0 and config.first_trial_fraction is not None:
        return config.first_trial_fraction
    return config.trial_fraction


def trial_steps_for(config: Config, tau: int, fraction: float | None = None) -> int:
    """tau' for a given tau: ``fraction`` of it (None: ``config.trial_fraction``)."""
    share = config.trial_fraction if fraction is None else fraction
    return max(config.min_trial_steps, int(round(tau * share)))


def plan_stage(
    config: Config,
    nominal_tau: int,
    tau_max: int,
    remaining: int | None,
    candidates: int | None = None,
    trial_fraction: float | None = None,
) -> StagePlan | None:
    """The next stage's plan, fitted inside ``remaining`` steps.

    A stage that would leave less than half of the following stage's length is stretched to
    absorb the leftover; a stage that does not fit has its exploit phase shortened; when not
    even the trials and one trial's worth of exploitation fit, no stage is planned (None) and
    the caller spends the rest without searching.

    Args:
        config: The method's settings.
        nominal_tau: tau of this stage under the doubling schedule.
        tau_max: The largest tau.
        remaining: Steps left for stages, or None when there is no budget.
        candidates: Candidates of this stage (default ``config.candidates``).
        trial_fraction: tau' / tau of this stage's trials (None: ``config.trial_fraction``).
    """
    trial = trial_steps_for(config, nominal_tau, trial_fraction)
    k = config.candidates if candidates is None else candidates
    tau = nominal_tau
    if remaining is None:
        return StagePlan(trial, k, tau)
    if remaining < k * trial + trial:
        return None
    if k * trial + tau > remaining:
        return StagePlan(trial, k, remaining - k * trial)
    leftover = remaining - (k * trial + tau)
    next_tau = min(int(round(nominal_tau * config.tau_growth)), tau_max)
    next_length = k * trial_steps_for(config, next_tau) + next_tau
    if leftover < next_length / 2:
        tau += leftover
    return StagePlan(trial, k, tau)


def warmup_length(config: Config, total_steps: int | None, target_lr: float | None) -> int:
    """Steps of the warm-up: ``warmup_steps``, else ``warmup_fraction`` of the budget (0 without
    a budget, or without a rate to end at)."""
    if config.warmup_steps > 0:
        return config.warmup_steps if total_steps is None else min(config.warmup_steps, total_steps)
    if total_steps is None or target_lr is None or config.warmup_fraction <= 0:
        return 0
    return int(round(config.warmup_fraction * total_steps))
