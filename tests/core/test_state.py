"""The controller's saved state: version 2 round trips, and the one migration from version 1.

The version-1 fixtures (``golden/v1-states.json``, written by the controller before it was split
into phases) must load and continue exactly as their recorded traces do: ``test_golden.py``
checks that for all 14; here the migration's edges.
"""

from __future__ import annotations

import copy
import json

import pytest

from autolrs import StateDictError
from autolrs.core import Config, StageController
from autolrs.core.state import VERSION, upgrade_v1
from autolrs.testing import NoisyQuadratic, drive
from tests.core.test_golden import _matches
from tests.core.golden.scenarios import SCENARIOS, as_lines, run, states_path

V1 = {p["what"]: p for p in json.loads(states_path().read_text(encoding="utf-8"))}


def _resumed(point, state) -> list[str]:
    """The scenario's whole trace, resumed from ``state`` at the point's step."""
    scenario = SCENARIOS[point["scenario"]]
    driver = run(scenario, point["steps"])
    driver.controller = StageController()
    driver.controller.load_state_dict(state)
    driver.run(scenario.steps - point["steps"])
    return as_lines(driver.trace)


def _resumes_as_the_full_state(point, state):
    """Whether ``state`` (a fixture with keys removed) resumes exactly as the fixture itself,
    in this process. That the fixture resumes as recorded is ``test_golden.py``'s check, made
    with the recording machine's kernels; comparing two runs of this process keeps this one
    free of the CPU's rounding (the paper preset's proposals part on AVX-512 kernels)."""
    return _matches(_resumed(point, copy.deepcopy(point["state"])), _resumed(point, state))


def test_the_controller_writes_version_2_with_run_and_phase_state():
    ctrl = StageController(total_steps=300, seed=0)
    ctrl.start()
    state = json.loads(json.dumps(ctrl.state_dict()))
    assert state["version"] == VERSION == 2
    assert set(state) == {"version", "config", "total_steps", "validation", "rng", "state"}
    assert set(state["state"]) == {"run", "phase", "phase_state"}
    assert state["state"]["phase"] == "range_test"


def test_a_state_saved_before_start_resumes_the_start():
    ctrl = StageController(total_steps=300, seed=3)
    state = ctrl.state_dict()
    assert state["state"]["phase_state"] is None
    resumed = StageController()
    resumed.load_state_dict(state)
    a = drive(resumed, NoisyQuadratic(seed=1), 300)
    b = drive(StageController(total_steps=300, seed=3), NoisyQuadratic(seed=1), 300)
    assert a.lrs == b.lrs


def test_upgrading_a_version_1_state_gives_what_the_upgraded_controller_writes():
    point = V1["exploit phase, after its checkpoint"]
    ctrl = StageController()
    ctrl.load_state_dict(copy.deepcopy(point["state"]))
    upgraded = upgrade_v1(copy.deepcopy(point["state"]))
    assert "converged_decades" in upgraded["config"]  # deleted since: Config.from_dict drops it
    upgraded["config"] = Config.from_dict(upgraded["config"]).to_dict()
    assert json.loads(json.dumps(ctrl.state_dict())) == json.loads(json.dumps(upgraded))


def test_a_version_1_state_from_before_exploit_checkpoints_still_resumes():
    # States written before exploit checkpoints existed lack checkpoint_step; before the
    # exploit's half-way point it equals the exploit's start.
    point = V1["paper preset, exploit phase"]
    state = copy.deepcopy(point["state"])
    assert state["state"]["exploit"]["checkpoint_step"] == state["state"]["exploit"]["start_step"]
    del state["state"]["exploit"]["checkpoint_step"]
    del state["state"]["exploit"]["lift"]
    assert _resumes_as_the_full_state(point, state)


def test_a_version_1_state_from_before_the_warmup_and_sweep_retries_still_resumes():
    point = V1["range test, mid-sweep"]
    state = copy.deepcopy(point["state"])
    del state["state"]["warmup"]
    for key in ("origin", "first_index", "retries", "refined"):
        del state["state"]["range_test"][key]
    assert _resumes_as_the_full_state(point, state)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("searcher"), r"misses key\(s\) \['searcher'\]"),
        (lambda s: s["state"].pop("plan"), r"misses field\(s\) \['plan'\]"),
        (lambda s: s["state"].update(phase="bogus"), "unknown phase 'bogus'"),
        (lambda s: s.update(version=0), "version 0"),
    ],
    ids=["no searcher", "no plan", "unknown phase", "version 0"],
)
def test_a_broken_version_1_state_is_refused_with_what_is_wrong(mutate, match):
    state = copy.deepcopy(V1["first trial of stage 1"]["state"])
    mutate(state)
    with pytest.raises(StateDictError, match=match):
        StageController().load_state_dict(state)


def test_a_malformed_version_2_phase_state_is_refused():
    ctrl = StageController(lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    state = ctrl.state_dict()
    del state["state"]["phase_state"]["trial"]
    with pytest.raises(StateDictError, match="phase 'trial' is malformed"):
        StageController().load_state_dict(state)


def test_the_saved_config_and_budget_replace_the_constructors():
    ctrl = StageController(Config.paper(), total_steps=700, validation=True, seed=0)
    ctrl.start()
    resumed = StageController(Config.stagewise(), total_steps=5)
    resumed.load_state_dict(ctrl.state_dict())
    assert resumed.config == Config.paper() and resumed.total_steps == 700 and resumed.validation


def test_a_config_saved_before_a_field_existed_keeps_its_old_behaviour():
    ctrl = StageController(Config(), total_steps=3000, validation=True, seed=0)
    ctrl.start()
    state = ctrl.state_dict()
    del state["config"]["first_trial_fraction"]  # as saved before the field was added
    resumed = StageController()
    resumed.load_state_dict(state)
    assert resumed.config.first_trial_fraction is None  # trial_fraction, as it then ran
    assert resumed.config == Config(first_trial_fraction=None)
