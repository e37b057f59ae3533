"""The shared action executor: order, follow-ups, the validation function raising, and the
leader/follower split of a multi-process run (simulated in one process)."""

from __future__ import annotations

import collections
import pickle
from typing import Any

import pytest

from autolrs.core import (
    Abort,
    Config,
    Decision,
    Evaluate,
    Executor,
    Loss,
    Outlook,
    Restore,
    SetLR,
    StageController,
    Start,
)
from autolrs.testing import NoisyQuadratic, drive

VALIDATION = Config(tau=60, candidates=3, min_trial_steps=4, objective="validation", val_points=4)


class Recorder(Executor):
    """Carries decisions out on a :class:`NoisyQuadratic` and records every call."""

    def __init__(self, controller: StageController, problem: NoisyQuadratic, **kw: Any) -> None:
        super().__init__(controller, **kw)
        self.problem = problem
        self.lr = controller.lr
        self.calls: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.fail_on: set[int] = set()
        self.evaluations = 0

    def set_lr(self, lr: float) -> None:
        self.calls.append(("set_lr", lr))
        self.lr = lr

    def snapshot(self, slot: str) -> None:
        self.calls.append(("snapshot", slot))
        self.problem.snapshot(slot)

    def restore(self, slot: str) -> None:
        self.calls.append(("restore", slot))
        self.problem.restore(slot)

    def discard(self, slot: str) -> None:
        self.calls.append(("discard", slot))
        self.problem.discard(slot)

    def evaluate(self) -> float:
        self.evaluations += 1
        self.calls.append(("evaluate", self.evaluations))
        if self.evaluations in self.fail_on:
            raise ValueError("validation broke")
        return self.problem.loss()

    def on_events(self, events: list[dict[str, Any]]) -> None:
        self.calls.append(("events", len(events)))
        self.events.extend(events)


def _view(outlook: Outlook) -> tuple[int, bool, list[float]]:
    return (
        outlook.quiet_steps,
        outlook.needs_finite_check,
        [outlook.planned_lr(k) for k in range(min(outlook.quiet_steps, 50) + 1)],
    )


def _train(executor: Recorder, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        finite_check = executor.outlook.needs_finite_check
        loss = executor.problem.train_step(float(executor.lr))
        losses.append(loss)
        executor.tell(Loss(loss, executor.problem.finite() if finite_check else True))
    return losses


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_steps": 400, "seed": 0},
        {"total_steps": 400, "seed": 1, "lr_range": (1e-3, 1.0), "config": Config.paper(tau=60)},
        {"total_steps": 300, "seed": 0, "validation": True, "config": VALIDATION},
    ],
    ids=["range-test", "paper", "validation"],
)
def test_the_executor_carries_out_what_the_wrapper_methods_return(kwargs):
    """The same run through the executor and through the controller's wrapper methods."""
    executor = Recorder(StageController(**kwargs), NoisyQuadratic(seed=2))
    twin, problem = StageController(**kwargs), NoisyQuadratic(seed=2)
    expected: list[Any] = []
    lr = None

    def carry(actions: tuple[Any, ...]) -> None:
        nonlocal lr
        while actions:
            expected.extend(actions)
            for action in actions:
                if isinstance(action, SetLR):
                    lr = action.lr
                elif not isinstance(action, Evaluate):
                    getattr(problem, type(action).__name__.lower())(action.slot)
            evaluate = isinstance(actions[-1], Evaluate)
            actions = twin.tell_validation(problem.loss()) if evaluate else ()

    executor.tell(Start())
    carry(twin.start())
    for _ in range(kwargs["total_steps"]):
        finite = problem.finite() if twin.needs_finite_check else True
        carry(twin.tell_loss(problem.train_step(float(lr)), model_finite=finite))
    _train(executor, kwargs["total_steps"])
    carried = [c for c in executor.calls if c[0] != "events"]
    wanted = [
        ("evaluate", None) if isinstance(a, Evaluate) else
        ("set_lr", a.lr) if isinstance(a, SetLR) else (type(a).__name__.lower(), a.slot)
        for a in expected
    ]
    assert [(k, None if k == "evaluate" else v) for k, v in carried] == wanted
    assert executor.events == twin.pop_events()
    assert _view(executor.outlook) == _view(twin.outlook())
    assert executor.controller.state_dict() == twin.state_dict()
    if kwargs.get("validation"):
        assert executor.evaluations > 0


def test_events_reach_the_hook_before_the_decisions_actions():
    executor = Recorder(StageController(total_steps=200, seed=0), NoisyQuadratic(seed=2))
    executor.tell(Start())
    assert executor.calls[0][0] == "events"  # the start event, then the actions
    assert {c[0] for c in executor.calls[1:]} <= {"set_lr", "snapshot"}
    assert executor.events[0]["event"] == "start"


def test_tell_returns_the_last_decision_of_a_validation_chain():
    executor = Recorder(
        StageController(total_steps=300, seed=0, validation=True, config=VALIDATION),
        NoisyQuadratic(seed=2),
    )
    executor.tell(Start())
    for _ in range(300):
        decision = executor.tell(Loss(executor.problem.train_step(float(executor.lr))))
        assert isinstance(decision, Decision)
        assert not any(isinstance(a, Evaluate) for a in decision.actions)
        assert decision.outlook is executor.outlook
        if executor.evaluations:
            break
    assert executor.evaluations == 1


def test_a_raising_evaluation_tells_abort_restores_then_reraises():
    executor = Recorder(
        StageController(total_steps=300, seed=0, validation=True, config=VALIDATION),
        NoisyQuadratic(seed=2),
    )
    executor.fail_on = {2}
    executor.tell(Start())
    with pytest.raises(ValueError, match="validation broke"):
        _train(executor, 300)
    failed = executor.calls.index(("evaluate", 2))
    after = [c for c in executor.calls[failed + 1 :] if c[0] != "events"]
    assert after and after[0] == ("restore", "stage")
    rollbacks = [e for e in executor.events if e["event"] == "rollback"]
    assert rollbacks[-1]["reason"] == "the validation function raised ValueError"
    assert not executor.controller.awaiting_validation
    # The run goes on after the error: the trial restarts from the stage snapshot.
    executor.fail_on = set()
    _train(executor, 50)


def test_abort_reason_is_the_subclasss_to_choose():
    class Named(Recorder):
        def abort_reason(self, error: BaseException) -> str:
            return f"val_fn raised {type(error).__name__}"

    executor = Named(
        StageController(total_steps=300, seed=0, validation=True, config=VALIDATION),
        NoisyQuadratic(seed=2),
    )
    executor.fail_on = {1}
    executor.tell(Start())
    with pytest.raises(ValueError):
        _train(executor, 300)
    assert [e["reason"] for e in executor.events if e["event"] == "rollback"] == [
        "val_fn raised ValueError"
    ]


def test_an_executor_without_evaluate_says_what_to_do():
    class Minimal(Executor):
        def set_lr(self, lr: float) -> None: ...
        def snapshot(self, slot: str) -> None: ...
        def restore(self, slot: str) -> None: ...

    executor = Minimal(StageController(total_steps=300, seed=0, validation=True, config=VALIDATION))
    executor.tell(Start())
    with pytest.raises(NotImplementedError, match="implement evaluate"):
        for _ in range(300):
            executor.tell(Loss(1.0))


def test_an_unknown_action_is_refused():
    executor = Recorder(StageController(total_steps=200, seed=0), NoisyQuadratic())
    with pytest.raises(TypeError, match="unknown action"):
        executor.apply("jump")  # type: ignore[arg-type]


def test_resync_reads_a_loaded_state():
    source = Recorder(StageController(total_steps=400, seed=0), NoisyQuadratic(seed=2))
    source.tell(Start())
    _train(source, 123)
    other = Recorder(StageController(total_steps=400, seed=0), NoisyQuadratic(seed=2))
    other.controller.load_state_dict(source.controller.state_dict())
    other.resync()
    assert _view(other.outlook) == _view(source.outlook)
    assert other.failure == source.failure


# ------------------------------------------------------------------ leader and followers
class Wire:
    """A broadcast for processes run one after the other: the leader's payloads, in order."""

    def __init__(self) -> None:
        self.sent: collections.deque[Any] = collections.deque()

    def leader(self, payload: Any) -> Any:
        self.sent.append(pickle.dumps(payload))  # it must cross a process boundary
        return payload

    def follower(self, payload: Any) -> Any:
        assert payload is None
        return pickle.loads(self.sent.popleft())


@pytest.mark.parametrize("validation", [False, True], ids=["train-loss", "validation"])
def test_followers_carry_out_the_leaders_decisions(validation):
    kw: dict[str, Any] = {"total_steps": 300, "seed": 0}
    if validation:
        kw.update(validation=True, config=VALIDATION)
    wire = Wire()
    lead = Recorder(StageController(**kw), NoisyQuadratic(seed=2), broadcast=wire.leader)
    # The follower's controller is built with another seed: only the leader's state counts.
    follow = Recorder(
        StageController(**{**kw, "seed": 99}),
        NoisyQuadratic(seed=2),
        broadcast=wire.follower,
        leader=False,
    )
    for executor in (lead, follow):
        executor.tell(Start())
    for _ in range(300):
        finite_check = lead.outlook.needs_finite_check
        loss = lead.problem.train_step(float(lead.lr))
        follow.problem.train_step(float(follow.lr))
        lead.tell(Loss(loss, lead.problem.finite() if finite_check else True))
        follow.tell(Loss(float("nan")))  # ignored: the follower tells nothing
        assert _view(follow.outlook) == _view(lead.outlook)
        assert follow.failure == lead.failure
    assert not wire.sent
    assert follow.calls == lead.calls
    assert follow.events == lead.events
    assert follow.controller.state_dict() == lead.controller.state_dict()
    assert (lead.evaluations > 0) == validation


def test_a_follower_rolls_back_when_the_evaluation_raises_everywhere():
    wire = Wire()
    kw: dict[str, Any] = {"total_steps": 300, "seed": 0, "validation": True, "config": VALIDATION}
    lead = Recorder(StageController(**kw), NoisyQuadratic(seed=2), broadcast=wire.leader)
    follow = Recorder(
        StageController(**kw), NoisyQuadratic(seed=2), broadcast=wire.follower, leader=False
    )
    for executor in (lead, follow):
        executor.fail_on = {1}
        executor.tell(Start())
    for _ in range(300):
        raised = []
        for executor in (lead, follow):
            loss = executor.problem.train_step(float(executor.lr))
            try:
                executor.tell(Loss(loss))
            except ValueError:
                raised.append(executor)
        if raised:
            assert raised == [lead, follow]
            break
    assert follow.calls == lead.calls
    assert follow.calls[-1] == ("set_lr", lead.lr)
    assert any(c == ("restore", "stage") for c in follow.calls[-3:])


def test_drive_uses_the_executor():
    record = drive(
        StageController(total_steps=200, seed=0, validation=True, config=VALIDATION),
        NoisyQuadratic(seed=2),
        200,
    )
    assert record.evaluations > 0
    assert any(isinstance(a, Evaluate) for a in record.actions)
    assert record.events[0]["event"] == "start"


def test_drive_rolls_back_when_validation_raises():
    controller = StageController(total_steps=200, seed=0, validation=True, config=VALIDATION)

    def broken() -> float:
        raise RuntimeError("no data")

    with pytest.raises(RuntimeError, match="no data"):
        drive(controller, NoisyQuadratic(seed=2), 200, validation=broken)
    assert not controller.awaiting_validation
    assert controller.in_trial


def test_abort_in_a_trial_restores_the_stage_snapshot():
    executor = Recorder(
        StageController(Config.stagewise(), total_steps=300, seed=0, lr_range=(1e-3, 1.0)),
        NoisyQuadratic(seed=2),
    )
    executor.tell(Start())
    _train(executor, 5)
    assert executor.controller.phase == "trial"
    decision = executor.tell(Abort("stopped early"))
    assert Restore("stage") in decision.actions
    assert ("restore", "stage") in executor.calls[-3:]
    assert executor.events[-1]["reason"] == "stopped early"
