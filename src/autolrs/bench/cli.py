"""``autolrs bench``: set targets, run a tier, write the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_bench_parser"]


def add_bench_parser(sub: Any) -> None:
    """Adds the ``bench`` sub-command to the ``autolrs`` parser."""
    from autolrs.bench.methods import METHODS
    from autolrs.bench.suite import SUITES
    from autolrs.bench.workloads import WORKLOADS

    bench = sub.add_parser(
        "bench",
        help="benchmark autolrs against tuned schedules and learning-rate-free optimizers",
        description="Runs a benchmark tier (or sets the targets) and writes a Markdown report.",
    )
    what = bench.add_mutually_exclusive_group()
    what.add_argument(
        "--suite", choices=sorted(SUITES), default="quick", help="tier to run (default quick)"
    )
    what.add_argument(
        "--set-targets", action="store_true", help="run the tuned cosine grid, write targets.json"
    )
    what.add_argument("--report", metavar="DIR", help="rewrite the report of the runs in DIR")
    what.add_argument(
        "--forecast-study",
        action="store_true",
        help="measure how well trial scores predict a stage's best rate (ablation-forecast.md)",
    )
    what.add_argument(
        "--recompute-targets",
        action="store_true",
        help="rebuild targets.json from the stored grid runs (benchmarks/results/targets-runs.jsonl)",
    )
    bench.add_argument(
        "--workloads", nargs="+", choices=sorted(WORKLOADS), help="override the tier's workloads"
    )
    bench.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help=f"override the tier's methods: {', '.join(sorted(METHODS))}, or an ablation variant "
        "such as autolrs:keep_winner=False or autolrs-paper:forecaster='robust'",
    )
    bench.add_argument("--seeds", type=int, help="override the tier's number of seeds")
    bench.add_argument("--out", help="output folder (default benchmarks/results/<suite>)")
    bench.add_argument(
        "--targets", default=os.path.join("benchmarks", "targets.json"), help="targets file"
    )
    bench.add_argument("--threads", type=int, help="torch threads per run (default: torch's)")
    bench.add_argument(
        "--ablation-base",
        metavar="METHOD",
        help="with --report DIR: also write DIR.md, every method's change against METHOD",
    )
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from autolrs.bench.harness import read_jsonl
    from autolrs.bench.report import write_report
    from autolrs.bench.suite import SUITES, run_suite
    from autolrs.bench.targets import load_targets, set_targets  # noqa: F401 - used below

    command = (
        "autolrs " + " ".join(sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("autolrs")
        else " ".join(sys.argv)
    )
    if args.set_targets:
        workloads = args.workloads or list(SUITES["standard"].workloads)
        runs_path = os.path.join(
            os.path.dirname(os.path.abspath(args.targets)), "results", "targets-runs.jsonl"
        )
        set_targets(
            workloads,
            seeds=args.seeds or 2,
            path=args.targets,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            command=command,
            runs_path=runs_path,
        )
        print(f"wrote {args.targets}")
        return 0
    if args.forecast_study:
        from autolrs.bench.forecast_study import run_study, write_study

        workloads = args.workloads or ["digits", "fashion-cnn"]
        studies = [
            run_study(w, log=lambda m: print(m, file=sys.stderr, flush=True)) for w in workloads
        ]
        path = os.path.join(
            args.out or os.path.join("benchmarks", "results"), "ablation-forecast.md"
        )
        print(write_study(studies, path, command))
        return 0
    if args.recompute_targets:
        from autolrs.bench.targets import recompute_targets

        recompute_targets(args.targets)
        print(f"wrote {args.targets}")
        return 0
    if args.report:
        results = read_jsonl(os.path.join(args.report, "runs.jsonl"))
        header = _last_header(os.path.join(args.report, "runs.jsonl"))
        targets = load_targets(args.targets).get("workloads", {})
        if args.ablation_base:
            from autolrs.bench.report import write_ablation

            path = os.path.normpath(args.report) + ".md"
            command_used = header.get("command", command)
            print(write_ablation(results, targets, args.ablation_base, path, command_used))
        write_report(
            results,
            targets,
            args.report,
            title=f"autolrs benchmark: {header.get('suite', '?')} tier",
            command=header.get("command", command),
            header=header,
        )
        print(f"wrote {os.path.join(args.report, 'report.md')}")
        return 0
    suite = SUITES[args.suite]
    if args.workloads:
        suite = replace(suite, workloads=tuple(args.workloads))
    if args.methods:
        suite = replace(suite, methods=tuple(args.methods))
    if args.seeds:
        suite = replace(suite, seeds=args.seeds)
    out = args.out or os.path.join("benchmarks", "results", suite.name)
    results = run_suite(
        suite, out, targets_path=args.targets, command=command, threads=args.threads
    )
    header = _last_header(os.path.join(out, "runs.jsonl"))
    text = write_report(
        results,
        load_targets(args.targets).get("workloads", {}),
        out,
        title=f"autolrs benchmark: {suite.name} tier",
        command=command,
        header=header,
    )
    print(text)
    print(f"\nwrote {os.path.join(out, 'report.md')}")
    return 0


def _last_header(path: str) -> dict[str, Any]:
    header: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith('{"header"'):
                    header = json.loads(line)["header"]
    return header
