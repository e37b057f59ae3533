"""A quick start-rate sweep of one autolrs configuration on one workload (issue 19).

The suite's ``sweep`` (``autolrs bench --suite sweep``) is the reference; this is its small
version for trying a configuration before a full run: autolrs with the workload's optimizer
built at ``--tuned`` times each ``--starts`` factor, ``--seeds`` seeds each, scored like the fair
suite (score-split loss at step B, one torch thread). It prints, per start, the median score,
the scores, the last committed rate of each seed and the median share of the budget discarded
(range test + losing trials + rolled back, the sweep report's definition).

Usage (repository root):

    .venv/bin/python benchmarks/studies/start_sweep.py digits 200 0.1 --preset ramp \\
        --starts 0.01 0.1 1 10 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import torch

from autolrs.bench.autolrs_runner import run_autolrs
from autolrs.bench.harness import RunContext, run_method
from autolrs.bench.workloads import get_workload
from autolrs.core import Config

PRESETS = {"default": Config, "ramp": Config.ramp, "upward": Config.upward}


def sweep_start(
    workload: str,
    budget: int,
    start_lr: float,
    seeds: int,
    config: Config,
    lr_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The runs of one start: scores, last committed rates and discarded shares, per seed
    (``lr_range``: given to ``AutoLRS``, so that no range test runs)."""
    work = get_workload(workload)
    scores, rates, discarded = [], [], []
    for seed in range(seeds):

        def method(ctx: RunContext) -> None:
            ctx.start_lr = start_lr
            run_autolrs(ctx, config, lr_range=lr_range)

        result = run_method(method, work, "autolrs", seed, budget=budget)
        info = result.extra["autolrs"]
        acc = info["accounting"]
        scores.append(result.final_score)
        thrown = acc["range_test"] + acc["discarded_trials"] + acc["rolled_back"]
        discarded.append(thrown / budget)
        decisions = info["decisions"]
        rates.append(float(decisions[-1][1]) if decisions else None)
    return {"scores": scores, "rates": rates, "discarded": discarded,
            "median": statistics.median(scores), "median_discarded": statistics.median(discarded)}


def summary_line(label: str, out: dict[str, Any]) -> str:
    """One start's line: ``label``, the median score, the scores, the last committed rates and
    the median discarded share (``out`` from :func:`sweep_start`)."""
    return (
        f"{label}: median {out['median']:.4f} {[round(s, 4) for s in out['scores']]} rates "
        f"{[None if r is None else float(f'{r:.2g}') for r in out['rates']]} discarded "
        f"{100 * out['median_discarded']:.1f} %"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("budget", type=int)
    parser.add_argument("tuned", type=float, help="the tuned cosine's rate at this budget")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--override", default="{}", help="Config fields as JSON")
    parser.add_argument("--starts", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="give AutoLRS this range (no range test)")
    args = parser.parse_args(argv)
    lr_range = tuple(args.lr_range) if args.lr_range else None
    torch.set_num_threads(1)
    config = PRESETS[args.preset](**json.loads(args.override))
    for factor in args.starts:
        out = sweep_start(args.workload, args.budget, args.tuned * factor, args.seeds, config,
                          lr_range)
        print(summary_line(f"{args.workload} B={args.budget} {args.preset} x{factor:g}", out),
              flush=True)


if __name__ == "__main__":
    main()
