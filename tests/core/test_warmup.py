"""The original callback's optional linear warm-up (Config.warmup_steps / warmup_lr)."""

from __future__ import annotations

import json
import math

import pytest

from autolrs.core import Config, Phase, Restore, SetLR, StageController
from autolrs.testing import NoisyQuadratic, drive


def _controller(**overrides) -> StageController:
    config = Config.paper(tau=100, min_trial_steps=5, warmup_steps=10, warmup_lr=0.05, **overrides)
    return StageController(config, lr_range=(1e-3, 1e-1), seed=0)


def test_warm_up_ramps_linearly_then_the_search_starts():
    controller = _controller()
    record = drive(controller, NoisyQuadratic(seed=0), 11)
    assert record.lrs[:10] == pytest.approx([0.05 * (i + 1) / 10 for i in range(10)])
    assert not any(record.in_trial[:10]) and record.in_trial[10]
    assert controller.phase == Phase.TRIAL and controller.stage == 1
    segment = next(e for e in record.events if e["event"] == "segment" and e["kind"] == "warmup")
    assert (segment["start"], segment["end"], segment["committed"]) == (0, 10, True)


def test_warm_up_is_off_in_both_presets_and_needs_a_rate():
    assert Config().warmup_steps == 0 and Config.paper().warmup_steps == 0
    with pytest.raises(ValueError, match="warmup_lr"):
        Config(warmup_steps=5)
    with pytest.raises(ValueError, match="warmup_lr"):
        Config(warmup_steps=5, warmup_lr=-1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        Config(warmup_steps=-1, warmup_lr=0.1)


def test_warm_up_plans_its_rates_and_may_be_told_in_one_batch():
    controller = _controller()
    controller.start()
    assert controller.quiet_steps == 9
    assert [controller.planned_lr(k) for k in range(10)] == pytest.approx(
        [0.05 * (i + 1) / 10 for i in range(10)]
    )
    assert not controller.needs_finite_check
    controller.tell_losses([1.0] * 9)
    assert controller.needs_finite_check  # the warm-up's end is committed by the next stage
    actions = controller.tell_loss(1.0)
    assert controller.phase == Phase.TRIAL and any(isinstance(a, SetLR) for a in actions)


def test_a_non_finite_loss_in_the_warm_up_restarts_it_at_half_the_rate():
    controller = _controller()
    controller.start()
    controller.tell_losses([1.0] * 4)
    actions = controller.tell_loss(math.nan)
    assert isinstance(actions[0], Restore)
    assert controller.lr == pytest.approx(0.025 / 10)
    events = controller.pop_events()
    assert any(e["event"] == "rollback" and e["phase"] == Phase.WARMUP for e in events)
    for _ in range(10):
        controller.tell_loss(1.0)
    assert controller.phase == Phase.TRIAL and controller.step == 15


def test_repeated_faults_in_the_warm_up_end_in_a_failure():
    controller = _controller(max_rollbacks=2)
    controller.start()
    for _ in range(3):
        controller.tell_loss(math.inf)
    assert controller.failure is not None and "warm-up" in controller.failure


def test_warm_up_within_a_budget_counts_its_steps():
    controller = StageController(
        Config(warmup_steps=50, warmup_lr=0.1), total_steps=40, lr_range=(1e-3, 1e-1), seed=0
    )
    drive(controller, NoisyQuadratic(seed=0), 40)
    assert controller.finished and controller.phase == Phase.DONE


def test_a_run_saved_mid_warm_up_resumes_exactly():
    whole = drive(_controller(), NoisyQuadratic(seed=1), 60)
    first = _controller()
    problem = NoisyQuadratic(seed=1)
    part = drive(first, problem, 6)
    resumed = StageController(Config(), seed=123)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    drive(resumed, problem, 54, start=False, record=part)
    assert part.lrs == whole.lrs and part.losses == whole.losses
