"""Tiers of the benchmark and the loop that runs them."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autolrs.bench.harness import RunResult, read_jsonl, run_method, write_jsonl
from autolrs.bench.methods import METHODS, resolve_method
from autolrs.bench.targets import load_targets, machine, versions
from autolrs.bench.workloads import get_workload

__all__ = ["SUITES", "Suite", "run_suite"]


@dataclass(frozen=True)
class Suite:
    """A benchmark tier."""

    name: str
    workloads: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int
    budget_factors: tuple[float, ...] = (1.0,)


ALL_METHODS = (
    "autolrs",
    "autolrs-paper",
    "autolrs-paper-rangetest",
    "oracle",
    "naive",
    "wsd",
    "schedulefree",
    "prodigy",
    "dadapt",
    "lrfinder-onecycle",
)

SUITES = {
    "quick": Suite("quick", ("digits",), ("autolrs", "autolrs-paper", "naive", "schedulefree"), 1),
    "standard": Suite("standard", ("digits", "fashion-cnn", "shakespeare-char"), ALL_METHODS, 2),
    "full": Suite(
        "full",
        ("digits", "fashion-cnn", "shakespeare-char", "fashion-resnet"),
        ALL_METHODS,
        3,
        (1.0, 2.0),
    ),
}


def _missing_requirements(method: str) -> list[str]:
    return [m for m in METHODS[method].requires if importlib.util.find_spec(m) is None]


def run_suite(
    suite: Suite,
    out_dir: str,
    *,
    targets_path: str,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    command: str = "",
    threads: int | None = None,
) -> list[RunResult]:
    """Runs every (budget factor, workload, method, seed) of ``suite``; appends to runs.jsonl.

    Runs already present in ``out_dir/runs.jsonl`` (same workload, method, seed and budget)
    are not repeated, so an interrupted suite resumes where it stopped.

    Raises:
        ImportError: If a method's package is missing (names the install command).
    """
    for method in suite.methods:
        resolve_method(method)
        missing = _missing_requirements(method)
        if missing:
            raise ImportError(
                f'method {method!r} needs {", ".join(missing)}; install with: pip install "autolrs[bench]"'
            )
    targets = load_targets(targets_path).get("workloads", {})
    os.makedirs(out_dir, exist_ok=True)
    runs_path = os.path.join(out_dir, "runs.jsonl")
    done = read_jsonl(runs_path) if os.path.exists(runs_path) else []
    seen = {(r.workload, r.method, r.seed, r.budget) for r in done}
    header = {
        "suite": suite.name,
        "command": command or " ".join(sys.argv),
        "versions": versions(),
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_jsonl(runs_path, [], header)
    plan = [
        (factor, workload, method, seed)
        for factor in suite.budget_factors
        for workload in suite.workloads
        for method in suite.methods
        for seed in range(suite.seeds)
    ]
    results = list(done)
    started = time.perf_counter()
    elapsed_runs: list[float] = []
    per_step: dict[str, list[float]] = {}
    cache: dict[str, Any] = {}
    for index, (factor, name, method, seed) in enumerate(plan, 1):
        work = cache.get(name) or get_workload(name)
        cache[name] = work
        budget = int(round(work.budget * factor))
        if (name, method, seed, budget) in seen:
            continue
        info = targets.get(name, {})
        work.extra["oracle_lr"] = info.get("oracle", {}).get("lr")
        target = info.get("target")
        if method == "oracle" and work.extra["oracle_lr"] is None:
            log(f"[{index}/{len(plan)}] skip oracle on {name}: no targets (run --set-targets)")
            continue
        t0 = time.perf_counter()
        res = run_method(
            METHODS[method].run, work, method, seed, budget=budget, target=target, threads=threads
        )
        res.extra["budget_factor"] = factor
        elapsed_runs.append(time.perf_counter() - t0)
        write_jsonl(runs_path, [res])
        results.append(res)
        per_step.setdefault(name, []).append(elapsed_runs[-1] / max(budget, 1))
        eta = _eta(plan[index:], per_step, cache, elapsed_runs)
        reached = "-" if not math.isfinite(res.steps_to_target) else f"{res.steps_to_target:.0f}"
        log(
            f"[{index}/{len(plan)}] {name} x{factor:g} {method} seed {seed}: final {res.final_score:.4f}, "
            f"to target {reached} steps, {elapsed_runs[-1]:.0f}s; elapsed {time.perf_counter() - started:.0f}s, "
            f"ETA {eta / 60:.1f} min"
        )
    return results


def _eta(
    remaining: list[tuple[float, str, str, int]],
    per_step: dict[str, list[float]],
    cache: dict[str, Any],
    elapsed: list[float],
) -> float:
    """Seconds left: each remaining run's budget times its workload's measured seconds per step
    (workloads not run yet borrow the slowest measured rate)."""
    if not elapsed:
        return math.nan
    rates = {name: sum(v) / len(v) for name, v in per_step.items()}
    fallback = max(rates.values())
    total = 0.0
    for factor, name, _, _ in remaining:
        work = cache.get(name)
        budget = work.budget * factor if work is not None else 1500 * factor
        total += budget * rates.get(name, fallback)
    return total
