from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSWarning, Config, DivergenceError, StateDictError
from autolrs.torch.snapshot import SnapshotStore

from tests.torch.helpers import batches, make_data, make_model, state_equal, train

SMALL = Config.stagewise(tau=40, candidates=3, min_trial_steps=4)
PAPER_SMALL = Config.paper(tau=40, candidates=3, min_trial_steps=4)


def setup(config=SMALL, optimizer="sgd", **kwargs):
    model = make_model(batchnorm=kwargs.pop("batchnorm", False))
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    kwargs.setdefault("lr_range", (1e-3, 0.3))
    sched = AutoLRS(model, opt, config=config, seed=0, **kwargs)
    x, y = make_data()
    return model, opt, sched, batches(x, y)


# ------------------------------------------------------------------ snapshots
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_restore_is_bit_exact_for_model_optimizer_and_buffers(optimizer):
    model = make_model(batchnorm=True)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.AdamW(model.parameters(), lr=1e-2)
    )
    x, y = make_data()
    data = batches(x, y)
    for _ in range(3):  # create optimizer state
        xb, yb = next(data)
        nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()
    store = SnapshotStore(model, opt)
    store.save("stage")
    model_before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = copy.deepcopy(opt.state_dict())
    rng_before = torch.get_rng_state()
    for _ in range(5):  # a trial changes everything
        xb, yb = next(data)
        nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()
        torch.rand(3)
    assert not state_equal(model.state_dict(), model_before)
    store.restore("stage")
    assert state_equal(model.state_dict(), model_before)
    assert state_equal(opt.state_dict(), opt_before)
    assert torch.equal(torch.get_rng_state(), rng_before)
    # Restoring twice works: training after a restore must not have modified the snapshot.
    xb, yb = next(data)
    nn.functional.mse_loss(model(xb), yb).backward()
    opt.step()
    store.restore("stage")
    assert state_equal(model.state_dict(), model_before)
    assert state_equal(opt.state_dict(), opt_before)


def test_parameters_keep_their_identity_across_restores():
    model, opt, sched, data = setup()
    params = [id(p) for p in model.parameters()]
    train(sched, model, opt, data, 60)
    assert [id(p) for p in model.parameters()] == params
    assert [id(p) for p in opt.param_groups[0]["params"]] == params


def test_cpu_snapshots_restore_exactly():
    model, opt, sched, data = setup(snapshot_device="cpu")
    train(sched, model, opt, data, 100)
    assert all(t.device.type == "cpu" for t in sched._executor.store._slots["stage"]["model"].values())
    assert sched.snapshot_bytes > 0


# ------------------------------------------------------------------ learning rates
def test_learning_rate_follows_the_controller_and_keeps_group_ratios():
    model = make_model()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[-1].parameters(), "lr": 0.01},
        ]
    )
    sched = AutoLRS(model, opt, config=SMALL, lr_range=(1e-3, 0.3), seed=0)
    x, y = make_data()
    data = batches(x, y)
    seen = set()
    for _ in range(80):
        lrs = sched.get_last_lr()
        assert lrs[1] == pytest.approx(lrs[0] * 0.1)
        assert 1e-3 * 0.999 <= lrs[0] <= 0.3 * 1.001
        seen.add(round(lrs[0], 12))
        train(sched, model, opt, data, 1)
    assert len(seen) > 3  # candidates really changed the learning rate


def test_in_trial_is_true_exactly_while_candidates_run():
    model, opt, sched, data = setup()
    flags = []
    for _ in range(60):
        flags.append((sched.in_trial, sched.phase))
        train(sched, model, opt, data, 1)
    assert all(flag == (phase == "trial") for flag, phase in flags)
    assert any(flags) and not all(f for f, _ in flags)


# ------------------------------------------------------------------ faults
def test_nan_loss_in_a_candidate_rolls_back_and_training_continues():
    model, opt, sched, data = setup(config=PAPER_SMALL)
    snapshot = {}

    def fault(step, loss):
        if step == 6:  # inside the first candidate
            snapshot.update({k: v.clone() for k, v in sched._executor.store._slots["stage"]["model"].items()})
            return torch.tensor(float("nan"))
        return loss

    train(sched, model, opt, data, 7, fault=fault)
    assert state_equal(model.state_dict(), snapshot)  # rolled back to the stage snapshot
    train(sched, model, opt, data, 200)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    cand = [e for e in sched.events if e["event"] == "candidate"][1]  # trials are 4 steps
    assert cand["diverged"] and "non-finite" in cand["reason"] and cand["steps"] == 3


def test_nan_in_parameters_during_a_candidate_never_survives():
    model, opt, sched, data = setup(config=SMALL)

    def fault(step, loss):
        if step == 20:
            with torch.no_grad():
                model[0].weight[0, 0] = float("nan")
        return loss

    train(sched, model, opt, data, 150, fault=fault)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_persistent_divergence_raises_after_restoring_a_finite_model():
    config = Config.paper(tau=20, candidates=2, min_trial_steps=4, max_rollbacks=2)
    model, opt, sched, data = setup(config=config)
    with pytest.raises(DivergenceError, match="diverged 3 times"):
        train(sched, model, opt, data, 400, fault=lambda s, l: torch.tensor(float("inf")) if s > 20 else l)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_val_fn_raising_restores_the_snapshot_then_propagates():
    config = Config.stagewise(tau=40, candidates=3, min_trial_steps=4, objective="validation", val_points=4)
    calls = {"n": 0}
    holder = {}

    def val_fn():
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("validation data went away")
        return 1.0 / calls["n"]

    model, opt, sched, data = setup(config=config, val_fn=val_fn)
    holder["stage"] = {k: v.clone() for k, v in sched._executor.store._slots["stage"]["model"].items()}
    with pytest.raises(OSError, match="went away"):
        train(sched, model, opt, data, 10)
    assert state_equal(model.state_dict(), holder["stage"])
    assert model.training
    # The trial restarts from the snapshot; training can go on.
    train(sched, model, opt, data, 50)
    assert any(e["event"] == "rollback" for e in sched.events)


@pytest.mark.parametrize("bad", ["0.5", None, [0.3]])
def test_val_fn_returning_a_non_number_is_a_type_error_after_rollback(bad):
    config = Config.stagewise(tau=40, candidates=3, min_trial_steps=4, objective="validation", val_points=4)
    model, opt, sched, data = setup(config=config, val_fn=lambda: bad)
    with pytest.raises(TypeError, match="val_fn must return a number"):
        train(sched, model, opt, data, 5)
    assert sched.phase == "trial"


def test_a_val_fn_that_always_returns_nan_is_dropped_and_never_lowers_the_rate():
    # docs/bad-input.md 28 and 53: one NaN retries the candidate; a second in a row (training
    # finite) ends the trust in val_fn, said once, and candidates are scored by training loss.
    config = Config.stagewise(tau=40, candidates=3, min_trial_steps=4, objective="validation", val_points=4)
    calls = []
    model, opt, sched, data = setup(config=config, val_fn=lambda: calls.append(1) or float("nan"))
    with pytest.warns(AutoLRSWarning, match=r"val_fn returned NaN/inf 2 times in a row.*Fix val_fn"):
        train(sched, model, opt, data, 200)
    cands = [e for e in sched.events if e["event"] == "candidate"]
    assert cands and not any(c["diverged"] for c in cands)  # no rate vetoed by val_fn
    assert len(calls) == 2  # not called again once distrusted
    assert min(d["lr"] for d in sched.decisions) >= 1e-3  # the search range's floor: not lowered
    assert all(torch.isfinite(p).all() for p in model.parameters())
    restored = setup(config=config, val_fn=lambda: 1.0)[2]
    restored.load_state_dict(sched.state_dict())  # the distrust survives a resume
    assert not restored._executor.watch.trusted


def test_val_fn_restores_train_mode():
    config = Config.stagewise(tau=40, candidates=3, min_trial_steps=4, objective="validation", val_points=4)
    model, opt, sched, data = setup(config=config)

    def val_fn():
        model.eval()
        return 1.0

    sched.val_fn = val_fn
    sched._controller.validation = True
    train(sched, model, opt, data, 10)
    assert model.training


# ------------------------------------------------------------------ wrap (common random numbers)
def test_wrap_replays_the_same_batches_to_every_candidate():
    model, opt, sched, _ = setup(config=PAPER_SMALL)
    x, y = make_data()
    data = batches(x, y)
    by_candidate: dict[int, list[torch.Tensor]] = {}
    for step, (xb, yb) in enumerate(sched.wrap(data)):
        if step >= 4 * 3:  # the three candidates of stage 1
            break
        trial = sched._controller.state_dict()["state"]["phase_state"]["trial"]["index"]
        by_candidate.setdefault(trial, []).append(xb)
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    assert len(by_candidate) == 3
    for trial in (1, 2):
        assert all(torch.equal(a, b) for a, b in zip(by_candidate[0], by_candidate[trial]))


def test_wrap_stops_at_total_steps_and_at_the_end_of_the_loader():
    model, opt, sched, _ = setup(total_steps=50)
    x, y = make_data(n=256)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    steps = 0
    for xb, yb in sched.wrap(loader):  # 8 batches a pass: wrap() starts new passes itself
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        steps += 1
    assert steps == 50 and sched.finished
    with pytest.warns(AutoLRSWarning, match="wrap\\(\\) yields nothing: the run already took its total_steps=50"):
        assert list(sched.wrap([1, 2, 3])) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(sched.wrap(loader)) == []  # said once (an epoch loop around wrap())


def test_wrap_of_an_empty_iterable_yields_nothing():
    _, _, sched, _ = setup()
    assert list(sched.wrap([])) == []


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("cut", [10, 45, 130])
def test_state_dict_round_trip_resumes_exactly(tmp_path, cut):
    def run(resume_at=None):
        torch.manual_seed(0)
        model, opt, sched, _ = setup(total_steps=200)
        x, y = make_data()
        data = batches(x, y)
        lrs = []
        stream = sched.wrap(data)
        for step in range(200):
            if step == resume_at:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "sched": sched.state_dict(),
                        "rng": torch.get_rng_state(),
                    },
                    tmp_path / "ckpt.pt",
                )
                ckpt = torch.load(tmp_path / "ckpt.pt")
                model = make_model()
                opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
                sched = AutoLRS(model, opt, config=SMALL, seed=0, lr_range=(1e-3, 0.3), total_steps=200)
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["opt"])
                sched.load_state_dict(ckpt["sched"])
                torch.set_rng_state(ckpt["rng"])
                stream = sched.wrap(data)  # ``data`` is already at the position
            xb, yb = next(stream)
            lrs.append(sched.get_last_lr()[0])
            loss = nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss)
        return lrs, model.state_dict()

    lrs_full, model_full = run()
    lrs_resumed, model_resumed = run(resume_at=cut)
    assert lrs_resumed == lrs_full
    assert state_equal(model_resumed, model_full)


def test_controller_part_of_the_state_is_json_safe():
    model, opt, sched, data = setup()
    train(sched, model, opt, data, 33)
    json.dumps(sched.state_dict()["controller"])


def test_load_state_dict_rejects_foreign_states():
    model, opt, sched, data = setup()
    with pytest.raises(StateDictError, match="version"):
        sched.load_state_dict({"version": 7})
    with pytest.raises(StateDictError, match="misses key"):
        sched.load_state_dict({"version": 1, "controller": {}})
    with pytest.raises(StateDictError):
        sched.load_state_dict("not a dict")


# ------------------------------------------------------------------ misuse
def test_bad_arguments_raise_clear_errors():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        AutoLRS("model", opt)
    with pytest.raises(TypeError, match="optimizer must be"):
        AutoLRS(model, "sgd")
    with pytest.raises(ValueError, match="optimizer has no parameters"):
        AutoLRS(model, torch.optim.SGD([{"params": []}], lr=0.1))
    with pytest.raises(ValueError, match="total_steps"):
        AutoLRS(model, opt, total_steps=0)
    with pytest.raises(ValueError, match="lr_range"):
        AutoLRS(model, opt, lr_range=(1.0, 0.1))
    with pytest.raises(TypeError, match="val_fn must be callable"):
        AutoLRS(model, opt, val_fn=3.0)
    with pytest.raises(TypeError, match="extra_state"):
        AutoLRS(model, opt, extra_state=[object()])
    with pytest.raises(ValueError, match="sync_every"):
        AutoLRS(model, opt, sync_every=0)


@pytest.mark.parametrize("loss", ["0.3", torch.ones(2), [0.1], None, True, 1j])
def test_loss_that_is_not_a_number_is_a_type_error(loss):
    _, _, sched, _ = setup()
    with pytest.raises(TypeError, match="loss must be"):
        sched.step(loss)


def test_stepping_without_an_optimizer_step_warns():
    _, _, sched, _ = setup()
    with pytest.warns(AutoLRSWarning, match="optimizer.step"):
        sched.step(1.0)


def test_another_scheduler_changing_the_lr_is_reported_and_overridden():
    model, opt, sched, data = setup()
    other = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    used = []
    opt.register_step_pre_hook(lambda o, *_: used.append(o.param_groups[0]["lr"]))
    with pytest.warns(AutoLRSWarning, match="another LR scheduler"):
        for _ in range(3):
            expected = sched.get_last_lr()[0]
            other.step()  # halves the learning rate behind AutoLRS' back
            train(sched, model, opt, data, 1)
            assert used[-1] == pytest.approx(expected)  # the step still used AutoLRS' rate


# ------------------------------------------------------------------ deferred reads
def test_sync_every_gives_the_same_run_when_nothing_diverges():
    def run(sync_every):
        model, opt, sched, data = setup(total_steps=150, sync_every=sync_every)
        lrs = []
        for _ in range(150):
            lrs.append(sched.get_last_lr()[0])
            train(sched, model, opt, data, 1)
        return lrs, model.state_dict()

    lrs1, m1 = run(1)
    lrs8, m8 = run(8)
    assert lrs1 == lrs8 and state_equal(m1, m8)


def test_finish_leaves_the_model_in_the_committed_state():
    model, opt, sched, data = setup()
    train(sched, model, opt, data, 6)
    assert sched.in_trial
    stage = {k: v.clone() for k, v in sched._executor.store._slots["stage"]["model"].items()}
    with pytest.warns(AutoLRSWarning, match=(
        r"the training loop ended during stage 1's trials \(step 6\), before the trial was "
        r"decided: the model was restored to the last committed state \(the stage snapshot at "
        r"step 0\).*Pass total_steps"
    )):
        sched.finish()
    assert state_equal(model.state_dict(), stage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.finish()  # safe to call twice; nothing more to say


def test_log_file_receives_every_event(tmp_path):
    path = tmp_path / "run.jsonl"
    model, opt, sched, data = setup(log_file=path, total_steps=120)
    train(sched, model, opt, data, 120)
    sched.finish()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = {e["event"] for e in lines}
    assert {"start", "stage", "candidate", "decision", "segment"} <= kinds
    # every event, plus the training-loss records that only the file holds (autolrs plot)
    assert len([e for e in lines if e["event"] != "train_loss"]) == len(sched.events)
    assert sum(e["steps"] for e in lines if e["event"] == "train_loss") == 120
    assert all(math.isfinite(e["step"]) for e in lines)
