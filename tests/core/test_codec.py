"""The state codec (``autolrs.core.codec``): dataclasses to JSON-safe dicts and back."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest

from autolrs.core import codec
from autolrs.core.level import CommittedLevel
from autolrs.core.overfitting import OverfitGuard
from autolrs.core.phases.stage import TrialPlan, TrialResult, Winner
from autolrs.core.run import Run, TauPlan
from autolrs.core.space import SearchSpace


@dataclass
class _Inner:
    a: int
    b: float | None = None


@dataclass
class _Outer:
    inner: _Inner
    items: list[_Inner] = field(default_factory=list)
    pair: tuple[float, ...] = ()
    maybe: _Inner | None = None
    renamed: bool = codec.key("was_called", default=False)
    added: list[float] = codec.since([1.0], default_factory=list)
    flat: _Inner = codec.inline(default_factory=lambda: _Inner(7))
    free: dict = field(default_factory=dict)


def test_a_nested_dataclass_round_trips_in_field_order():
    obj = _Outer(_Inner(1, math.inf), [_Inner(2), _Inner(3, math.nan)], (0.5, 2), None, True,
                 [3.0], _Inner(4, -math.inf), {"k": [1, None]})
    data = codec.to_dict(obj)
    assert list(data) == ["inner", "items", "pair", "maybe", "was_called", "added", "a", "b",
                          "free"]
    assert data["pair"] == [0.5, 2] and data["b"] == -math.inf
    again = codec.from_dict(_Outer, json.loads(json.dumps(data)))
    assert codec.to_dict(again) == json.loads(json.dumps(data))
    assert again.pair == (0.5, 2) and isinstance(again.pair[1], int)  # an int stays an int
    assert math.isnan(again.items[1].b) and again.inner.b == math.inf


def test_an_old_state_reads_the_since_default_and_a_missing_key_is_an_error():
    data = codec.to_dict(_Outer(_Inner(1)))
    del data["added"]
    assert codec.from_dict(_Outer, data).added == [1.0]
    del data["inner"]
    with pytest.raises(KeyError):
        codec.from_dict(_Outer, data)
    assert "inner" not in codec.fields_from(_Outer, data, partial=True)


def test_a_value_that_cannot_be_saved_is_an_error():
    with pytest.raises(TypeError):
        codec.to_dict(_Outer(_Inner(1), free={"x": object()}))


def test_the_run_keeps_its_keys_and_order():
    guard = OverfitGuard(recent_validation=[0.5, math.nan])
    run = Run(taus=TauPlan(10, 40), step=3, lr=0.1, level=CommittedLevel([1.0, 2.0], 1.5),
              space=SearchSpace([1e-3, 1.0]), overfit=guard)
    data = run.to_dict()
    assert list(data) == [
        "started", "step", "lr", "stage", "taus", "last_lr", "rollbacks", "failure", "level",
        "space", "default_lr", "best_validation", "train_at_best", "validation_rises",
        "recent_validation", "smoothed_best", "best_step", "warmed_up", "held_lr", "discarded",
        "ramped",
    ]  # the overfitting guard's six keys, inline, then the rest (warmed_up followed them)
    assert data["taus"] == {"nominal": 10, "maximum": 40, "stages_at_max": 0}
    again = Run.from_dict(json.loads(json.dumps(data)))
    assert json.dumps(again.to_dict()) == json.dumps(data)


def test_a_run_saved_before_the_later_fields_reads_their_defaults():
    data = Run(taus=TauPlan(10, 40)).to_dict()
    for name in ("best_validation", "train_at_best", "validation_rises", "warmed_up",
                 "recent_validation", "smoothed_best", "best_step", "held_lr", "discarded",
                 "ramped"):
        del data[name]
    assert Run.from_dict(data) == Run(taus=TauPlan(10, 40))
    del data["step"]
    with pytest.raises(KeyError):
        Run.from_dict(data)


def test_the_stage_plan_round_trips_and_old_plans_lack_anneal_and_ramp():
    plan = TrialPlan(20, 3, 100, "train", None, 2, 40, 5, 1e-3, 1.0, ramp_steps=4)
    assert TrialPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    old = {k: v for k, v in plan.to_dict().items() if k not in ("anneal_steps", "ramp_steps")}
    assert TrialPlan.from_dict(old) == TrialPlan(20, 3, 100, "train", None, 0, 40, 5, 1e-3, 1.0)
    result = TrialResult(0, 0.1, None, True, "nan", False, 7, 3, None, None)
    assert TrialResult.from_dict(result.to_dict()) == result
    assert Winner.from_dict(Winner(1, 5, True).to_dict()) == Winner(1, 5, True)
