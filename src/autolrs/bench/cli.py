"""``autolrs bench``: set targets, run a tier, write the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_bench_parser"]


def add_bench_parser(sub: Any) -> None:
    """Adds the ``bench`` sub-command to the ``autolrs`` parser.

    Args:
        sub: The ``autolrs`` parser's sub-parsers (what ``add_subparsers`` returned).
    """
    bench = sub.add_parser(
        "bench",
        help="benchmark autolrs against tuned schedules and learning-rate-free optimizers",
        description="Runs a benchmark tier (or sets the targets) and writes a Markdown report.",
    )
    _add_actions(bench)
    _add_restrictions(bench)
    _add_outputs(bench)
    bench.set_defaults(func=_bench)


def _add_actions(bench: argparse.ArgumentParser) -> None:
    """The mutually exclusive things ``bench`` does: run a tier, set targets, rewrite a report."""
    from autolrs.bench.suite import SUITES

    what = bench.add_mutually_exclusive_group()
    what.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="quick",
        help="tier to run (default quick). fair: every method planned for B = 0.5H, H, 2H and "
        "scored at its end, speed-up vs the tuned cosine's curve (hours); fair-quick: its smoke "
        "test (digits, under a minute); quick, standard, full: the first protocol (budget 1.5H)",
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
        help="rebuild targets.json from the stored grid runs "
        "(benchmarks/results/targets-runs.jsonl)",
    )


def _add_restrictions(bench: argparse.ArgumentParser) -> None:
    """The options that restrict or override a tier: workloads, methods, budgets, grid, seeds."""
    from autolrs.bench.methods import METHODS
    from autolrs.bench.workloads import WORKLOADS

    bench.add_argument(
        "--workloads",
        nargs="+",
        metavar="NAME",
        help=f"restrict the tier's workloads, e.g. digits,fashion-cnn (known: "
        f"{', '.join(sorted(WORKLOADS))})",
    )
    bench.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help=f"override the tier's methods, e.g. autolrs,naive: {', '.join(sorted(METHODS))}, "
        "an ablation variant such as autolrs:keep_winner=False or "
        "autolrs-paper:forecaster='robust', or cosine@<lr>; the fair suites' cosine grid is set "
        "by --oracle-grid",
    )
    bench.add_argument(
        "--budgets",
        metavar="F,F",
        help="override the tier's budget factors, e.g. 0.5,1 (fair suites: B = round(F x H))",
    )
    bench.add_argument(
        "--oracle-grid",
        metavar="N|all",
        help="fair suites: the tuned cosine grid at every budget: the N LRs of the committed grid "
        "nearest (in log) to the oracle's (fair: 3, the oracle and its two neighbours; 0: none), "
        "or all for the full grid",
    )
    bench.add_argument("--seeds", type=int, help="override the tier's seeds, for every method")
    bench.add_argument(
        "--seeds-autolrs", type=int, metavar="K", help="seeds of autolrs and its variants"
    )
    bench.add_argument(
        "--seeds-anchors", type=int, metavar="K", help="seeds of the other methods and the grid"
    )


def _add_outputs(bench: argparse.ArgumentParser) -> None:
    """Where ``bench`` writes, the targets it reads, its threads and the ablation's base."""
    bench.add_argument("--out", help="output folder (default benchmarks/results/<suite>)")
    bench.add_argument(
        "--targets", default=os.path.join("benchmarks", "targets.json"), help="targets file"
    )
    bench.add_argument(
        "--threads",
        type=int,
        help="torch threads per run (default: 1 for the fair suites, torch's otherwise); "
        "recorded in the report's header",
    )
    bench.add_argument(
        "--ablation-base",
        metavar="METHOD",
        help="with --report DIR: also write DIR.md, every method's change against METHOD",
    )


def _bench(args: argparse.Namespace) -> int:
    """``autolrs bench``: does the one thing the arguments ask for; returns the exit status."""
    command = (
        "autolrs " + " ".join(sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("autolrs")
        else " ".join(sys.argv)
    )
    args.workloads = split_names(args.workloads) if args.workloads else None
    args.methods = split_methods(args.methods) if args.methods else None
    if args.set_targets:
        return _set_targets(args, command)
    if args.forecast_study:
        return _forecast_study(args, command)
    if args.recompute_targets:
        from autolrs.bench.targets import recompute_targets

        recompute_targets(args.targets)
        print(f"wrote {args.targets}")
        return 0
    if args.report:
        return _rewrite_report(args, command)
    return _run_tier(args, command)


def _progress(message: str) -> None:
    """Prints a progress line to stderr."""
    print(message, file=sys.stderr, flush=True)


def _set_targets(args: argparse.Namespace, command: str) -> int:
    """``--set-targets``: runs the tuned cosine grid and writes ``targets.json``."""
    from autolrs.bench.suite import SUITES
    from autolrs.bench.targets import set_targets

    workloads = args.workloads or list(SUITES["standard"].workloads)
    runs_path = os.path.join(
        os.path.dirname(os.path.abspath(args.targets)), "results", "targets-runs.jsonl"
    )
    set_targets(
        workloads,
        seeds=args.seeds or 2,
        path=args.targets,
        log=_progress,
        command=command,
        runs_path=runs_path,
    )
    print(f"wrote {args.targets}")
    return 0


def _forecast_study(args: argparse.Namespace, command: str) -> int:
    """``--forecast-study``: measures the trial forecasts, writes ``ablation-forecast.md``."""
    from autolrs.bench.forecast_study import run_study, write_study

    workloads = args.workloads or ["digits", "fashion-cnn"]
    studies = [run_study(w, log=_progress) for w in workloads]
    path = os.path.join(args.out or os.path.join("benchmarks", "results"), "ablation-forecast.md")
    print(write_study(studies, path, command))
    return 0


def _rewrite_report(args: argparse.Namespace, command: str) -> int:
    """``--report DIR``: rewrites DIR's report (with ``--ablation-base``, DIR.md too)."""
    from autolrs.bench.harness import read_jsonl
    from autolrs.bench.quick_report import write_ablation
    from autolrs.bench.report import write_report
    from autolrs.bench.targets import load_targets

    results = read_jsonl(os.path.join(args.report, "runs.jsonl"))
    header = _last_header(os.path.join(args.report, "runs.jsonl"))
    targets = load_targets(args.targets).get("workloads", {})
    if args.ablation_base:
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


def _run_tier(args: argparse.Namespace, command: str) -> int:
    """Runs the chosen tier (restricted by the arguments) and writes its report."""
    from autolrs.bench.report import write_report
    from autolrs.bench.suite import SUITES, run_suite
    from autolrs.bench.targets import load_targets

    try:
        suite = restrict_suite(SUITES[args.suite], args)
    except ValueError as exc:
        print(f"autolrs bench: error: {exc}", file=sys.stderr)
        return 2
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


def split_names(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def split_methods(values: list[str]) -> list[str]:
    """Method names separated by commas or spaces; a variant keeps its own commas:
    ``autolrs:a=1,b=2,naive`` -> ``["autolrs:a=1,b=2", "naive"]``."""
    out: list[str] = []
    for token in split_names(values):
        if "=" in token and ":" not in token and out and ":" in out[-1]:
            out[-1] += "," + token
        else:
            out.append(token)
    return out


def restrict_suite(suite: Any, args: argparse.Namespace) -> Any:
    """The suite with the command line's restrictions applied.

    Raises:
        ValueError: If a budget factor, the oracle grid or a seed count is malformed.
    """
    from dataclasses import replace

    if args.workloads:
        suite = replace(suite, workloads=tuple(args.workloads))
    if args.methods:
        suite = replace(suite, methods=tuple(args.methods))
    if args.budgets:
        try:
            factors = tuple(float(f) for f in split_names([args.budgets]))
        except ValueError:
            raise ValueError(
                f"--budgets expects factors such as 0.5,1,2; got {args.budgets!r}"
            ) from None
        if not factors or any(not f > 0 for f in factors):
            raise ValueError(f"--budgets: factors must be positive; got {args.budgets!r}")
        suite = replace(suite, budget_factors=factors)
    if args.oracle_grid is not None:
        grid = args.oracle_grid.strip().lower()
        if grid != "all" and not grid.isdigit():
            raise ValueError(
                f"--oracle-grid expects a count N >= 0 or all; got {args.oracle_grid!r}"
            )
        suite = replace(suite, oracle_grid="all" if grid == "all" else int(grid))
    for name in ("seeds", "seeds_autolrs", "seeds_anchors"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1; got {value}")
    if args.seeds:
        suite = replace(suite, seeds=args.seeds, seeds_autolrs=None, seeds_anchors=None)
    if args.seeds_autolrs:
        suite = replace(suite, seeds_autolrs=args.seeds_autolrs)
    if args.seeds_anchors:
        suite = replace(suite, seeds_anchors=args.seeds_anchors)
    return suite


def _last_header(path: str) -> dict[str, Any]:
    """The last header line of a ``runs.jsonl`` (empty when it has none)."""
    header: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith('{"header"'):
                    header = json.loads(line)["header"]
    return header
