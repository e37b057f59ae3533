"""Tiers of the benchmark and the loop that runs them.

Two protocols. The fair suites (``fair``, ``fair-quick``) plan every method for the same budget
B = round(factor x H), H the workload's step hint, score it at its end, and rerun the tuned
cosine (warm-up 2 % + cosine over B) at every budget over the committed grid's learning rates
nearest the oracle's (``cosine@<lr>`` runs), which gives the curve speed-ups are read from.
The first protocol's tiers (``quick``, ``standard``, ``full``) keep their budget of
round(1.5 x H) x factor so that the result folders they wrote can be resumed and extended.
"""

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
from autolrs.bench.methods import METHODS, cosine_method, resolve_method, split_start_scale
from autolrs.bench.targets import load_targets, machine, nearest_grid_lrs, versions
from autolrs.bench.tuned import tuned_point
from autolrs.bench.workloads import WORKLOADS, Workload, get_workload

__all__ = ["SUITES", "Suite", "plan_suite", "run_suite"]


@dataclass(frozen=True)
class Suite:
    """A benchmark tier.

    Attributes:
        name: The tier's name.
        workloads: Workload names.
        methods: Method names (registered, or variants such as ``autolrs:field=value``).
        seeds: Seeds per method (the first protocol; the fair suites set the two below).
        budget_factors: Budgets, as factors (fair: of H; first protocol: of round(1.5 x H)).
        fair: Whether the suite follows the fair protocol.
        seeds_autolrs: Seeds of ``autolrs`` and every ``autolrs*`` method (None: ``seeds``).
        seeds_anchors: Seeds of every other method and of the cosine grid (None: ``seeds``).
        oracle_grid: The tuned cosine grid run at every budget: how many of the committed
            grid's LRs nearest the oracle's (0: none), or ``"all"``.
        threads: Torch threads per run (None: torch's default).
    """

    name: str
    workloads: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int = 1
    budget_factors: tuple[float, ...] = (1.0,)
    fair: bool = False
    seeds_autolrs: int | None = None
    seeds_anchors: int | None = None
    oracle_grid: int | str = 0
    threads: int | None = None

    def seeds_for(self, method: str) -> int:
        """How many seeds ``method`` runs: autolrs and its variants get ``seeds_autolrs``,
        the anchors and the cosine grid ``seeds_anchors`` (each falling back to ``seeds``)."""
        if method.startswith("autolrs"):
            return self.seeds_autolrs if self.seeds_autolrs is not None else self.seeds
        return self.seeds_anchors if self.seeds_anchors is not None else self.seeds

    def budget_for(self, work: Workload, factor: float) -> int:
        """The step budget at ``factor``: round(factor x H) in a fair suite; the first
        protocol's round(round(1.5 x H) x factor) otherwise."""
        if self.fair:
            return max(1, int(round(factor * work.step_hint)))
        return int(round(work.budget * factor))


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

FAIR_METHODS = (
    "autolrs",
    "naive",
    "wsd",
    "schedulefree",
    "prodigy",
    "dadapt",
    "lrfinder-onecycle",
)

SWEEP_SCALES = (0.01, 0.1, 1.0, 10.0)
"""The starting rates of the sweep, as factors of the tuned cosine's rate."""

SWEEP_METHODS = (
    *(f"autolrs@x{scale:g}" for scale in SWEEP_SCALES),
    "naive",
    "schedulefree",
    "prodigy",
    "dadapt",
)

SUITES = {
    # the first protocol (budget 1.5H): kept for the result folders it wrote
    "quick": Suite("quick", ("digits",), ("autolrs", "autolrs-paper", "naive", "schedulefree"), 1),
    "standard": Suite("standard", ("digits", "fashion-cnn", "shakespeare-char"), ALL_METHODS, 2),
    "full": Suite(
        "full",
        ("digits", "fashion-cnn", "shakespeare-char", "fashion-resnet"),
        ALL_METHODS,
        3,
        (1.0, 2.0),
    ),
    # the fair protocol: every method planned for B = factor x H and scored at its end
    "fair": Suite(
        "fair",
        ("digits", "fashion-cnn", "shakespeare-char", "diamonds", "diabetes-overfit"),
        FAIR_METHODS,
        budget_factors=(0.5, 1.0, 2.0),
        fair=True,
        seeds_autolrs=5,
        seeds_anchors=3,
        oracle_grid=3,
        threads=1,
    ),
    # the start-rate sweep: autolrs with the optimizer built at the tuned cosine's rate
    # (chosen on the tuning holdout at each budget) times 1/100, 1/10, 1 and 10
    "sweep": Suite(
        "sweep",
        ("digits", "fashion-cnn", "shakespeare-char", "diamonds", "diabetes-overfit"),
        SWEEP_METHODS,
        budget_factors=(0.5,),
        fair=True,
        seeds_autolrs=5,
        seeds_anchors=3,
        oracle_grid=3,
        threads=1,
    ),
    "fair-quick": Suite(
        "fair-quick",
        ("digits",),
        ("autolrs", "naive"),
        budget_factors=(1.0,),
        fair=True,
        seeds_autolrs=2,
        seeds_anchors=1,
        oracle_grid=1,
        threads=1,
    ),
}


def _missing_requirements(method: str) -> list[str]:
    return [m for m in METHODS[method].requires if importlib.util.find_spec(m) is None]


def plan_suite(
    suite: Suite, targets: dict[str, Any], log: Callable[[str], None] | None = None
) -> list[tuple[float, str, str, int]]:
    """Every ``(budget factor, workload, method, seed)`` the suite runs, in order: per budget
    and workload, the suite's methods, then the cosine grid (``cosine@<lr>``, from the committed
    grid in ``targets``; skipped with a message for a workload without one)."""
    plan = []
    for factor in suite.budget_factors:
        for workload in suite.workloads:
            methods = list(suite.methods)
            if suite.oracle_grid:
                lrs = nearest_grid_lrs(targets.get(workload, {}), suite.oracle_grid)
                if not lrs and log is not None and factor == suite.budget_factors[0]:
                    log(f"no committed cosine grid for {workload}: no tuned curve, no speed-ups "
                        "(run autolrs bench --set-targets)")
                grid = [cosine_method(lr) for lr in lrs]  # registered at the exact LRs
                grid = [m for m in grid if m not in methods]
                # a start-scaled method needs the tuned rate: the grid runs first then
                scaled = any(split_start_scale(m)[1] is not None for m in methods)
                methods = grid + methods if scaled else methods + grid
            for method in methods:
                for seed in range(suite.seeds_for(method)):
                    plan.append((factor, workload, method, seed))
    return plan


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

    Args:
        suite: The suite to run.
        out_dir: The folder of ``runs.jsonl`` (made if missing).
        targets_path: The ``targets.json`` giving each workload's target and oracle rate.
        log: Where progress lines go.
        command: The command line recorded in the header (default: ``sys.argv``).
        threads: Torch threads per run (None: the suite's setting).

    Returns:
        Every run of the suite, the ones found in ``runs.jsonl`` included.

    Raises:
        ValueError: If a workload or method is unknown.
        ImportError: If a method's package is missing (names the install command).
    """
    _check_workloads(suite)
    threads = _set_threads(threads if threads is not None else suite.threads)
    targets = load_targets(targets_path).get("workloads", {})
    plan = plan_suite(suite, targets, log)
    _check_methods(plan)
    os.makedirs(out_dir, exist_ok=True)
    runs_path = os.path.join(out_dir, "runs.jsonl")
    done = read_jsonl(runs_path) if os.path.exists(runs_path) else []
    seen = {(r.workload, r.method, r.seed, r.budget) for r in done}
    write_jsonl(runs_path, [], _suite_header(suite, command, threads))
    cache = {name: get_workload(name) for name in suite.workloads}  # a missing data set fails now
    _log_todo(suite, plan, cache, seen, threads, log)
    results = list(done)
    progress = _Progress(plan, cache, suite, seen, log)
    for index, (factor, name, method, seed) in enumerate(plan, 1):
        work = cache[name]
        budget = suite.budget_for(work, factor)
        if (name, method, seed, budget) in seen:
            continue
        target = _prepare_workload(work, method, budget, targets.get(name, {}), results)
        if method == "oracle" and work.extra["oracle_lr"] is None:
            log(f"[{index}/{len(plan)}] skip oracle on {name}: no targets (run --set-targets)")
            continue
        t0 = time.perf_counter()
        res = _run_one(suite, work, method, seed, factor, budget, target, threads)
        elapsed = time.perf_counter() - t0
        write_jsonl(runs_path, [res])
        results.append(res)
        seen.add((name, method, seed, budget))
        progress.ran(index, budget, res, elapsed)
    return results


def _log_todo(
    suite: Suite,
    plan: list[tuple[float, str, str, int]],
    cache: dict[str, Workload],
    seen: set[tuple[str, str, int, int]],
    threads: int | None,
    log: Callable[[str], None],
) -> None:
    """Logs how many runs the plan holds, how many are left to run and their steps."""
    todo = [
        (name, method, seed, suite.budget_for(cache[name], factor))
        for factor, name, method, seed in plan
        if (name, method, seed, suite.budget_for(cache[name], factor)) not in seen
    ]
    log(
        f"{suite.name}: {len(plan)} runs planned, {len(todo)} to run "
        f"({sum(b for *_, b in todo):,} steps), torch threads {threads or 'default'}"
    )


def _set_threads(threads: int | None) -> int | None:
    """Sets torch's threads (None: leaves torch's default); returns ``threads``."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return threads


def _check_workloads(suite: Suite) -> None:
    """Raises ValueError when one of ``suite``'s workloads is not registered."""
    unknown = [w for w in suite.workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(
            f"suite {suite.name!r}: workload(s) {unknown} are not registered (known: "
            f"{sorted(WORKLOADS)}); restrict the suite with --workloads"
        )


def _check_methods(plan: list[tuple[float, str, str, int]]) -> None:
    """Raises ValueError for an unknown method, ImportError for one whose package is missing."""
    for method in dict.fromkeys(m for _, _, m, _ in plan):
        resolve_method(method)
        missing = _missing_requirements(method)
        if missing:
            raise ImportError(
                f"method {method!r} needs {', '.join(missing)}; "
                'install with: pip install "autolrs[bench]"'
            )


def _suite_header(suite: Suite, command: str, threads: int | None) -> dict[str, Any]:
    """The header line of ``runs.jsonl``: the suite, the command, the versions, the machine."""
    return {
        "suite": suite.name,
        "protocol": "fair" if suite.fair else "first (budget 1.5H)",
        "command": command or " ".join(sys.argv),
        "threads": threads,
        "workloads": list(suite.workloads),
        "methods": list(suite.methods),
        "budget_factors": list(suite.budget_factors),
        "seeds": {"autolrs": suite.seeds_for("autolrs"), "anchors": suite.seeds_for("naive")},
        "oracle_grid": suite.oracle_grid,
        "versions": versions(),
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _prepare_workload(
    work: Workload, method: str, budget: int, info: dict[str, Any], results: list[RunResult]
) -> float | None:
    """Gives ``work`` the oracle's rate (and a start-scaled method the tuned rate at ``budget``);
    returns the workload's target score from ``info``, its entry in ``targets.json``."""
    work.extra["oracle_lr"] = info.get("oracle", {}).get("lr")
    if split_start_scale(method)[1] is not None:
        _set_tuned_lr(work, budget, results)
    return info.get("target")


def _run_one(
    suite: Suite,
    work: Workload,
    method: str,
    seed: int,
    factor: float,
    budget: int,
    target: float | None,
    threads: int | None,
) -> RunResult:
    """One run of the plan, its budget factor (and under the fair protocol its step hint) noted."""
    res = run_method(
        METHODS[method].run, work, method, seed, budget=budget, target=target, threads=threads
    )
    res.extra["budget_factor"] = factor
    if suite.fair:
        res.extra["protocol"] = "fair"
        res.extra["step_hint"] = work.step_hint
    return res


class _Progress:
    """The suite's progress log: one line per run, with the elapsed time and an ETA."""

    def __init__(
        self,
        plan: list[tuple[float, str, str, int]],
        cache: dict[str, Workload],
        suite: Suite,
        seen: set[tuple[str, str, int, int]],
        log: Callable[[str], None],
    ) -> None:
        self.plan, self.cache, self.suite, self.seen, self.log = plan, cache, suite, seen, log
        self.started = time.perf_counter()
        self.per_step: dict[str, list[float]] = {}

    def ran(self, index: int, budget: int, res: RunResult, elapsed: float) -> None:
        """Logs the ``index``-th run of the plan (1-based), which took ``elapsed`` seconds."""
        factor, name, method, seed = self.plan[index - 1]
        self.per_step.setdefault(name, []).append(elapsed / max(budget, 1))
        eta = _eta(self.plan[index:], self.per_step, self.cache, self.suite, self.seen)
        reached = "-" if not math.isfinite(res.steps_to_target) else f"{res.steps_to_target:.0f}"
        self.log(
            f"[{index}/{len(self.plan)}] {name} B={budget} (x{factor:g}) {method} seed "
            f"{seed}: final {res.final_score:.4f}, to target {reached} steps, {elapsed:.0f}s; "
            f"elapsed {time.perf_counter() - self.started:.0f}s, ETA {eta / 60:.1f} min"
        )


def _set_tuned_lr(work: Workload, budget: int, results: list[RunResult]) -> None:
    """Records the tuned cosine's rate at ``budget`` (chosen on the tuning holdout from the
    grid's runs so far) in ``work.extra["tuned_lr"]``, where start-scaled methods read it."""
    by_method: dict[str, list[RunResult]] = {}
    for r in results:
        if r.workload == work.name and r.budget == budget:
            by_method.setdefault(r.method, []).append(r)
    point = tuned_point(by_method)
    if point is not None:
        work.extra.setdefault("tuned_lr", {})[budget] = point["lr"]


def _eta(
    remaining: list[tuple[float, str, str, int]],
    per_step: dict[str, list[float]],
    cache: dict[str, Workload],
    suite: Suite,
    seen: set[tuple[str, str, int, int]],
) -> float:
    """Seconds left: each remaining run's budget times its workload's measured seconds per step
    (workloads not run yet borrow the slowest measured rate and a 1,500-step budget)."""
    if not per_step:
        return math.nan
    rates = {name: sum(v) / len(v) for name, v in per_step.items()}
    fallback = max(rates.values())
    total = 0.0
    for factor, name, method, seed in remaining:
        work = cache.get(name)
        budget = suite.budget_for(work, factor) if work is not None else 1500 * factor
        if (name, method, seed, budget) in seen:
            continue
        total += budget * rates.get(name, fallback)
    return total

