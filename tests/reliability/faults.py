"""A seeded fault-injection driver for a real (small) training run under AutoLRS.

Faults, injected at random steps: a NaN or infinite loss reported to ``sched.step``, NaN written
into a parameter during a candidate's trial, a NaN gradient, an exception from ``val_fn`` and a
``KeyboardInterrupt`` between steps. The snapshot store is instrumented so that every snapshot
is checked to be finite when taken and every restore to reproduce its snapshot bit for bit (no
half-restored mix of model and optimizer); the run must complete with finite parameters.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from autolrs import AutoLRS, AutoLRSWarning, Config
from autolrs.bench.workloads.digits import make_digits

KINDS = ("loss_nan", "loss_inf", "param_nan", "grad_nan", "val_raise", "interrupt")


@dataclass
class FaultReport:
    """What happened in one fault-injection run."""

    injected: Counter = field(default_factory=Counter)
    recovered: int = 0
    corruptions: list[str] = field(default_factory=list)
    interrupts: int = 0
    steps: int = 0
    final_accuracy: float = math.nan
    restores_checked: int = 0
    snapshots_checked: int = 0

    @property
    def total(self) -> int:
        return sum(self.injected.values())


def _state_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b))
    return a == b


def _finite_model(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


def run_with_faults(seed: int, *, total_steps: int = 400, faults: int = 12, family: str = "sgd") -> FaultReport:
    """Trains digits for ``total_steps`` under AutoLRS while injecting ``faults`` faults."""
    rng = np.random.default_rng(seed)
    report = FaultReport()
    work = make_digits(family)
    model = work.model(seed)
    opt = work.make_optimizer(model.parameters(), lr=work.default_lr)
    pending_val_failure = {"raise": False}

    def val_fn() -> float:
        if pending_val_failure["raise"]:
            pending_val_failure["raise"] = False
            raise RuntimeError("injected validation failure")
        return work.evaluate(model, "holdout")["loss"]

    config = Config(objective="validation", val_points=4)  # so that val_fn is called in trials
    sched = AutoLRS(model, opt, total_steps=total_steps, val_fn=val_fn, config=config, seed=seed)
    store = sched._executor.store
    original_save, original_restore = store.save, store.restore

    def checked_save(slot: str) -> None:
        report.snapshots_checked += 1
        if not _finite_model(model):
            report.corruptions.append(f"step {sched.steps_taken}: non-finite model committed to {slot!r}")
        original_save(slot)

    def checked_restore(slot: str) -> None:
        original_restore(slot)
        report.restores_checked += 1
        snap = store._slots[slot]
        if not _state_equal(model.state_dict(), snap["model"]):
            report.corruptions.append(f"step {sched.steps_taken}: model differs from {slot!r} after restore")
        if not _state_equal(opt.state_dict(), snap["optimizer"]):
            report.corruptions.append(f"step {sched.steps_taken}: optimizer differs from {slot!r} after restore")

    store.save, store.restore = checked_save, checked_restore

    plan = {int(s): KINDS[int(k)] for s, k in zip(
        rng.choice(np.arange(35, total_steps - 5), size=faults, replace=False),
        rng.integers(0, len(KINDS), size=faults),
    )}
    handled = ("rollback", "candidate", "range_test", "wasted")
    batches = sched.wrap(work.batches(seed))
    step = 0
    corrupted_since: int | None = None
    while step < total_steps:
        kind = plan.pop(step, None)
        if kind == "interrupt":
            report.injected[kind] += 1
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                report.interrupts += 1
                with warnings.catch_warnings():  # mid-trial, finish() says what it restored
                    warnings.filterwarnings("ignore", "the training loop ended", AutoLRSWarning)
                    sched.finish()  # a clean stop: never left in a candidate's state
                in_stage_state = _state_equal(model.state_dict(), store._slots["stage"]["model"])
                if sched.in_trial and not in_stage_state:
                    report.corruptions.append(f"step {step}: interrupted run left in a trial state")
                elif not _finite_model(model):
                    report.corruptions.append(f"step {step}: non-finite model after interrupt")
                else:
                    report.recovered += 1
            continue
        try:
            batch = next(batches)
        except StopIteration:
            break
        loss = work.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if kind == "grad_nan":
            report.injected[kind] += 1
            next(model.parameters()).grad.view(-1)[0] = float("nan")
            corrupted_since = step
        opt.step()
        reported: float | torch.Tensor = loss.detach()
        if kind == "param_nan" and sched.in_trial:
            report.injected[kind] += 1
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")
            corrupted_since = step
        elif kind in ("loss_nan", "loss_inf"):
            report.injected[kind] += 1
            reported = float("nan") if kind == "loss_nan" else float("inf")
        elif kind == "val_raise":
            pending_val_failure["raise"] = True
        events_before = sum(e["event"] in handled for e in sched.events)
        try:
            sched.step(reported)
        except RuntimeError as err:
            if "injected validation failure" not in str(err):
                raise
            report.injected["val_raise"] += 1
            # val_fn is only called during trials: the model must be back at the stage snapshot.
            if _state_equal(model.state_dict(), store._slots["stage"]["model"]):
                report.recovered += 1
            else:
                report.corruptions.append(f"step {step}: val_fn failure did not restore the stage snapshot")
        step += 1
        if kind in ("loss_nan", "loss_inf"):
            if sum(e["event"] in handled for e in sched.events) > events_before:
                report.recovered += 1
            else:
                report.corruptions.append(f"step {step}: a {kind} fault was not handled")
        if corrupted_since is not None:
            if _finite_model(model):
                corrupted_since = None
                report.recovered += 1
            elif step - corrupted_since > sched.sync_every + 1:
                report.corruptions.append(
                    f"step {step}: a non-finite parameter survived since step {corrupted_since}"
                )
                corrupted_since = None
    sched.finish()
    report.steps = sched.steps_taken
    if not _finite_model(model):
        report.corruptions.append("non-finite parameters at the end of the run")
    report.final_accuracy = work.evaluate(model, "score")["accuracy"]
    return report
