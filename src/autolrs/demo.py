"""``autolrs demo``: autolrs against two AdamW baselines on scikit-learn's digits, in a minute.

Every method trains the same CNN from the same initial weights on the same batches for the same
number of optimizer steps; autolrs' trial steps (and range test) count towards that budget.
autolrs is given no learning rate: the optimizer is built with AdamW's default and autolrs
replaces it.

The "CPU s" column is the process CPU time of each method's training (``time.process_time``;
evaluation excluded), with torch's thread count in its header. Training runs on one torch
thread: this small CNN gains nothing from more, and with two threads on a busy machine their
spin-waiting inflated both wall and CPU time up to tenfold from run to run (wall time had swung
from 65.7 to 162.7 s). On one thread the CPU time stays put when other programs load the machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from autolrs.bench.methods import cosine_factor
from autolrs.bench.workloads.digits import make_digits
from autolrs.torch.scheduler import AutoLRS

__all__ = ["DemoResult", "run_demo", "format_table"]


@dataclass
class DemoResult:
    """One method's outcome.

    Attributes:
        method: The method's name.
        accuracy: Test accuracy of the trained model.
        loss: Its test loss.
        steps: Optimizer steps taken (autolrs' trials included).
        cpu_seconds: Process CPU time of the training (``time.process_time``; every thread of
            the process, so up to ``threads`` times the wall time).
        schedule: How the learning rate was set.
        extra: Paths of the event log and the figure (autolrs' row).
        threads: ``torch.get_num_threads()`` during the training.
    """

    method: str
    accuracy: float
    loss: float
    steps: int
    cpu_seconds: float
    schedule: str
    extra: dict[str, Any] = field(default_factory=dict)
    threads: int = 1


def run_demo(steps: int = 600, seed: int = 0, out_dir: str = "autolrs-demo") -> list[DemoResult]:
    """Trains the three methods and writes ``demo.jsonl`` and ``schedule.png`` to ``out_dir``.

    Args:
        steps: Optimizer steps per method (autolrs' trials included).
        seed: Seed of the weights, the batch order and autolrs' search.
        out_dir: Where the event log and the figure go.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below; see the module docstring
    try:
        return _run_demo(steps, seed, out_dir)
    finally:
        torch.set_num_threads(threads)


def _train(
    work: Any, steps: int, seed: int, log_path: str, method: str, use_autolrs: bool,
    schedule: Callable[[int], float] | None,
) -> DemoResult:
    """One of the demo's runs: AdamW 1e-3 on digits, under autolrs, a schedule, or neither."""
    model = work.model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=work.weight_decay)
    batches = work.batches(seed)
    # CPU time, not wall time: on a busy machine wall time swung up to sixfold between runs.
    start = time.process_time()
    sched = None
    if use_autolrs:
        sched = AutoLRS(
            model,
            opt,
            total_steps=steps,
            val_fn=lambda: work.evaluate(model, "holdout")["loss"],
            seed=seed,
            log_file=log_path,
        )
        batches = sched.wrap(batches)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule else None
    taken = 0
    for x, y in batches:
        if taken >= steps:
            break
        loss = work.loss(model, (x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        taken += 1
        if sched is not None:
            sched.step(loss)
        if lr_sched is not None:
            lr_sched.step()
    cpu_seconds = time.process_time() - start
    if sched is not None:
        sched.finish()
        description = "per stage: " + " ".join(f"{d['lr']:.2g}" for d in sched.decisions)
    elif schedule is None:
        description = "1e-3 constant"
    else:
        description = "1e-3 peak, 2% warm-up + cosine"
    metrics = work.evaluate(model, "score")
    return DemoResult(
        method, metrics["accuracy"], metrics["loss"], taken, cpu_seconds, description,
        threads=torch.get_num_threads(),
    )


def _run_demo(steps: int, seed: int, out_dir: str) -> list[DemoResult]:
    work = make_digits("adamw")
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "demo.jsonl")
    if os.path.exists(log_path):
        os.remove(log_path)
    warm_cosine = cosine_factor(steps, max(1, steps // 50))
    results = [
        _train(work, steps, seed, log_path, "autolrs from AdamW 1e-3", True, None),
        _train(work, steps, seed, log_path, "AdamW 1e-3 fixed", False, None),
        _train(work, steps, seed, log_path, "AdamW 1e-3 warm-up+cosine", False, warm_cosine),
    ]
    try:
        from autolrs.plot import plot_run

        plot_run(log_path, os.path.join(out_dir, "schedule.png"), title="autolrs on digits (AdamW)")
        results[0].extra["figure"] = os.path.join(out_dir, "schedule.png")
    except ImportError as err:
        results[0].extra["figure_error"] = str(err)
    results[0].extra["log"] = log_path
    return results


def format_table(results: list[DemoResult]) -> str:
    """The results as an aligned text table.

    The CPU-time column's header states torch's thread count (``CPU s (1 thread)``).
    """
    counts = sorted({r.threads for r in results})
    threads = "/".join(str(n) for n in counts)
    plural = "s" if counts != [1] else ""
    cpu = f"CPU s ({threads} thread{plural})"
    header = ("method", "test acc", "test loss", "steps", cpu, "learning rate")
    rows = [
        (r.method, f"{r.accuracy:.4f}", f"{r.loss:.4f}", str(r.steps), f"{r.cpu_seconds:.1f}",
         r.schedule)
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
