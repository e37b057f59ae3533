"""The presets' field values: what :meth:`Config.paper`, :meth:`Config.ramp`,
:meth:`Config.upward` and :meth:`Config.stagewise` change from ``Config()`` (:mod:`autolrs.core.config`)."""

from __future__ import annotations

from typing import Any

_PAPER: dict[str, Any] = {
    "tau": 1000,
    "tau_fraction": 1.0 / 30.0,
    "trial_fraction": 0.1,
    "first_trial_fraction": None,
    "range_test_fraction": 0.05,
    "candidates": 10,
    "later_candidates": None,
    "stage_candidates": None,
    "start_at_previous": False,
    "try_optimizer_lr": False,
    "search_upward": False,
    "keep_incumbent_within": None,
    "expand_factor": None,
    "tau_growth": 2.0,
    "tau_max_factor": 8.0,
    "acquisition": "lcb",
    "kappa": 1e6,
    "initial_random": 1,
    "gp_restarts": 0,
    "searcher": "paper",
    "warm_start": False,
    "trust_region": None,
    "select": "observed",
    "diverged_value": "penalty",
    "objective": "paper",
    "val_points": 16,
    "forecaster": "paper",
    "keep_winner": False,
    "divergence_factor": None,
    "early_stop_fraction": None,
    "anneal_fraction": None,
    "prefer_larger_within": None,
    "edge_shift": None,
    "stage_guard": None,
    "overfit_guard": None,
    "min_trial_steps": 5,
    "final_decay_fraction": 0.0,
    "warmup_fraction": 0.0,
    "discard_budget": None,
    "small_budget_ramp": None,
}
"""The reference values :meth:`Config.paper` sets (every other field keeps its default)."""

_RAMP: dict[str, Any] = {
    "stage_candidates": (6, 3, 1),  # as measured (the default's second search was dropped later)
    "ramp_segment_fraction": 0.025,
    "first_trial_fraction": None,  # as measured (0.1 of tau, as every later stage)
    "discard_budget": 0.08,
    "small_budget_ramp": None,  # the ramp runs at every budget
    "min_trial_steps": 5,
}
"""What :meth:`Config.ramp` changes from today's default."""

_UPWARD: dict[str, Any] = {
    "expand_factor": None,
    "stage_candidates": (1, 3, 1),
    "trial_fraction": 0.15,
    "first_trial_fraction": None,
    "discard_budget": None,
    "small_budget_ramp": None,
}
"""What :meth:`Config.upward` changes from today's default (the default of version 0.2)."""

_STAGEWISE: dict[str, Any] = {
    "tau_fraction": 1.0 / 30.0,
    "trial_fraction": 0.1,
    "first_trial_fraction": None,
    "stage_candidates": None,
    "try_optimizer_lr": False,
    "search_upward": False,
    "keep_incumbent_within": None,
    "expand_factor": None,
    "objective": "paper",
    "anneal_fraction": None,
    "overfit_guard": None,
    "range_test_fraction": 0.05,
    "final_decay_fraction": 0.2,
    "stage_guard": 2.5,
    "warmup_fraction": 0.0,
    "discard_budget": None,
    "small_budget_ramp": None,
}
"""What :meth:`Config.stagewise` changes from today's default (the default of version 0.1)."""
