"""The controller's decisions, pinned: every recorded trace must be reproduced exactly.

See ``tests/core/golden/scenarios.py`` for what is recorded and how to regenerate it (only for an
intended behaviour change, said so in the commit).
"""

from __future__ import annotations

import gzip
import json

import pytest

from tests.core.golden.scenarios import (
    FILES, SCENARIOS, as_lines, continuations_path, read, resume_v1, run, states_path,
)

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
with gzip.open(continuations_path(), "rt", encoding="utf-8") as _fh:
    CONTINUATIONS = {json.loads(line)["what"]: json.loads(line)["trace"] for line in _fh}


@pytest.mark.parametrize("point", STATES, ids=[p["what"] for p in STATES])
def test_a_version_1_state_resumes_as_recorded(point):
    """A state saved by the version-1 controller loads and goes on as recorded. Where today's
    controller decides as it did when the state was saved (every paper-preset state, and the
    stagewise states saved before its first search), that is the uninterrupted trace itself."""
    actual = resume_v1(point)
    expected = CONTINUATIONS[point["what"]]
    assert actual == expected, _first_difference(expected, actual)
    scenario = SCENARIOS[point["scenario"]]
    if scenario.preset == "paper" or point["steps"] <= _FIRST_SEARCH_STEP:
        whole = RECORDED[scenario.name]
        assert actual == whole[len(whole) - len(actual):]


_FIRST_SEARCH_STEP = 33  # the stagewise scenarios' first GP proposal comes after this step
