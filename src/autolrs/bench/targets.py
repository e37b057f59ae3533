"""Target setting: a tuned warm-up + cosine grid per workload fixes the score to reach.

For each workload, warm-up (2 %) + cosine over the step hint H is trained at >= 7 log-spaced
peak learning rates (a third of a decade apart, centred on the optimizer's default; extended
by one point when the best lies on an edge), with 2 seeds. A run's score is its best score-split
loss; the best peak by median score is the oracle; the target is its median score x 1.01.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from autolrs.bench.harness import (
    RunResult,
    _json_restore,
    _json_safe,
    median_curve,
    read_jsonl,
    run_method,
    steps_to_target,
    write_jsonl,
)
from autolrs.bench.methods import grid_cosine
from autolrs.bench.workloads import Workload, get_workload

__all__ = [
    "TARGETS_PATH",
    "load_targets",
    "machine",
    "nearest_grid_lrs",
    "recompute_targets",
    "set_targets",
    "summarize_grid",
    "versions",
]

TARGETS_PATH = os.path.join("benchmarks", "targets.json")


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    dists = {
        "autolrs": "autolrs",
        "torch": "torch",
        "numpy": "numpy",
        "scipy": "scipy",
        "sklearn": "scikit-learn",
        "schedulefree": "schedulefree",
        "prodigyopt": "prodigyopt",
        "dadaptation": "dadaptation",
        "torch_lr_finder": "torch-lr-finder",
    }
    for name, dist in dists.items():
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def machine() -> str:
    """A one-line description of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), torch threads {torch.get_num_threads()}, "
        f"{platform.system()} {platform.release()}"
    )


def load_targets(path: str = TARGETS_PATH) -> dict[str, Any]:
    """The committed targets, or an empty dict when the file does not exist."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return _json_restore(json.load(f))


def nearest_grid_lrs(info: dict[str, Any], count: int | str) -> list[float]:
    """The learning rates of a workload's committed grid nearest (in log) to its oracle lr.

    Args:
        info: The workload's entry of the targets file (``grid`` and ``oracle``).
        count: How many (the oracle and its neighbours: 3 gives the oracle and the LRs on each
            side of it), or ``"all"`` for the whole grid.

    Returns:
        The chosen LRs, ascending (empty when the workload has no committed grid).
    """
    lrs = sorted({float(g["lr"]) for g in info.get("grid", [])})
    oracle = info.get("oracle", {}).get("lr")
    if not lrs or oracle is None:
        return []
    if count == "all":
        return lrs
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"oracle grid size must be a count >= 0 or 'all', got {count!r}")
    near = sorted(lrs, key=lambda lr: (abs(math.log(lr / float(oracle))), lr))[:count]
    return sorted(near)


def _grid(default: float, extra_low: int = 0, extra_high: int = 0) -> list[float]:
    return [default * 10 ** (k / 3) for k in range(-3 - extra_low, 4 + extra_high)]


def set_targets(
    workloads: list[str],
    *,
    seeds: int = 2,
    path: str = TARGETS_PATH,
    log: Callable[[str], None] = print,
    command: str = "",
    runs_path: str | None = None,
) -> dict[str, Any]:
    """Runs the grid on each workload and writes the targets file (merged with existing ones).

    Args:
        workloads: The workloads to set targets for.
        seeds: Seeds per learning rate of the grid.
        path: The targets file to update.
        log: Where progress lines go.
        command: The command line recorded in the file (default: ``sys.argv``).
        runs_path: Where the grid's runs are appended (None: not kept).

    Returns:
        The targets file's content as written.
    """
    data = load_targets(path)
    data.setdefault("workloads", {})
    for name in workloads:
        work = get_workload(name)
        started = time.perf_counter()
        results = _grid_search(work, seeds, log, runs_path, started)
        entry = summarize_grid(results)
        entry.update(
            description=work.description,
            step_hint=work.step_hint,
            budget=work.budget,
            seeds=seeds,
            seconds=time.perf_counter() - started,
        )
        data["workloads"][name] = entry
        log(f"{name}: oracle lr {entry['oracle']['lr']:.3g}, target {entry['target']:.4f}")
    data.update(
        {
            "version": 1,
            "command": command or " ".join(sys.argv),
            "versions": versions(),
            "machine": machine(),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(data), f, indent=1, allow_nan=False, default=str)
        f.write("\n")
    return data


def _grid_search(
    work: Workload,
    seeds: int,
    log: Callable[[str], None],
    runs_path: str | None,
    started: float,
) -> dict[float, list[RunResult]]:
    """The tuned cosine's grid on ``work``, widened (at most twice per side) while its best
    median score sits at an edge; returns every rate's runs."""
    results: dict[float, list[RunResult]] = {}
    low_ext = high_ext = 0
    grid = _grid(work.default_lr)
    while True:
        for lr in grid:
            if lr not in results:
                results[lr] = [
                    _grid_run(work, lr, seed, log, runs_path, started) for seed in range(seeds)
                ]
        medians = {lr: _median_best(rs) for lr, rs in results.items()}
        best_lr = min(medians, key=medians.get)
        ordered = sorted(results)
        if best_lr == ordered[0] and low_ext < 2:
            low_ext += 1
        elif best_lr == ordered[-1] and high_ext < 2:
            high_ext += 1
        else:
            return results
        grid = _grid(work.default_lr, low_ext, high_ext)


def _grid_run(
    work: Workload,
    lr: float,
    seed: int,
    log: Callable[[str], None],
    runs_path: str | None,
    started: float,
) -> RunResult:
    """One run of the grid at ``lr``, appended to ``runs_path`` and logged."""
    res = run_method(grid_cosine(lr), work, f"grid-{lr:.3g}", seed, budget=work.budget)
    res.extra["lr"] = lr
    if runs_path:
        write_jsonl(runs_path, [res])
    best = min((s for _, s in res.curve), default=math.inf)
    log(
        f"  {work.name} lr={lr:.3g} seed={seed}: best score {best:.4f} "
        f"({time.perf_counter() - started:.0f}s)"
    )
    return res


def _median_best(runs: list[RunResult]) -> float:
    """A config's score: the lowest point of its median (over seeds) score curve."""
    return min((v for _, v in median_curve([r.curve for r in runs])), default=math.inf)


def summarize_grid(results: dict[float, list[RunResult]]) -> dict[str, Any]:
    """Oracle, target and oracle steps-to-target of a grid of runs (``lr -> runs``)."""
    medians = {lr: _median_best(rs) for lr, rs in results.items()}
    best_lr = min(medians, key=medians.get)
    target = medians[best_lr] * 1.01
    return {
        "score": "mean cross-entropy on the score split (lower is better); a config's score is the "
        "lowest point of its median (over seeds) score curve; target = the oracle's score x 1.01",
        "grid": [
            {
                "lr": lr,
                "best_scores": [min(s for _, s in r.curve) for r in rs],
                "median_best": medians[lr],
            }
            for lr, rs in sorted(results.items())
        ],
        "oracle": {"lr": best_lr, "median_best_score": medians[best_lr]},
        "target": target,
        "oracle_steps_to_target": steps_to_target(
            median_curve([r.curve for r in results[best_lr]]), target
        ),
    }


def recompute_targets(path: str = TARGETS_PATH, runs_path: str | None = None) -> dict[str, Any]:
    """Rebuilds every workload's oracle and target from the stored grid runs, without training.

    The grid runs are appended to ``benchmarks/results/targets-runs.jsonl`` by :func:`set_targets`.
    """
    data = load_targets(path)
    runs_path = runs_path or os.path.join(
        os.path.dirname(os.path.abspath(path)), "results", "targets-runs.jsonl"
    )
    runs = read_jsonl(runs_path)
    for name, info in data.get("workloads", {}).items():
        grid: dict[float, list[RunResult]] = {}
        for r in runs:
            if r.workload == name:
                lr = float(r.extra.get("lr", r.method.removeprefix("grid-")))
                key = next((k for k in grid if math.isclose(k, lr, rel_tol=2e-3)), lr)
                grid.setdefault(key, []).append(r)
        if grid:
            info.update(summarize_grid(grid))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(data), f, indent=1, allow_nan=False, default=str)
        f.write("\n")
    return data
