"""The ``autolrs`` command: ``demo``, ``plot`` and ``bench``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from autolrs._version import __version__

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from autolrs.demo import format_table, run_demo

    print(f"autolrs {__version__} demo: digits CNN, AdamW, {args.steps} steps per method "
          "(autolrs' trials included)", flush=True)
    results = run_demo(steps=args.steps, seed=args.seed, out_dir=args.out)
    print(format_table(results))
    extra = results[0].extra
    print(f"\nevents: {extra['log']}")
    if "figure" in extra:
        print(f"schedule figure: {extra['figure']}")
    else:
        print(f"no figure: {extra.get('figure_error')}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from autolrs.plot import plot_run

    name, count = plot_run(args.run, args.output, run=args.which)
    if count > 1:
        print(
            f"{args.run} holds {count} runs (one per AutoLRS that appended to it); drew run "
            f"{name} (choose with --run ID or --run N)"
        )
    print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autolrs`` command."""
    parser = argparse.ArgumentParser(
        prog="autolrs",
        description="Automatic learning-rate schedules, found on the fly (AutoLRS, ICLR 2021).",
    )
    parser.add_argument("--version", action="version", version=f"autolrs {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every decision")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train digits with autolrs and two AdamW baselines")
    demo.add_argument("--steps", type=int, default=600, help="optimizer steps per method")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="autolrs-demo", help="folder for demo.jsonl and schedule.png")
    demo.set_defaults(func=_demo)

    plot = sub.add_parser("plot", help="draw the schedule of a run from its JSONL events")
    plot.add_argument("run", help="JSONL file written with AutoLRS(log_file=...)")
    plot.add_argument("-o", "--output", default="schedule.png", help="PNG to write")
    plot.add_argument(
        "--run",
        dest="which",
        help="which run, when several appended to the file: its id, or its position (1 first, "
        "-1 last; default: the last)",
    )
    plot.set_defaults(func=_plot)

    try:
        from autolrs.bench.cli import add_bench_parser
    except ImportError:  # pragma: no cover - the bench module ships with the package
        pass
    else:
        add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autolrs`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"autolrs {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
