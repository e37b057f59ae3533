"""Fault injection on a real training run: nothing corrupts the model, nothing is lost."""

from __future__ import annotations


from tests.reliability.faults import KINDS, run_with_faults


def _seeds(config) -> list[int]:
    return list(range(int(config.getoption("--reliability-seeds"))))


def test_injected_faults_are_all_recovered_without_corruption(pytestconfig):
    reports = [run_with_faults(seed) for seed in _seeds(pytestconfig)]
    injected = sum(r.total for r in reports)
    recovered = sum(r.recovered for r in reports)
    corruptions = [c for r in reports for c in r.corruptions]
    kinds = {k for r in reports for k in r.injected}
    print(
        f"\nfault injection: {len(reports)} runs, {injected} faults injected "
        f"({dict(sum((r.injected for r in reports), type(reports[0].injected)()))}), "
        f"{recovered} recovered, {len(corruptions)} corruptions, "
        f"{sum(r.restores_checked for r in reports)} restores and "
        f"{sum(r.snapshots_checked for r in reports)} snapshots checked"
    )
    assert not corruptions, corruptions
    assert recovered == injected
    assert kinds >= set(KINDS) - {"param_nan"} or len(reports) < 2
    for r in reports:
        assert r.steps == 400
    # Training still works through the faults. With a dozen faults in 400 steps (a NaN or
    # interrupt every 30 steps) a run can still lose its first stages to rates at which this
    # small SGD net dies: no corruption, but a lost run. Reported; at most one run in ten (at
    # least one allowed) may end that way (measured: 2 of 30, 0 of 30 without faults).
    collapsed = [(seed, r.final_accuracy) for seed, r in enumerate(reports) if r.final_accuracy <= 0.8]
    print(f"runs below 0.8 accuracy: {collapsed}")
    assert len(collapsed) <= max(1, len(reports) // 10), collapsed
