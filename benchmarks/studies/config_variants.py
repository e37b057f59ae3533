"""Default autolrs against `Config` variants under the fair protocol (issue 13 studies).

Each variant runs as the fair suite runs `autolrs`: `total_steps` = B = round(factor x H), the
workload's own optimizer at its default rate, `val_fn` on the holdout split, one torch thread,
scored by the score-split loss at step B. Every run is one JSON line (final score, the
decisions, the step accounting); a summary per (workload, budget, variant) ends the output.

Usage (repository root):

    .venv/bin/python benchmarks/studies/config_variants.py digits --factors 0.5 1 2 \\
        --variants "{}" "{'final_decay_fraction': 0.35}" --seeds 0 1 2 3 4 --out runs.jsonl

A variant is a Python dict literal of `Config` fields (`{}`: today's default).
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from autolrs.bench.autolrs_runner import run_autolrs
from autolrs.bench.harness import run_method
from autolrs.bench.workloads import get_workload
from autolrs.core.config import Config


def _discarded(accounting: dict[str, int]) -> float:
    total = sum(accounting.values()) or 1
    lost = accounting.get("range_test", 0) + accounting.get("discarded_trials", 0)
    return (lost + accounting.get("rolled_back", 0)) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0])
    parser.add_argument("--variants", nargs="+", default=["{}"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to append runs to")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = get_workload(args.workload)
    finals: dict[tuple[int, str], list[float]] = defaultdict(list)
    for factor in args.factors:
        budget = int(round(factor * work.step_hint))
        for variant in args.variants:
            overrides = ast.literal_eval(variant)
            config = Config(**overrides)
            for seed in args.seeds:
                start = time.time()
                result = run_method(
                    lambda ctx, config=config: run_autolrs(ctx, config),
                    work,
                    f"autolrs{variant}",
                    seed,
                    budget=budget,
                )
                info = result.extra.get("autolrs", {})
                record = {
                    "workload": args.workload,
                    "budget": budget,
                    "variant": overrides,
                    "seed": seed,
                    "final": result.final_score,
                    "decisions": info.get("decisions"),
                    "accounting": info.get("accounting"),
                    "rollbacks": info.get("rollbacks"),
                    "seconds": time.time() - start,
                }
                with args.out.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                finals[(budget, variant)].append(result.final_score)
                print(
                    f"{args.workload} B={budget} {variant} seed {seed}: final "
                    f"{result.final_score:.4f}, discarded "
                    f"{_discarded(info.get('accounting') or {}):.1%}",
                    flush=True,
                )
    for (budget, variant), values in finals.items():
        print(
            f"{args.workload} B={budget} {variant}: median {statistics.median(values):.4f} "
            f"[{min(values):.4f}, {max(values):.4f}] over {len(values)} seeds"
        )


if __name__ == "__main__":
    main()
