"""The controller's decisions, pinned: every recorded trace must be reproduced exactly.

See ``tests/core/golden/scenarios.py`` for what is recorded and how to regenerate it (only for an
intended behaviour change, said so in the commit).
"""

from __future__ import annotations

import json

import pytest

from autolrs.core import StageController
from tests.core.golden.scenarios import FILES, SCENARIOS, as_lines, read, run, states_path

RECORDED = {name: trace for file in FILES for name, trace in read(file).items()}


def _first_difference(expected: list[str], actual: list[str]) -> str:
    for i, (e, a) in enumerate(zip(expected, actual)):
        if e != a:
            return f"line {i} differs:\n expected {e[:600]}\n actual   {a[:600]}"
    return f"lengths differ: expected {len(expected)} lines, got {len(actual)}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_decision_trace_is_unchanged(name):
    actual = as_lines(run(SCENARIOS[name]).trace)
    expected = RECORDED[name]
    assert actual == expected, _first_difference(expected, actual)


STATES = json.loads(states_path().read_text(encoding="utf-8"))


@pytest.mark.parametrize("point", STATES, ids=[p["what"] for p in STATES])
def test_a_version_1_state_resumes_as_recorded(point):
    scenario = SCENARIOS[point["scenario"]]
    driver = run(scenario, point["steps"])
    resumed = StageController()  # settings come from the state
    resumed.load_state_dict(json.loads(json.dumps(point["state"])))
    driver.controller = resumed
    driver.run(scenario.steps - point["steps"])
    expected = RECORDED[scenario.name]
    actual = as_lines(driver.trace)
    assert actual == expected, _first_difference(expected, actual)
