from __future__ import annotations

import json
import math

import pytest

from autolrs import Config
from autolrs.core import Discard, Evaluate, Restore, SetLR, Snapshot, StageController
from autolrs.core.actions import STAGE, WINNER
from autolrs.testing import NoisyQuadratic, drive

PAPER = Config.paper()
DEFAULT = Config.stagewise()
# every switch on, so that state round-trips and batching cover their mechanics too
SWITCHES = Config.stagewise(
    trust_region=3.0,
    start_at_previous=True,
    early_stop_fraction=0.5,
    prefer_larger_within=0.05,
    edge_shift=3.0,
    final_decay_fraction=0.2,
    later_candidates=3,
)


def stages(events):
    return [e for e in events if e["event"] == "stage"]


def candidates(events):
    return [e for e in events if e["event"] == "candidate"]


# ------------------------------------------------------------------ phases and stage lengths
def test_paper_stage_lengths_without_budget_double_up_to_tau_max():
    ctrl = StageController(PAPER, lr_range=(1e-3, 1.0), seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 2000 + 4000 + 8000 + 10)
    plans = [(e["trial_steps"], e["candidates"], e["tau"]) for e in stages(rec.events)]
    assert (
        plans[:4]
        == [(100, 10, 1000), (200, 10, 2000), (400, 10, 4000), (800, 10, 8000)][: len(plans)]
    )
    assert len(plans) == 4  # 2000 + 4000 + 8000 steps, then the 4th stage starts
    cands = candidates(rec.events)
    assert [c["steps"] for c in cands[:10]] == [100] * 10
    assert all(c["mode"] == "train" for c in cands)


def test_paper_switches_to_validation_loss_after_a_stage_at_tau_max():
    cfg = Config.paper(tau=10, min_trial_steps=2)  # tau 10 -> 80 in four stages
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), validation=True, seed=0)
    # stages: 20, 40, 80, 160 steps; then stage 5 uses validation loss
    rec = drive(ctrl, NoisyQuadratic(seed=1), 20 + 40 + 80 + 160 + 100)
    modes = [e["mode"] for e in stages(rec.events)]
    assert modes[:4] == ["train"] * 4 and modes[4] == "validation"
    stage5 = [c for c in candidates(rec.events) if c["stage"] == 5]
    assert stage5 and rec.evaluations >= 1
    # trial of 8 steps, val_every = max(1, 8 // 16) = 1: one evaluation per step
    assert stages(rec.events)[4]["val_every"] == 1


def test_training_loss_is_used_when_no_validation_function_exists():
    cfg = Config.paper(tau=10, min_trial_steps=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), validation=False, seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 400)
    assert {e["mode"] for e in stages(rec.events)} == {"train"}
    assert rec.evaluations == 0


@pytest.mark.parametrize("config", [PAPER, DEFAULT, SWITCHES], ids=["paper", "default", "switches"])
@pytest.mark.parametrize("total", [150, 600, 1500, 4000])
@pytest.mark.parametrize("lr_range", [None, (1e-3, 1.0)])
def test_budget_is_used_exactly_and_never_ends_in_a_trial(config, total, lr_range):
    ctrl = StageController(config, total_steps=total, lr_range=lr_range, seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), total)
    assert ctrl.step == total
    assert ctrl.finished and not ctrl.in_trial
    assert ctrl.phase == "done"
    # every stage finishes its search before the budget ends
    for stage in stages(rec.events):
        searched = [c for c in candidates(rec.events) if c["stage"] == stage["stage"]]
        assert len(searched) == stage["candidates"]
    assert not rec.in_trial[-1]


def test_paper_budget_rule_scales_stages_to_the_budget():
    # tau0 = budget / 30 and four doubling stages fill it exactly (the benchmark's rule for the paper preset).
    ctrl = StageController(PAPER, total_steps=1500, lr_range=(1e-3, 1.0), seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 1500)
    plans = [(e["trial_steps"], e["tau"]) for e in stages(rec.events)]
    assert plans == [(5, 50), (10, 100), (20, 200), (40, 400)]


def test_range_test_finds_an_interval_and_counts_its_steps():
    ctrl = StageController(DEFAULT, total_steps=1000, seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 1000)
    rt = [e for e in rec.events if e["event"] == "range_test"][0]
    # SGD on this problem diverges above lr = 2: the interval must lie below and reach far down.
    assert rt["high"] <= 5.0 and rt["low"] < 0.05
    assert rt["end"] - rt["start"] <= 0.05 * 1000 + 1
    assert rec.in_trial[: rt["end"]] == [True] * rt["end"]
    assert stages(rec.events)[0]["search_range"] == [rt["low"], rt["high"]]


# ------------------------------------------------------------------ actions
def test_each_candidate_starts_from_the_stage_snapshot():
    ctrl = StageController(PAPER, lr_range=(1e-3, 1.0), seed=0)
    first = ctrl.start()
    assert first[0] == Snapshot(STAGE) and isinstance(first[1], SetLR)
    problem = NoisyQuadratic(seed=1)
    problem.snapshot(STAGE)
    rec = drive(ctrl, problem, 100 * 10 + 1, start=False)
    restores = [a for a in rec.actions if isinstance(a, Restore)]
    assert len(restores) == 10  # before candidates 2..10 and before exploiting
    assert all(r.slot == STAGE for r in restores)


def test_keep_winner_continues_the_best_candidate():
    cfg = Config.stagewise(keep_winner=True, candidates=4)
    ctrl = StageController(cfg, total_steps=2000, lr_range=(1e-3, 1.0), seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 2000)
    # first decisions of each stage (a rollback's re-decision covers the rest of the stage)
    decisions = [e for e in rec.events if e["event"] == "decision" and not e["reason"]]
    tau = {s["stage"]: s["tau"] for s in stages(rec.events)}
    assert any(d["kept_winner_steps"] > 0 for d in decisions)
    for d in decisions:
        assert d["exploit_steps"] + d["kept_winner_steps"] == tau[d["stage"]]
    slots = {a.slot for a in rec.actions if isinstance(a, (Snapshot, Restore, Discard))}
    assert slots <= {STAGE, WINNER}


def test_a_non_finite_loss_after_calm_steps_retries_the_candidate_once_then_aborts_it():
    ctrl = StageController(PAPER, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    for _ in range(10):
        assert ctrl.tell_loss(1.0) == ()
    lr = ctrl.lr
    ctrl.pop_events()
    # One bad batch: the candidate starts again from the stage snapshot, at the same rate.
    actions = ctrl.tell_loss(math.nan)
    assert actions == (Restore(STAGE), SetLR(lr)) and ctrl.in_trial
    events = ctrl.pop_events()
    assert [e["event"] for e in events] == ["rollback"] and "retrying" in events[0]["reason"]
    for _ in range(4):
        assert ctrl.tell_loss(1.0) == ()
    # A second one within the same candidate is divergence.
    actions = ctrl.tell_loss(math.nan)
    assert Restore(STAGE) in actions and isinstance(actions[-1], SetLR)
    cand = candidates(ctrl.pop_events())[0]
    assert cand["diverged"] and cand["steps"] == 5 and "non-finite" in cand["reason"]
    assert cand["lr"] == lr and ctrl.lr != lr


def test_a_non_finite_loss_after_rising_losses_aborts_the_candidate_at_once():
    ctrl = StageController(PAPER, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    for loss in (1.0, 1.0, 1.5, 2.0, 2.5):
        assert ctrl.tell_loss(loss) == ()
    actions = ctrl.tell_loss(math.inf)
    assert Restore(STAGE) in actions
    cand = candidates(ctrl.pop_events())[0]
    assert cand["diverged"] and cand["steps"] == 6


def test_a_non_finite_loss_in_a_calm_range_test_resumes_from_its_latest_checkpoint():
    ctrl = StageController(DEFAULT, total_steps=1000, seed=0)
    ctrl.start()
    for _ in range(15):
        ctrl.tell_loss(2.0)
    ctrl.pop_events()
    rt = _phase_state(ctrl.state_dict())
    slot, done = max(rt["checkpoints"], key=lambda c: c[1])[:2]
    actions = ctrl.tell_loss(math.nan)
    assert actions == (Restore(slot), SetLR(rt["lrs"][done]))
    assert [e["event"] for e in ctrl.pop_events()] == ["rollback", "segment"]
    assert ctrl.phase == "range_test"
    # The sweep goes on from the checkpoint; a second non-finite loss ends it as divergence.
    for _ in range(3):
        ctrl.tell_loss(2.0)
    ctrl.tell_loss(math.nan)
    found = [e for e in ctrl.pop_events() if e["event"] == "range_test"]
    assert ctrl.phase == "trial" and found and found[0]["diverged_lr"] == rt["lrs"][done + 3]


def test_divergence_factor_aborts_exploding_trials():
    cfg = Config.stagewise(divergence_factor=2.0)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    ctrl.tell_loss(1.0)  # the stage's reference level
    for loss in (2.9, 1.0, 1.0, 2.5):  # one bad batch is not a divergence ...
        assert ctrl.tell_loss(loss) == ()
    actions = ctrl.tell_loss(2.6)  # ... a running mean of 3 above 2x the start is
    assert Restore(STAGE) in actions
    cand = candidates(ctrl.pop_events())[0]
    assert cand["diverged"] and cand["steps"] == 6


def test_exploit_divergence_rolls_back_and_excludes_that_rate():
    cfg = Config.paper(tau=100, min_trial_steps=2, candidates=3)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    losses = iter([1.0 - 0.001 * i for i in range(1000)])
    while ctrl.phase == "trial":
        ctrl.tell_loss(next(losses))
    first_lr = ctrl.lr
    for _ in range(5):
        ctrl.tell_loss(next(losses))
    actions = ctrl.tell_loss(math.inf)
    assert actions[0] == Restore(STAGE) and isinstance(actions[1], SetLR)
    assert actions[1].lr != first_lr and ctrl.phase == "exploit"
    events = ctrl.pop_events()
    assert [e for e in events if e["event"] == "rollback"][0]["phase"] == "exploit"


def test_repeated_divergence_sets_a_failure_after_max_rollbacks():
    cfg = Config.paper(tau=20, min_trial_steps=2, candidates=2, max_rollbacks=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    while ctrl.phase == "trial":
        ctrl.tell_loss(1.0)
    for _ in range(3):
        assert ctrl.failure is None
        ctrl.tell_loss(math.nan)
    assert ctrl.failure is not None and "3 times" in ctrl.failure


def test_non_finite_model_is_never_committed():
    cfg = Config.paper(tau=20, min_trial_steps=2, candidates=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    while not ctrl.needs_finite_check:
        ctrl.tell_loss(1.0)
    assert ctrl.phase == "exploit"
    actions = ctrl.tell_loss(1.0, model_finite=False)
    assert actions[0] == Restore(STAGE) and Snapshot(STAGE) not in actions


def test_validation_requests_and_tell_validation():
    cfg = Config.stagewise(objective="validation", val_points=4, tau=40, min_trial_steps=2, candidates=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), validation=True, seed=0)
    ctrl.start()
    asked = 0
    for _ in range(4):
        actions = ctrl.tell_loss(1.0)
        if actions and isinstance(actions[-1], Evaluate):
            asked += 1
            with pytest.raises(RuntimeError, match="tell_validation"):
                ctrl.tell_loss(1.0)
            ctrl.tell_validation(0.9 - 0.01 * asked)
    assert asked == 4  # trial of 4 steps, one evaluation per step
    with pytest.raises(RuntimeError, match="no validation"):
        ctrl.tell_validation(1.0)


def test_non_finite_validation_loss_marks_the_trial_diverged_on_its_second_occurrence():
    cfg = Config.stagewise(objective="validation", val_points=4, tau=40, min_trial_steps=2, candidates=2)
    ctrl = StageController(cfg, lr_range=(1e-3, 1.0), validation=True, seed=0)
    ctrl.start()
    ctrl.tell_loss(1.0)
    lr = ctrl.lr
    assert ctrl.tell_validation(math.nan) == (Restore(STAGE), SetLR(lr))  # retried once
    assert not candidates(ctrl.pop_events())
    ctrl.tell_loss(1.0)
    actions = ctrl.tell_validation(math.nan)
    assert Restore(STAGE) in actions
    assert candidates(ctrl.pop_events())[0]["reason"] == "non-finite validation loss"


# ------------------------------------------------------------------ batching (deferred reads)
@pytest.mark.parametrize("config", [PAPER, DEFAULT, SWITCHES], ids=["paper", "default", "switches"])
@pytest.mark.parametrize("lr_range", [None, (1e-3, 0.5)], ids=["range-test", "stable-range"])
def test_batched_tells_make_the_same_decisions(config, lr_range):
    # Telling losses in batches changes nothing as long as no loss is abnormal inside a batch.
    # With the range test, trials may diverge (the interval can reach past lr=2 on this
    # problem); the decisions up to the first abnormal loss must then agree.
    problem_a, problem_b = NoisyQuadratic(seed=4), NoisyQuadratic(seed=4)
    a = StageController(config, total_steps=800, lr_range=lr_range, seed=3)
    rec_a = drive(a, problem_a, 800)
    b = StageController(config, total_steps=800, lr_range=lr_range, seed=3)
    b_actions = list(b.start())
    lr = [x for x in b_actions if isinstance(x, SetLR)][-1].lr
    for act in b_actions:
        if isinstance(act, Snapshot):
            problem_b.snapshot(act.slot)
    buffered: list[float] = []
    window = min(b.quiet_steps, 7)
    lrs_b = []
    for _ in range(800):
        lrs_b.append(lr)
        buffered.append(problem_b.train_step(lr))
        if len(buffered) > window:
            actions = b.tell_losses(buffered, model_finite=problem_b.finite)
            buffered = []
            for act in actions:
                if isinstance(act, SetLR):
                    lr = act.lr
                elif isinstance(act, Snapshot):
                    problem_b.snapshot(act.slot)
                elif isinstance(act, Restore):
                    problem_b.restore(act.slot)
            window = min(b.quiet_steps, 7)
        else:
            lr = b.planned_lr(len(buffered))
    abnormal = [e["start"] for e in rec_a.events if e["event"] == "candidate" and e["diverged"]]
    if abnormal:  # after an abnormal loss inside a batch, spent steps differ by design
        cut = min(abnormal)
        assert lrs_b[:cut] == rec_a.lrs[:cut]
    else:
        assert lrs_b == rec_a.lrs
        assert b.state_dict()["state"] == a.state_dict()["state"]
    if lr_range is not None:
        assert not abnormal


def test_abnormal_loss_in_a_batch_counts_the_rest_as_spent():
    ctrl = StageController(PAPER, lr_range=(1e-3, 1.0), seed=0)
    ctrl.start()
    assert ctrl.quiet_steps == 99
    actions = ctrl.tell_losses([1.0, 1.0, math.nan, 1.0, 1.0])
    assert Restore(STAGE) in actions
    assert ctrl.step == 5
    events = ctrl.pop_events()
    assert [e["steps"] for e in events if e["event"] == "wasted"] == [2]
    # the next candidate starts after the waste
    assert _phase_state(ctrl.state_dict())["trial"]["start_step"] == 5


# ------------------------------------------------------------------ state and determinism
@pytest.mark.parametrize("config", [PAPER, DEFAULT, SWITCHES], ids=["paper", "default", "switches"])
@pytest.mark.parametrize("cut", [37, 140, 333])
def test_resumed_controller_makes_identical_decisions(config, cut):
    total = 900
    full = StageController(config, total_steps=total, seed=5)
    rec_full = drive(full, NoisyQuadratic(seed=2), total)

    first = StageController(config, total_steps=total, seed=5)
    problem = NoisyQuadratic(seed=2)
    rec = drive(first, problem, cut)
    state = json.loads(json.dumps(first.state_dict()))  # must be JSON-safe
    resumed = StageController(Config.stagewise(), total_steps=123, seed=99)  # overwritten by the state
    resumed.load_state_dict(state)
    rec = drive(resumed, problem, total - cut, start=False, record=rec)
    assert rec.lrs == rec_full.lrs
    assert resumed.state_dict()["state"] == full.state_dict()["state"]


def test_same_seed_same_sequence_different_seed_may_differ():
    def lrs(seed):
        return drive(
            StageController(DEFAULT, total_steps=600, seed=seed), NoisyQuadratic(seed=1), 600
        ).lrs

    assert lrs(11) == lrs(11)
    assert lrs(11) != lrs(12)


def test_state_dict_version_and_keys_are_checked():
    from autolrs import StateDictError

    ctrl = StageController(seed=0)
    ctrl.start()
    state = ctrl.state_dict()
    with pytest.raises(StateDictError, match="version"):
        ctrl.load_state_dict({**state, "version": 99})
    with pytest.raises(StateDictError, match="misses key"):
        ctrl.load_state_dict({k: v for k, v in state.items() if k != "rng"})
    broken = json.loads(json.dumps(state))
    del broken["state"]["phase"]
    with pytest.raises(StateDictError, match="phase"):
        ctrl.load_state_dict(broken)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "lr_range",
    [(1.0, 0.1), (0.0, 1.0), (-1.0, 1.0), (1e-3, math.inf), (1e-3,), "0.1", (1e-3, "a"), 5],
)
def test_bad_lr_range_raises_value_error_naming_it(lr_range):
    with pytest.raises(ValueError, match="lr_range"):
        StageController(lr_range=lr_range)


@pytest.mark.parametrize("total", [0, -5, 2.5, math.inf, math.nan, "100", True])
def test_bad_total_steps_raises_value_error_naming_it(total):
    with pytest.raises(ValueError, match="total_steps"):
        StageController(total_steps=total)


def test_tiny_budgets_still_finish_cleanly():
    for total in (1, 2, 5, 20, 60):
        ctrl = StageController(DEFAULT, total_steps=total, seed=0)
        drive(ctrl, NoisyQuadratic(seed=1), total)
        assert ctrl.step == total and not ctrl.in_trial


def test_protocol_misuse_is_reported():
    ctrl = StageController(seed=0)
    with pytest.raises(RuntimeError, match="start"):
        ctrl.tell_loss(1.0)
    ctrl.start()
    with pytest.raises(RuntimeError, match="already"):
        ctrl.start()
    with pytest.raises(TypeError, match="Config"):
        StageController(config={"tau": 3})


# ------------------------------------------------------------------ improvement switches
def test_anneal_fraction_decays_each_trial_and_scores_after_the_decay():
    cfg = Config.stagewise(candidates=3, tau=100, min_trial_steps=10, anneal_fraction=0.3)
    ctrl = StageController(cfg, total_steps=1500, lr_range=(1e-3, 1.0), seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 1500)
    cands = candidates(rec.events)
    assert cands
    first = cands[0]
    start = first["start"]
    n = first["steps"]
    anneal = stages(rec.events)[0]["anneal_steps"]
    assert 2 <= anneal < n
    lrs = rec.lrs[start : start + n]
    constant = n - anneal
    assert all(v == pytest.approx(first["lr"]) for v in lrs[:constant])
    decay = lrs[constant:]
    assert all(a > b for a, b in zip(decay, decay[1:]))  # strictly decreasing to the end
    assert decay[-1] == pytest.approx(first["lr"] / (anneal + 1))
    # the score is the mean of the post-anneal losses, not an extrapolation
    last = max(2, anneal // 2)
    assert first["forecast"] == pytest.approx(sum(rec.losses[start + n - last : start + n]) / last)


def test_planned_lr_matches_the_annealed_trial_rates():
    cfg = Config.stagewise(candidates=2, tau=60, min_trial_steps=10, anneal_fraction=0.5)
    ctrl = StageController(cfg, total_steps=800, lr_range=(1e-3, 1.0), seed=0)
    problem = NoisyQuadratic(seed=1)
    lr = ctrl.lr

    def execute(actions):
        nonlocal lr
        for a in actions:
            if isinstance(a, SetLR):
                lr = a.lr
            elif isinstance(a, (Snapshot, Restore, Discard)):
                getattr(problem, type(a).__name__.lower())(a.slot)

    execute(ctrl.start())
    checked = 0
    while not ctrl.finished:
        if ctrl.in_trial and ctrl.quiet_steps >= 3:
            ahead = [ctrl.planned_lr(i) for i in range(3)]
            actual = []
            for _ in range(3):
                actual.append(lr)
                execute(ctrl.tell_loss(problem.train_step(lr)))
            assert actual == pytest.approx(ahead)
            checked += 1
        else:
            execute(ctrl.tell_loss(problem.train_step(lr)))
    assert checked > 10


def test_trust_region_keeps_later_candidates_near_the_previous_choice():
    cfg = Config.stagewise(candidates=4, trust_region=3.0)
    ctrl = StageController(cfg, total_steps=3000, lr_range=(1e-4, 10.0), seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 3000)
    # The centre is the rate of the last committed stage (a stage rolled back at its end does
    # not move it; its ceiling overrides the region for the next stage).
    centre, pending, ranges, checked = None, None, {}, 0
    for e in rec.events:
        if e["event"] == "decision":
            pending = e["lr"]
        elif e["event"] == "rollback" and "stage ended" in (e.get("reason") or ""):
            pending = None
        elif e["event"] == "ceiling":  # a rate that failed caps the range: it takes precedence
            centre = None
        elif e["event"] == "stage":
            if pending is not None:
                centre = pending
            pending = None
            low, high = ranges[e["stage"]] = e["search_range"]
            if centre is not None:
                assert low >= centre / 3.0 * (1 - 1e-9) and high <= centre * 3.0 * (1 + 1e-9)
                checked += 1
        elif e["event"] == "candidate":
            low, high = ranges[e["stage"]]
            assert low * (1 - 1e-9) <= e["lr"] <= high * (1 + 1e-9)
    assert checked >= 2


def test_later_candidates_and_start_at_previous():
    cfg = Config.stagewise(candidates=5, later_candidates=2, start_at_previous=True)
    ctrl = StageController(cfg, total_steps=3000, lr_range=(1e-3, 1.0), seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 3000)
    counts = [s["candidates"] for s in stages(rec.events)]
    assert counts[0] == 5 and len(counts) >= 2 and set(counts[1:]) == {2}
    # Each stage opens with the previous stage's rate, unless that stage was rolled back.
    previous, checked = None, 0
    for e in rec.events:
        if e["event"] == "decision":
            previous = e["lr"]
        elif e["event"] == "rollback":
            previous = None
        elif e["event"] == "candidate" and e["index"] == 0 and previous is not None:
            assert e["lr"] == pytest.approx(previous)
            checked += 1
    assert checked >= 2


def test_range_headroom_scales_the_search_range():
    from autolrs.core.range_test import suggest_range

    lrs = [10 ** (-5 + 0.05 * i) for i in range(100)]
    losses = [1.0 + (math.log10(lr) + 2) ** 2 for lr in lrs]  # lowest at 1e-2, no divergence
    a = suggest_range(lrs, losses, decades=3.0, headroom=0.5)
    b = suggest_range(lrs, losses, decades=3.0, headroom=1.0)
    assert b.high == pytest.approx(2 * a.high)
    assert b.high / b.low == pytest.approx(1e3)


def test_prefer_larger_within_exploits_the_largest_near_tie():
    from autolrs.core.actions import SetLR as _SetLR

    def run(margin):
        cfg = Config.stagewise(candidates=4, prefer_larger_within=margin, keep_winner=True)
        ctrl = StageController(cfg, total_steps=2000, lr_range=(1e-3, 1.0), seed=0)
        rec = drive(ctrl, NoisyQuadratic(seed=1), 2000)
        return rec

    plain, tolerant = run(None), run(0.5)
    assert any(isinstance(a, _SetLR) for a in tolerant.actions)
    for rec, margin in ((plain, None), (tolerant, 0.5)):
        for d in (e for e in rec.events if e["event"] == "decision"):
            healthy = [(lr, v) for lr, v in d["candidates"] if v is not None]
            if d["reason"] or not healthy:
                continue  # a rollback's re-decision, or every candidate diverged
            best = min(v for _, v in healthy)
            if margin is None:
                assert d["forecast"] == best
            else:
                near = [lr for lr, v in healthy if v <= best + margin * abs(best)]
                assert d["lr"] == max(near)
    # a wide margin changes at least one decision toward a larger rate
    pairs = zip(
        [e["lr"] for e in plain.events if e["event"] == "decision"],
        [e["lr"] for e in tolerant.events if e["event"] == "decision"],
    )
    assert any(b > a for a, b in pairs)


def test_a_snapshot_above_the_committed_level_does_not_fail_every_candidate():
    # The loss jumps to a higher plateau that no learning rate changes (e.g. the last steps of
    # a stage spiked right before its snapshot). The first loss of a trial is computed before
    # any step at the candidate's rate, so candidates are judged from there: none is called
    # divergent and the search range is not ratcheted down.
    import numpy as np

    cfg = Config.stagewise(candidates=3)
    ctrl = StageController(cfg, total_steps=1200, lr_range=(1e-3, 1.0), seed=0)
    rng = np.random.default_rng(0)
    ctrl.start()
    events = []
    for step in range(1200):
        level = 1.0 if step < 300 else 20.0
        ctrl.tell_loss(level * (1 + 0.01 * rng.standard_normal()))
        events.extend(ctrl.pop_events())
    # The stage during which the loss jumped is rolled back once (its loss did rise); after
    # that, stages start from the new level.
    ceilings = [e for e in events if e["event"] == "ceiling"]
    assert len(ceilings) <= 1
    after = max([e["step"] for e in ceilings], default=300)
    late = [e for e in candidates(events) if e["start"] >= after]
    assert late and not any(e["diverged"] for e in late)
    assert min(e["lr"] for e in events if e["event"] == "decision") >= 1e-4  # was 1e-19


def test_edge_shift_moves_a_found_range_toward_a_rate_at_its_edge():
    # headroom 0.05 puts the range test's guess too low: the first stage's choice lands at the
    # top edge and later stages search higher (never above half the sweep's divergence point).
    cfg = Config.stagewise(edge_shift=3.0, range_headroom=0.05, trust_region=None)
    ctrl = StageController(cfg, total_steps=3000, seed=0)
    rec = drive(ctrl, NoisyQuadratic(seed=1), 3000)
    found = next(e for e in rec.events if e["event"] == "range_test")
    shifts = [e for e in rec.events if e["event"] == "range_shift"]
    assert shifts
    range_now = [found["low"], found["high"]]
    for e in rec.events:
        if e["event"] == "range_shift":
            low, high = range_now
            position = math.log(e["lr"] / low) / math.log(high / low)
            assert position >= 0.9 or position <= 0.1
            new_low, new_high = e["search_range"]
            assert new_high / new_low == pytest.approx(high / low)
            assert new_high <= found["diverged_lr"] / 2.0 * (1 + 1e-9)
            range_now = e["search_range"]
        elif e["event"] == "stage":
            assert e["search_range"] == pytest.approx(range_now)
    # the switch off, or a range the user gave: the range never moves
    for config, lr_range in ((Config.stagewise(range_headroom=0.05, trust_region=None), None), (cfg, (1e-4, 0.05))):
        ctrl = StageController(config, total_steps=3000, lr_range=lr_range, seed=0)
        rec = drive(ctrl, NoisyQuadratic(seed=1), 3000)
        assert not any(e["event"] == "range_shift" for e in rec.events)


def test_a_rollback_excludes_the_failed_rates_near_twins():
    # Candidates 1 % apart: after the exploit at one of them fails, the re-decision must not
    # pick its twin (which would fail the same way) but a clearly different rate.
    ctrl = StageController(Config.stagewise(candidates=3, trust_region=None), lr_range=(1e-3, 1.0), seed=0, total_steps=600)
    ctrl.start()
    while ctrl.phase != "exploit":
        ctrl.tell_loss(1.0)
    chosen = ctrl.lr
    twin, other = chosen * 1.01, chosen / 10.0
    state = ctrl.state_dict()
    results = _stage_results(state)
    results[:] = [
        {**results[0], "index": 0, "lr": chosen, "value": 0.50, "diverged": False},
        {**results[0], "index": 1, "lr": twin, "value": 0.51, "diverged": False},
        {**results[0], "index": 2, "lr": other, "value": 0.60, "diverged": False},
    ]
    ctrl.load_state_dict(state)
    ctrl.tell_loss(float("nan"))  # the exploit fails
    events = ctrl.pop_events()
    redo = [e for e in events if e["event"] == "decision"][-1]
    assert redo["reason"].startswith("rollback") and redo["lr"] == pytest.approx(other)


def _phase_state(state):
    """The current phase's own part of a controller state."""
    return state["state"]["phase_state"]


def _stage_results(state):
    """The current stage's trial results inside a controller state (a list of dicts)."""
    return _phase_state(state)["results"]


def test_a_budget_too_short_for_a_stage_decays_from_the_range_tests_pick():
    # 60 steps: a range test, then no stage fits. A sweep that reached divergence found where the
    # top is safe: the decay starts there (an LR finder's pick), not at the range's middle.
    from autolrs.testing import NoisyQuadratic, drive

    controller = StageController(Config.stagewise(), total_steps=60, seed=0)
    record = drive(controller, NoisyQuadratic(seed=0, curvature=(0.1, 10.0)), 60)
    found = next(e for e in record.events if e["event"] == "range_test")
    final = next(e for e in record.events if e["event"] == "final")
    assert found["diverged_lr"] is not None and not any(e["event"] == "stage" for e in record.events)
    assert final["lr"] == pytest.approx(found["high"])
    # A sweep that never diverged leaves the top unknown: the middle of the range, as before.
    quiet = StageController(Config.stagewise(), total_steps=60, seed=0)
    record = drive(quiet, NoisyQuadratic(seed=0), 60)
    found = next(e for e in record.events if e["event"] == "range_test")
    final = next(e for e in record.events if e["event"] == "final")
    assert found["diverged_lr"] is None
    assert final["lr"] == pytest.approx((found["low"] * found["high"]) ** 0.5)
