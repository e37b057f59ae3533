"""The controller as a phase graph: one tell() and its decision, plug-ins passed in as factories,
and every phase's outlook agreeing with what its next steps do."""

from __future__ import annotations

from typing import Any

import pytest

from autolrs.core import (
    Config,
    CurveFit,
    Decision,
    Evaluate,
    Forecaster,
    Loss,
    Losses,
    Restore,
    Searcher,
    SetLR,
    Snapshot,
    StageController,
    Start,
    Validation,
)
from autolrs.testing import NoisyQuadratic


def test_tell_answers_one_decision_with_the_events_since_the_last():
    ctrl = StageController(Config.stagewise(), lr_range=(1e-3, 1.0), total_steps=300, seed=0)
    first = ctrl.tell(Start())
    assert isinstance(first, Decision) and first.failure is None
    assert [e["event"] for e in first.events] == ["start", "stage"]
    assert isinstance(first.actions[-1], SetLR)
    decision = ctrl.tell(Loss(1.0))
    assert decision.outlook.quiet_steps == ctrl.quiet_steps
    assert decision.events == () and ctrl.pop_events() == []
    ctrl.tell(Losses([1.0] * (decision.outlook.quiet_steps + 1)))
    assert ctrl.step == 2 + decision.outlook.quiet_steps
    with pytest.raises(RuntimeError, match="no validation loss"):
        ctrl.tell(Validation(1.0))
    with pytest.raises(TypeError, match="tell"):
        ctrl.tell("loss")  # type: ignore[arg-type]


class GridSearcher(Searcher):
    """Proposes the points of a fixed log grid in turn."""

    def __init__(self, low: float, high: float) -> None:
        self.grid = [low * (high / low) ** (i / 4) for i in range(5)]
        self.told: list[tuple[float, Any]] = []

    def ask(self) -> float:
        return self.grid[len(self.told) % len(self.grid)]

    def tell(self, lr: float, value: float | None, *, diverged: bool = False) -> None:
        self.told.append((lr, value))

    def state_dict(self) -> dict[str, Any]:
        return {"grid": self.grid, "told": self.told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.grid, self.told = list(state["grid"]), [tuple(t) for t in state["told"]]


class LastLoss(Forecaster):
    """Forecasts the last loss seen (no extrapolation)."""

    def fit(self, x, y, *, horizon: float) -> CurveFit:
        last = float(list(y)[-1])
        return CurveFit(0.0, 1.0, last, 1.0, 0.0, last, True, "last loss", len(list(y)))


def test_a_searcher_and_a_forecaster_are_passed_in_as_factories():
    made: list[GridSearcher] = []

    def searcher(low: float, high: float, rng: Any) -> Searcher:
        made.append(GridSearcher(low, high))
        return made[-1]

    cfg = Config.stagewise(candidates=3, start_at_previous=False, early_stop_fraction=None)
    ctrl = StageController(
        cfg, lr_range=(1e-3, 1.0), total_steps=600, seed=0,
        searcher=searcher, forecaster=lambda validation: LastLoss(),
    )
    ctrl.start()
    problem = NoisyQuadratic(seed=0)
    for _ in range(120):
        ctrl.tell_loss(problem.train_step(ctrl.lr))
    candidates = [e for e in ctrl.pop_events() if e["event"] == "candidate"]
    assert [c["lr"] for c in candidates[:3]] == made[0].grid[:3]
    assert all(c["forecast"] == c["losses"]["last"] for c in candidates)
    resumed = StageController(searcher=searcher, forecaster=lambda validation: LastLoss())
    resumed.load_state_dict(ctrl.state_dict())
    assert resumed.state_dict() == ctrl.state_dict()


CONFIGS = {
    "default, range test": (Config.stagewise(), None, True),
    "paper, given range": (Config.paper(), (1e-3, 1.0), False),
    "anneal, warm-up, validation": (
        Config.stagewise(anneal_fraction=0.2, warmup_steps=12, warmup_lr=0.05, objective="validation"),
        None,
        True,
    ),
    "ramp, given range": (Config.ramp(), (1e-3, 1.0), True),
}


def _carry_out(problem: NoisyQuadratic, actions: list[Any], announced: bool, step: int) -> None:
    restored = False
    for action in actions:
        if isinstance(action, Snapshot):
            problem.snapshot(action.slot)
            # the model the step left is committed only where the outlook said so
            assert restored or announced, f"step {step} committed unannounced: {actions}"
        elif isinstance(action, Restore):
            problem.restore(action.slot)
            restored = True


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_phase_outlook_agrees_with_what_its_next_steps_do(name):
    config, lr_range, validation = CONFIGS[name]
    ctrl = StageController(config, total_steps=900, lr_range=lr_range, validation=validation, seed=1)
    problem = NoisyQuadratic(seed=3)
    actions = list(ctrl.start())
    while actions and isinstance(actions[-1], Evaluate):  # the ramp measures where it starts
        actions = actions[:-1] + list(ctrl.tell(Validation(problem.loss())).actions)
    _carry_out(problem, actions, True, 0)
    window: list[float] = []  # planned rates of the steps still inside the quiet window
    while ctrl.step < 900:
        outlook = ctrl.outlook()
        if not window:
            window = [outlook.planned_lr(k) for k in range(outlook.quiet_steps + 1)]
        assert ctrl.lr == window.pop(0)  # the rate the outlook planned for this step
        loss = problem.train_step(ctrl.lr)
        decision = ctrl.tell(Loss(loss, problem.finite()))
        actions, events = list(decision.actions), list(decision.events)
        while actions and isinstance(actions[-1], Evaluate):
            more = ctrl.tell(Validation(problem.loss()))
            actions, events = actions[:-1] + list(more.actions), events + list(more.events)
        _carry_out(problem, actions, outlook.needs_finite_check, ctrl.step)
        if any(not isinstance(a, SetLR) for a in actions):
            # leaving the quiet window early takes an abnormal loss (divergence ends a sweep
            # or a trial, or a fault rolls back)
            abnormal = {"rollback", "range_test", "ramp"} & {e["event"] for e in events} or any(
                e["event"] == "candidate" and e["diverged"] for e in events
            )
            assert not window or abnormal, f"step {ctrl.step}: {actions}"
            window = []
    assert ctrl.finished and not ctrl.in_trial
