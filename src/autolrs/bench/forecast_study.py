"""How well does a short trial predict which learning rate wins a stage?

For a workload, a model is trained at the optimizer's default learning rate to a few checkpoints.
From each checkpoint, every learning rate of a log grid trains a whole stage of ``tau`` steps on
the same batches (common random numbers), recording every step's loss; separately, each also
runs a short trial of ``tau' = tau/10`` steps whose last 30 % decay linearly to zero (the
``anneal_fraction`` scoring). Each scoring rule sees only the first ``tau'`` steps (or the annealed
trial) and predicts the loss at ``tau``; the realised value is the mean training loss over the
stage's last 5 % of steps.

Reported per rule: the forecast error (median absolute and relative), the rank correlation of
predicted and realised losses across the grid, and the regret of the rate each rule would pick
(realised loss of its pick minus the best realised loss), which is what a stage decision costs.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from autolrs.bench.workloads import get_workload
from autolrs.core.forecast import ExponentialForecaster, paper_forecast

__all__ = ["RULES", "run_study", "write_study"]


def _paper(y: np.ndarray, horizon: float) -> float:
    return paper_forecast(y, horizon)


def _robust(y: np.ndarray, horizon: float) -> float:
    return (
        ExponentialForecaster()
        .fit(np.arange(len(y), dtype=float), y, horizon=horizon)
        .predict(horizon)
    )


def _last(y: np.ndarray, horizon: float) -> float:
    return float(np.mean(y[-max(2, len(y) // 5) :]))


RULES: dict[str, Callable[[np.ndarray, float], float]] = {
    "paper exponential": _paper,
    "robust exponential": _robust,
    "last value (no extrapolation)": _last,
}


def _checkpoints(
    work: Any, seed: int, steps: list[int]
) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(step, model state, optimizer state) at each of ``steps`` of a run at the default rate."""
    model = work.model(seed)
    opt = work.make_optimizer(model.parameters(), lr=work.default_lr)
    batches = work.batches(seed)
    out, done = [], 0
    for target in sorted(steps):
        while done < target:
            loss = work.loss(model, next(batches))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
        out.append((target, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())))
    return out




def _run_branch(
    work: Any, seed: int, state: tuple[dict, dict], lrs_by_step: list[float], batches: list[Any]
) -> list[float]:
    model = work.model(seed)
    model.load_state_dict(state[0])
    opt = work.make_optimizer(model.parameters(), lr=lrs_by_step[0])
    opt.load_state_dict(copy.deepcopy(state[1]))
    losses = []
    for lr, batch in zip(lrs_by_step, batches):
        for group in opt.param_groups:
            group["lr"] = lr
        loss = work.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss)
        losses.append(value if math.isfinite(value) else math.inf)
        if not math.isfinite(value):
            break
    return losses


def run_study(
    workload: str,
    *,
    seed: int = 0,
    fractions: tuple[float, ...] = (0.1, 0.3, 0.6),
    lr_factors: tuple[float, ...] = (1 / 30, 1 / 10, 1 / 3, 1.0, 2.0),
    tau_fraction: float = 0.2,
    anneal_fraction: float = 0.3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the study on one workload; returns per-checkpoint curves and per-rule scores."""
    work = get_workload(workload)
    tau = max(50, int(round(tau_fraction * work.step_hint)))
    trial = max(10, tau // 10)
    anneal = max(2, int(round(anneal_fraction * trial)))
    lrs = [work.default_lr * f for f in lr_factors]
    steps = [int(round(f * work.step_hint)) for f in fractions]
    started = time.perf_counter()
    points = []
    for step, model_state, opt_state in _checkpoints(work, seed, steps):
        stream = work.batches(seed + 1000 + step)
        batches = [next(stream) for _ in range(tau)]
        curves, annealed = {}, {}
        for lr in lrs:
            curves[lr] = _run_branch(work, seed, (model_state, opt_state), [lr] * tau, batches)
            schedule = [lr] * (trial - anneal) + [
                lr * (anneal - i) / (anneal + 1) for i in range(anneal)
            ]
            trial_losses = _run_branch(
                work, seed, (model_state, opt_state), schedule, batches[:trial]
            )
            annealed[lr] = (
                float(np.mean(trial_losses[-max(2, anneal // 2) :]))
                if len(trial_losses) == trial
                else math.inf
            )
        points.append({"step": step, "curves": curves, "annealed": annealed})
        log(f"  {workload}: checkpoint {step} done ({time.perf_counter() - started:.0f}s)")
    return {
        "workload": workload,
        "tau": tau,
        "trial": trial,
        "anneal": anneal,
        "lrs": lrs,
        "points": points,
    }


def _realised(curve: list[float], tau: int) -> float:
    if len(curve) < tau:
        return math.inf
    tail = curve[-max(3, tau // 20) :]
    return float(np.mean(tail))


def _rank_corr(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return math.nan
    value = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return float(value)


def score_rules(study: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per rule: median |error|, median relative error, mean rank correlation, mean regret."""
    tau, trial = study["tau"], study["trial"]
    out: dict[str, dict[str, list[float]]] = {}
    for point in study["points"]:
        realised = {lr: _realised(c, tau) for lr, c in point["curves"].items()}
        best = min(realised.values())
        predictions: dict[str, dict[float, float]] = {}
        for name, rule in RULES.items():
            predictions[name] = {}
            for lr, curve in point["curves"].items():
                head = np.asarray(curve[:trial], dtype=float)
                ok = len(head) == trial and np.all(np.isfinite(head))
                predictions[name][lr] = rule(head, tau) if ok else math.inf
        predictions["annealed trial (anneal_fraction)"] = dict(point["annealed"])
        for name, pred in predictions.items():
            stats = out.setdefault(name, {"abs": [], "rel": [], "corr": [], "regret": []})
            for lr in pred:
                if (
                    math.isfinite(pred[lr])
                    and math.isfinite(realised[lr])
                    and not name.startswith("annealed")
                ):
                    stats["abs"].append(abs(pred[lr] - realised[lr]))
                    stats["rel"].append(
                        abs(pred[lr] - realised[lr]) / max(abs(realised[lr]), 1e-12)
                    )
            stats["corr"].append(_rank_corr(list(pred.values()), [realised[lr] for lr in pred]))
            pick = min(pred, key=lambda lr: pred[lr] if math.isfinite(pred[lr]) else math.inf)
            stats["regret"].append(
                realised[pick] - best if math.isfinite(realised[pick]) else math.inf
            )
    summary = {}
    for name, stats in out.items():
        summary[name] = {
            "median_abs_error": float(np.median(stats["abs"])) if stats["abs"] else math.nan,
            "median_rel_error": float(np.median(stats["rel"])) if stats["rel"] else math.nan,
            "rank_correlation": float(np.nanmean(stats["corr"])) if stats["corr"] else math.nan,
            "mean_regret": float(np.mean(stats["regret"])),
            "decisions": len(stats["regret"]),
        }
    return summary


def write_study(studies: list[dict[str, Any]], path: str, command: str) -> str:
    """Writes the Markdown report of one or more studies."""
    lines = [
        "# Forecast-error study: which trial score picks the stage's best learning rate?",
        "",
        f"Command: `{command}`",
        "",
        "From checkpoints of a run at the default learning rate, each rate of a grid trains a full "
        "stage of tau steps on the same batches; each rule sees the first tau' = tau/10 steps only "
        "(or an annealed trial of tau' steps whose last 30 % decay to zero) and predicts the loss "
        "at tau (realised: mean training loss over the stage's last 5 %). Regret = realised loss of "
        "the rule's pick minus the best realised loss, averaged over checkpoints. Errors are not "
        "defined for the annealed trial, which is a score, not a forecast of the loss level.",
        "",
    ]
    for study in studies:
        summary = score_rules(study)
        lines.append(
            f"## {study['workload']} (tau {study['tau']}, tau' {study['trial']}, "
            f"checkpoints {[p['step'] for p in study['points']]}, rates {[f'{lr:.3g}' for lr in study['lrs']]})"
        )
        lines.append("")
        lines.append(
            "| rule | median abs error | median rel error | rank correlation | mean regret |"
        )
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for name, row in summary.items():
            lines.append(
                f"| {name} | {row['median_abs_error']:.4f} | {row['median_rel_error']:.1%} | "
                f"{row['rank_correlation']:.2f} | {row['mean_regret']:.4f} |"
            )
        lines.append("")
        lines.append("Realised stage-end loss per checkpoint and rate:")
        lines.append("")
        lines.append("| checkpoint | " + " | ".join(f"{lr:.3g}" for lr in study["lrs"]) + " |")
        lines.append("| ---: | " + " | ".join("---:" for _ in study["lrs"]) + " |")
        for point in study["points"]:
            cells = [f"{_realised(point['curves'][lr], study['tau']):.4f}" for lr in study["lrs"]]
            lines.append(f"| {point['step']} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text
