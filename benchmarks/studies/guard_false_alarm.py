"""Stage-guard false-alarm rate (issue 13, measurement A).

A false alarm is the stage guard (``Config.stage_guard``) firing on a run that trains at a
known good constant learning rate. This script

1. trains each workload at constant good rates for its step hint H (diabetes-overfit: only its
   first H/5 steps, before it overfits) and records every training mini-batch loss (the value
   the controller is given, computed before the step);
2. replays the exploit phase's guard on those losses exactly as ``phases/exploit.py`` applies
   it: the checks half-way (``checkpoints(length, parts=2)``) and at the end, each calling
   ``StageGuard.got_worse`` on the phase's losses since its last checkpoint (and
   ``StageGuard.z_needed`` for the z it would need not to fire), with a
   ``CommittedLevel`` that has ``record``-ed the committed losses before the stage and run
   ``begin_stage`` (and the trials' ``lifted`` on the stage's first loss);
3. counts fires / checks for z in {2.5, 3.5, 5}, and the z each check would need not to fire.

Two references, as the exploit phase has them:

* ``kept``: the default path (``keep_winner=True``): the exploit continues the winning trial
  (its tau' steps are the stage's first tau' steps here) and the reference is that trial's
  ``level`` (``autolrs.core.level.trial_level`` of its last 3 losses);
* ``kept8`` (hypothetical, NOT the library's behaviour): as ``kept`` with the reference the
  median of the winning trial's last 8 losses, to see how much of ``kept``'s rate the
  3-loss reference causes;
* ``snapshot``: the exploit restarts from the stage snapshot (a chosen candidate that is not
  the kept winner, and every exploit after a rollback): the reference is the committed level.

Two stage layouts:

* ``planned``: the stages ``autolrs.core.planning`` makes for the default ``Config()`` with
  ``total_steps = H`` (the fair suite's B = H): range test, then stages of tau (and tau') as
  ``plan_stage`` fits them (with the library's ``tau_plan`` and per-stage
  ``stage_candidates``), the trajectory advancing tau per stage (trials of losing
  candidates are discarded). The range test's 4 kept losses are the run's first 4 losses (the
  first stage starts at step 4 of the constant-rate run).
* ``sliding``: each planned tau (with its tau') started every 2.5 % of H (from the first
  such point that leaves 16 committed losses), the committed level being the 32 losses before.

Checks are counted independently: after a fire the replay goes on as if the check had passed
(the real controller would roll the stage back). ``phase`` rates count phases with >= 1 fire.

Usage:
    nice -n 10 .venv/bin/python benchmarks/studies/guard_false_alarm.py
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autolrs.bench.workloads import get_workload
from autolrs.core.config import Config
from autolrs.core.level import RECENT, CommittedLevel, robust_std, trial_level
from autolrs.core.phases.checkpoints import checkpoints
from autolrs.core.phases.trial_plan import stage_candidates
from autolrs.core.planning import (
    decay_length,
    plan_stage,
    range_test_length,
    stage_trial_fraction,
    tau_plan,
)
from autolrs.core.stage_guard import GUARD_WINDOW, StageGuard

ZS = (2.5, 3.5, 5.0)
RUNS = {
    # workload: (rates, steps as a fraction of H)
    "digits": ((0.05, 0.1), 1.0),
    "diamonds": ((1e-3, 2e-3), 1.0),
    "diabetes-overfit": ((1e-3,), 0.2),
}
VARIANTS = ("kept", "snapshot", "kept8")  # kept8: hypothetical, not what exploit.py does
TRIAL_TAIL = 3  # a trial's level is its last 3 losses (``Trial.tail`` in phases/trials.py)
RANGE_TEST_KEPT = 4  # the range test leaves its last 4 kept losses in the committed level


# --------------------------------------------------------------------------- training
def train_losses(name: str, lr: float, seed: int, steps: int) -> np.ndarray:
    """Every training loss of ``steps`` steps at constant ``lr`` (loss before each step)."""
    work = get_workload(name)
    model = work.model(seed)
    opt = work.make_optimizer(model.parameters(), lr=lr)
    batches = work.batches(seed)
    out = np.empty(steps)
    for i in range(steps):
        loss = work.loss(model, next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out[i] = float(loss.detach())
    return out


# --------------------------------------------------------------------------- the schedule
@dataclass(frozen=True)
class Stage:
    start: int  # trajectory step the stage starts at
    trial: int  # tau'
    tau: int


def planned_stages(cfg: Config, total: int) -> tuple[list[Stage], dict]:
    """The default's stages for a budget of ``total`` steps, on the trajectory.

    The library's own pieces: its tau plan (:func:`autolrs.core.planning.tau_plan`, advanced
    by ``TauPlan.advance``), each stage's k (:func:`autolrs.core.phases.trial_plan.
    stage_candidates`, a rate held from the second stage on) and ``plan_stage`` inside the
    budget left; the study assumes every stage runs to plan (no rollback, no early stop) and,
    as the default did when it ran, ignores ``Config.discard_budget`` and the small-budget ramp
    (both change only budgets under about 800 steps).
    """
    r = range_test_length(cfg, total)
    taus = tau_plan(cfg, total)
    step, pos, out, ks = r, RANGE_TEST_KEPT, [], []
    while True:
        remaining = total - step - decay_length(cfg, total)
        k = stage_candidates(cfg, len(out), budgeted=True, holds_rate=bool(out))
        share = stage_trial_fraction(cfg, len(out))
        plan = plan_stage(cfg, taus.nominal, taus.maximum, remaining, k, share)
        if plan is None:
            break
        out.append(Stage(pos, plan.trial_steps, plan.tau))
        ks.append(plan.candidates)
        # keep_winner: the winner's trial steps count towards tau, the others are discarded.
        step += plan.candidates * plan.trial_steps + plan.tau - plan.trial_steps
        pos += plan.tau
        taus.advance(cfg.tau_growth)
    info = {
        "range_test_steps": r,
        "decay_steps": decay_length(cfg, total),
        "candidates": ks,
        "stages": [[s.start, s.trial, s.tau] for s in out],
        "budget_steps_used_by_stages": step,
    }
    return out, info


# --------------------------------------------------------------------------- the replay
def replay_phase(
    level: CommittedLevel,
    phase: np.ndarray,
    length: int,
    reference: float,
    reference_spread: float | None,
) -> list[dict]:
    """The guard's checks on one exploit phase of ``length`` steps whose losses are ``phase``.

    Returns one dict per check: where, the critical z, and got_worse at each z in ZS. Losses
    are recorded into ``level`` at the checkpoint and the end, as the exploit phase does.
    """
    checks = checkpoints(length, parts=2)
    losses: list[float] = []
    out = []
    for done, loss in enumerate(phase[:length].tolist(), start=1):
        losses = (losses + [loss])[-RECENT:]
        stage_end = done >= length
        checkpoint = not stage_end and done in checks
        if not (stage_end or checkpoint):
            continue
        guard = StageGuard(reference=reference, reference_spread=reference_spread)
        fired = {z: guard.got_worse(losses, level, z, length) for z in ZS}
        zc = guard.z_needed(losses, level, length)
        for z in ZS:
            assert fired[z] == (z < zc), (fired, zc, z)
        window = losses[-GUARD_WINDOW:]
        out.append(
            {
                "done": done,
                "kind": "end" if stage_end else "half",
                "n_window": len(window),
                "reference": reference,
                "mean": float(np.mean(window)),
                "noise_level": level.noise,
                "noise_window": robust_std(window) if len(window) >= 4 else None,
                "z_crit": zc,
                "fired": {str(z): bool(f) for z, f in fired.items()},
            }
        )
        for committed in losses:
            level.record(committed)
        losses = []
    return out


def stage_checks(
    level: CommittedLevel, losses: np.ndarray, stage: Stage, variant: str
) -> tuple[list[dict], int, int]:
    """Begins the stage on ``level`` and replays its exploit phase.

    Returns the checks and the trajectory span [first, end) of the exploit's losses.
    """
    level.begin_stage()
    s = stage.start
    # The stage's first loss (the snapshot's, before any step at a candidate's rate) may lift
    # the reference (trials.py, _divergence).
    level.reference = level.lifted(float(losses[s]), level.reference)
    if variant in ("kept", "kept8"):
        n = TRIAL_TAIL if variant == "kept" else 8
        tail = losses[s + stage.trial - n : s + stage.trial].tolist()
        reference, spread = trial_level(tail)
        first, length = s + stage.trial, stage.tau - stage.trial
    else:
        reference, spread = level.reference, None
        first, length = s, stage.tau
    if length <= 0:
        return [], first, first
    checks = replay_phase(level, losses[first:], length, reference, spread)
    for c in checks:
        c.update(stage_start=s, tau=stage.tau, trial=stage.trial, at=first + c["done"])
    return checks, first, first + length


def planned_checks(losses: np.ndarray, stages: list[Stage], variant: str) -> list[dict]:
    level = CommittedLevel()
    for loss in losses[:RANGE_TEST_KEPT]:
        level.record(float(loss))
    out = []
    for stage in stages:
        checks, _, _ = stage_checks(level, losses, stage, variant)
        out += [c for c in checks if c["at"] <= len(losses)]
        if stage.start + stage.tau >= len(losses):
            break
    return out


def sliding_checks(
    losses: np.ndarray, taus: list[tuple[int, int]], stride: int, variant: str
) -> list[dict]:
    out = []
    first = max(stride, 16)
    first = int(math.ceil(first / stride) * stride)
    for trial, tau in taus:
        for s in range(first, len(losses) - tau + 1, stride):
            level = CommittedLevel()
            for loss in losses[max(0, s - RECENT) : s]:
                level.record(float(loss))
            checks, _, _ = stage_checks(level, losses, Stage(s, trial, tau), variant)
            out += checks
    return out


# --------------------------------------------------------------------------- summary
def rates(checks: list[dict]) -> dict:
    """Fires / checks per z, per check and per phase, and the z quantiles."""
    out: dict = {"checks": len(checks)}
    phases: dict = {}
    for c in checks:
        phases.setdefault(
            (c["workload"], c["lr"], c["seed"], c["stage_start"], c["tau"]), []
        ).append(c)
    out["phases"] = len(phases)
    for z in ZS:
        fires = sum(c["fired"][str(z)] for c in checks)
        pf = sum(any(c["fired"][str(z)] for c in p) for p in phases.values())
        out[str(z)] = {"fires": fires, "rate": fires / max(len(checks), 1),
                       "phase_fires": pf, "phase_rate": pf / max(len(phases), 1)}
    zc = [c["z_crit"] for c in checks]
    if zc:
        out["z_for_5pct"] = float(np.quantile(zc, 0.95))
        out["z_for_1pct"] = float(np.quantile(zc, 0.99))
        out["z_crit_max"] = float(max(zc))
    return out


def fmt_rate(r: dict, z: float) -> str:
    d = r[str(z)]
    return f"{d['fires']}/{r['checks']} = {100 * d['rate']:.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs=3, default=(10, 5, 10),
                    metavar=("DIGITS", "DIAMONDS", "DIABETES"))
    ap.add_argument("--out", default="benchmarks/results/studies/guard-false-alarm")
    ap.add_argument("--retrain", action="store_true", help="ignore cached loss series")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "losses.npz"
    series: dict[str, np.ndarray] = {}
    if cache.exists() and not args.retrain:
        series = dict(np.load(cache))
    cfg = Config()
    seeds = dict(zip(RUNS, args.seeds))
    t0 = time.time()
    for name, (lrs, frac) in RUNS.items():
        work = get_workload(name)
        steps = int(round(frac * work.step_hint))
        for lr in lrs:
            for seed in range(seeds[name]):
                key = f"{name}|{lr:g}|{seed}"
                if key in series and len(series[key]) == steps:
                    continue
                t = time.time()
                series[key] = train_losses(name, lr, seed, steps)
                print(f"trained {key}: {steps} steps in {time.time() - t:.1f}s", flush=True)
                np.savez_compressed(cache, **series)
    train_seconds = time.time() - t0

    results: dict = {"command": " ".join(["python"] + sys.argv), "zs": list(ZS), "workloads": {}}
    all_checks: dict[str, list[dict]] = {}
    for name, (lrs, frac) in RUNS.items():
        work = get_workload(name)
        hint = work.step_hint
        stages, info = planned_stages(cfg, hint)
        taus = sorted({(s.trial, s.tau) for s in stages}, key=lambda t: t[1])
        stride = max(1, int(round(0.025 * hint)))
        wl = {"H": hint, "steps": int(round(frac * hint)), "plan": info, "stride": stride,
              "sliding_taus": [list(t) for t in taus], "rates": {}}
        for lr in lrs:
            per: dict[str, list[dict]] = {}
            for seed in range(seeds[name]):
                losses = series[f"{name}|{lr:g}|{seed}"]
                for layout in ("planned", "sliding"):
                    for variant in VARIANTS:
                        if layout == "planned":
                            checks = planned_checks(losses, stages, variant)
                        else:
                            checks = sliding_checks(losses, taus, stride, variant)
                        for c in checks:
                            c.update(seed=seed, workload=name, lr=lr)
                        per.setdefault(f"{layout}/{variant}", []).extend(checks)
            wl["rates"][f"{lr:g}"] = {k: rates(v) for k, v in per.items()}
            wl["rates"][f"{lr:g}"]["fires_2.5"] = {
                k: [
                    {f: c[f] for f in ("seed", "stage_start", "tau", "kind", "at", "n_window",
                                       "reference", "mean", "noise_level", "noise_window",
                                       "z_crit")}
                    for c in v if c["fired"]["2.5"]
                ]
                for k, v in per.items() if k.startswith("planned")
            }
            for k, v in per.items():
                all_checks.setdefault(k, []).extend(v)
        results["workloads"][name] = wl
    results["overall"] = {k: rates(v) for k, v in all_checks.items()}
    # Sliding layouts by stage length (tau) and by check (half-way, end).
    results["overall_by_tau"] = {
        k: {str(t): rates([c for c in v if c["tau"] == t]) for t in sorted({c["tau"] for c in v})}
        for k, v in all_checks.items()
    }
    results["overall_by_kind"] = {
        k: {kind: rates([c for c in v if c["kind"] == kind]) for kind in ("half", "end")}
        for k, v in all_checks.items()
    }
    results["seeds"] = seeds
    results["train_seconds"] = train_seconds
    results["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                           "numpy": np.__version__}
    results["machine"] = f"{platform.machine()} {platform.system()}, torch threads 1"
    (out / "results.json").write_text(json.dumps(results, indent=1))

    for layout in ("planned", "sliding"):
        for variant in VARIANTS:
            key = f"{layout}/{variant}"
            print(f"\n{key}: fires/checks (z=2.5 | 3.5 | 5); phases with a fire at 2.5; z for 5 %")
            for name, wl in results["workloads"].items():
                for lr, r in wl["rates"].items():
                    rr = r[key]
                    print(f"  {name:17s} {lr:>6s}  " + " | ".join(fmt_rate(rr, z) for z in ZS)
                          + f"  phases {rr['2.5']['phase_fires']}/{rr['phases']}"
                          + f"  z95 {rr.get('z_for_5pct', float('nan')):.2f}")
            rr = results["overall"][key]
            print(f"  {'overall':24s} " + " | ".join(fmt_rate(rr, z) for z in ZS)
                  + f"  phases {rr['2.5']['phase_fires']}/{rr['phases']}"
                  + f"  z95 {rr.get('z_for_5pct', float('nan')):.2f}")


if __name__ == "__main__":
    main()
