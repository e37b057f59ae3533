"""run_autolrs: the autolrs training loop the methods and the studies share."""

from __future__ import annotations

import pytest

from autolrs.bench.autolrs_runner import run_autolrs
from autolrs.bench.harness import run_method
from autolrs.bench.workloads import get_workload
from autolrs.core.config import Config


@pytest.mark.parametrize("ramp", [True, False], ids=["small-budget ramp", "range test"])
def test_run_autolrs_charges_every_step_and_records_the_scheduler(ramp):
    work = get_workload("digits")
    budget = 150
    config = Config() if ramp else Config(small_budget_ramp=None)
    res = run_method(
        lambda ctx: run_autolrs(ctx, config), work, "autolrs-study", seed=0, budget=budget
    )
    assert res.steps == budget
    info = res.extra["autolrs"]
    assert info["decisions"] and info["candidates"]
    if ramp:  # at 150 steps the default ramps instead of testing the range
        assert info["range_test"] is None and info["accounting"]["range_test"] == 0
    else:
        assert info["range_test"] is not None and info["lr_range"] == info["range_test"][2:]
    assert sum(info["accounting"].values()) == budget
    assert info["val_fn_calls"] >= info["val_calls"] >= 0
    assert info["controller_seconds"] >= 0 and info["val_seconds"] >= 0


def test_run_autolrs_uses_a_given_lr_range_without_a_range_test():
    work = get_workload("digits")
    res = run_method(
        lambda ctx: run_autolrs(ctx, Config(small_budget_ramp=None), lr_range=(1e-3, 1e-1)),
        work, "x", 0, budget=150,
    )
    info = res.extra["autolrs"]
    assert info["range_test"] is None and info["accounting"]["range_test"] == 0
    assert info["lr_range"] == [1e-3, 1e-1]
