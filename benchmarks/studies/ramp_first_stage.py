"""Can a ramp that keeps its steps find the first stage's rate, from any start (issue 19)?

The default's first search tries cooled trials from one snapshot: every losing trial's steps are
discarded, which under a 500-step budget costs 16-38 % of it (bar (c) of issue 19 asks for at most
10 %). This study measures the alternative the search could be built on: a *ramp* that trains at
rates rising by sqrt(10) per segment from a fixed low rate (so the user's rate plays no part),
keeps every segment whose holdout loss fell, rolls back the first one whose holdout loss did not
fall, and settles ``--edge`` steps of sqrt(10) below that rate; then it holds the rate until 62 %
of the budget and decays it linearly to zero (the default's final decay). Only the rolled-back
segment is discarded. With ``--cool F`` the last ``F`` of each segment's steps decay its rate
linearly towards zero before the holdout judges it (a cooled segment, as the default's trials
are cooled), so that a higher rate is not judged at its noise; ``--segment`` sets a segment's
share of the budget (2.5 %). Nothing else of the method runs here (no later search, no guards),
so the ramp is judged alone.

Each run is scored like the fair suite (score-split loss at step B, one torch thread). Compare
with ``benchmarks/results/sweep/sweep.md`` (the default from four starts, the tuned cosine and
the methods without tuning, same workloads, budgets and seeds).

Usage (repository root):

    .venv/bin/python benchmarks/studies/ramp_first_stage.py --workload digits --budget 200 \\
        --low 1e-4 --edge 2 --seeds 0 1 2 3 4 --out results.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from autolrs.bench.workloads import get_workload
from autolrs.bench.workloads.base import Workload

STEP = math.sqrt(10.0)
HOLD_UNTIL = 0.62  # the default's final decay covers the last 38 % of the budget


@dataclass
class RampRun:
    """One run: where the ramp settled and what the model scored."""

    workload: str
    budget: int
    seed: int
    low: float
    edge: int
    cool: float
    segment_fraction: float
    score: float
    settled_lr: float
    discarded_steps: int
    ramp_steps: int
    path: list[tuple[float, float]] = field(default_factory=list)


class _Trainer:
    """A model, its optimizer and its batch stream, stepped at a given rate."""

    def __init__(self, workload: Workload, seed: int, lr: float) -> None:
        torch.manual_seed(seed)
        self.workload = workload
        self.model = workload.model(seed)
        self.optimizer = workload.make_optimizer(self.model.parameters(), lr=lr)
        self.batches: Iterator = iter(workload.batches(seed))
        self.steps = 0

    def train(self, n: int, rate: Callable[[int], float]) -> None:
        for i in range(n):
            for group in self.optimizer.param_groups:
                group["lr"] = rate(i)
            loss = self.workload.loss(self.model, next(self.batches))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.steps += 1

    def holdout(self) -> float:
        return float(self.workload.evaluate(self.model, "holdout")["loss"])

    def snapshot(self) -> tuple[dict, dict]:
        return copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict())

    def restore(self, snap: tuple[dict, dict]) -> None:
        self.model.load_state_dict(snap[0])
        self.optimizer.load_state_dict(snap[1])


def ramp_run(
    workload: Workload, budget: int, seed: int, low: float, edge: int, cool: float = 0.0,
    segment_fraction: float = 0.025,
) -> RampRun:
    """Ramp from ``low``, settle ``edge`` steps below the first rate that did not help, hold,
    decay; return the run's score on the score split. ``cool``: the share of each segment whose
    rate decays linearly towards zero before it is judged."""
    trainer = _Trainer(workload, seed, low)
    segment = max(5, int(segment_fraction * budget))  # the default: budget // 40, as before
    hot = segment - int(round(cool * segment))
    rate, before, path, discarded = low, trainer.holdout(), [], 0
    settled = None
    while trainer.steps + segment <= HOLD_UNTIL * budget:
        snap = trainer.snapshot()
        trainer.train(segment, partial(_segment_rate, rate, segment, hot))
        after = trainer.holdout()
        path.append((rate, after))
        if not math.isfinite(after) or after >= before:
            trainer.restore(snap)
            trainer.steps -= segment  # the batches are spent, the steps are not kept
            discarded += segment
            settled = rate / STEP**edge
            break
        before, rate = after, rate * STEP
    if settled is None:  # never failed: the last rate that helped
        settled = rate / STEP
    ramp_steps = trainer.steps + discarded
    spent = trainer.steps + discarded
    hold = max(0, int(HOLD_UNTIL * budget) - spent)
    trainer.train(hold, lambda _i: settled)
    rest = budget - spent - hold
    trainer.train(rest, lambda i: settled * (1.0 - i / rest))
    score = float(workload.evaluate(trainer.model, "score")["loss"])
    return RampRun(workload.name, budget, seed, low, edge, cool, segment_fraction, score, settled,
                   discarded, ramp_steps, path)


def _segment_rate(rate: float, segment: int, hot: int, i: int) -> float:
    """Step ``i``'s rate in a segment: ``rate`` for ``hot`` steps, then linearly towards 0."""
    return rate if i < hot else rate * (segment - i) / (segment - hot + 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--budget", type=int, required=True)
    parser.add_argument("--low", type=float, required=True, help="the ramp's first rate")
    parser.add_argument("--edge", type=int, default=2, help="sqrt(10) steps below the failure")
    parser.add_argument("--cool", type=float, default=0.0, help="cooled share of a segment")
    parser.add_argument("--segment", type=float, default=0.025, help="a segment's share of B")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    workload = get_workload(args.workload)
    runs = [
        ramp_run(workload, args.budget, s, args.low, args.edge, args.cool, args.segment)
        for s in args.seeds
    ]
    if args.out is not None:
        with args.out.open("a") as handle:
            for run in runs:
                handle.write(json.dumps(asdict(run)) + "\n")
    median = statistics.median(r.score for r in runs)
    share = statistics.median(r.discarded_steps for r in runs) / args.budget
    print(
        f"{args.workload} B={args.budget} low={args.low:g} edge={args.edge} cool={args.cool} "
        f"segment={args.segment}: median {median:.4f} "
        f"{[round(r.score, 4) for r in runs]}, settled {[f'{r.settled_lr:.3g}' for r in runs]}, "
        f"discarded {100 * share:.1f} %"
    )


if __name__ == "__main__":
    main()
