from __future__ import annotations

import json

import pytest

from autolrs import Config


def test_paper_preset_matches_reference_values():
    cfg = Config.paper()
    assert (cfg.tau, cfg.trial_fraction, cfg.candidates, cfg.tau_max_factor) == (1000, 0.1, 10, 8.0)
    assert (cfg.acquisition, cfg.kappa, cfg.initial_random) == ("lcb", 1e6, 1)
    assert cfg.warm_start is False and cfg.keep_winner is False
    assert cfg.select == "observed" and cfg.diverged_value == "penalty"
    assert cfg.objective == "paper" and cfg.val_points == 16 and cfg.forecaster == "paper"
    assert cfg.divergence_factor is None and cfg.final_decay_fraction == 0.0


def test_default_differs_from_paper_only_in_named_fields():
    diff = Config().diff(Config.paper())
    assert diff, "the default must be our improved method"
    for name in diff:
        assert name in Config.__dataclass_fields__


def test_round_trip_through_json():
    cfg = Config(candidates=5, trust_region=3.0, range_test_bounds=(1e-6, 1.0))
    again = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown Config field"):
        Config.from_dict({"tau": 10, "nonsense": 1})


def test_from_dict_drops_a_deleted_field_that_an_old_state_still_names():
    old = {**Config().to_dict(), "converged_decades": None}
    assert Config.from_dict(old) == Config()
    assert Config.from_dict({**old, "converged_decades": 0.2}) == Config()
    assert "converged_decades" not in Config().to_dict()
    with pytest.raises(TypeError):
        Config(converged_decades=0.2)  # gone from the constructor


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("candidates", 1, "candidates must be an integer >= 2"),
        ("candidates", 2.5, "candidates"),
        ("tau", 0, "tau must be an integer >= 1"),
        ("trial_fraction", 0.0, r"trial_fraction must lie in \(0"),
        ("trial_fraction", 1.5, "trial_fraction"),
        ("first_trial_fraction", 0.0, r"first_trial_fraction must lie in \(0"),
        ("first_trial_fraction", float("nan"), "first_trial_fraction"),
        ("kappa", -1.0, "kappa must be a finite number >= 0"),
        ("kappa", float("nan"), "kappa"),
        ("acquisition", "ucb", "acquisition must be one of"),
        ("objective", "val", "objective must be one of"),
        ("forecaster", "power", "forecaster must be one of"),
        ("trust_region", 1.0, "trust_region must be a finite number > 1"),
        ("divergence_factor", 0.5, "divergence_factor"),
        ("final_decay_fraction", 0.95, "final_decay_fraction"),
        ("range_test_bounds", (1.0, 0.1), "range_test_bounds must be two numbers"),
        ("range_test_bounds", (0.0, 1.0), "range_test_bounds"),
        ("range_test_bounds", (1e-3,), "range_test_bounds"),
        ("val_points", 1, "val_points"),
        ("prefer_larger_within", 1.5, "prefer_larger_within"),
        ("prefer_larger_within", -0.1, "prefer_larger_within"),
        ("anneal_fraction", 0.95, "anneal_fraction"),
        ("range_headroom", 0.0, "range_headroom"),
        ("edge_shift", 1.0, "edge_shift"),
        ("later_candidates", 0, "later_candidates"),
        ("stage_candidates", (3, 0), "stage_candidates"),
        ("stage_candidates", (), "stage_candidates"),
        ("overfit_guard", 0.0, "overfit_guard"),
        ("early_stop_fraction", 1.5, "early_stop_fraction"),
    ],
)
def test_invalid_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match) as info:
        Config(**{field: value})
    assert repr(value) in str(info.value) or field == "range_test_bounds"
