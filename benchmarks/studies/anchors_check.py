"""Are the anchors' poor digits results their own behaviour or our wiring? (issue 13)

``autolrs bench`` reports D-Adaptation (``dadapt``) at chance (ln 10 = 2.303) on digits and the
LR finder + one-cycle anchor (``lrfinder-onecycle``) at a median of 1.24. This script runs, on the
``digits`` workload, seeds 0, 1, 2, budget B = 400 (its step hint; the committed bench used
B = 1.5 H = 600, which ``--repro-budget`` reruns for the bench methods):

D-Adaptation
  (a) the bench method exactly: ``run_method(METHODS["dadapt"].run, work, "dadapt", seed,
      budget=B)``, with ``ctx.step`` wrapped to record each step's training loss and the
      effective rate the method reports (``lr * d``);
  (b) a hand-written plain PyTorch loop: ``work.model(seed)``, ``work.batches(seed)``,
      ``dadaptation.DAdaptAdam(lr=1.0, weight_decay=wd, decouple=True)``, torch's own
      ``LambdaLR`` with a cosine lambda; records the loss and ``param_groups[0]["d"]`` every step;
  (c) (b) with the documented ``d0`` raised to 1e-4 and 1e-3 (default 1e-6);
  (d) (b) with the other documented options: ``growth_rate=1.02`` (docstring: "values like
      1.02 give a kind of learning rate warmup effect"), ``use_bias_correction=True``, the
      bench's usual schedule (2 % linear warm-up + cosine; the README: "use the same learning
      rate scheduler you would normally use"), and growth_rate + bias correction together.

LR finder + one-cycle
  (a) the bench method exactly (``METHODS["lrfinder-onecycle"].run``), recording its losses;
  (b) torch-lr-finder's own API by hand: a ``torch.utils.data.DataLoader`` over the same batch
      stream, ``SGD(lr=1e-7, momentum=0.9, wd)`` (the workload's optimizer), ``LRFinder(model,
      opt, nn.CrossEntropyLoss()).range_test(loader, start_lr=1e-7, end_lr=10, num_iter=100,
      step_mode="exp")``, the library's own suggestion ``finder.plot(suggest_lr=True)`` (Agg
      backend) compared with ``autolrs.bench.methods.steepest_slope``, ``finder.reset()``, then
      ``OneCycleLR(opt, max_lr=suggestion, total_steps=B - sweep)`` on the same optimizer;
  plus references: the suggestion the same rule gives on the unsmoothed sweep losses (recovered
  exactly from the library's exponential smoothing, smooth_f = 0.05), and one-cycle at the tuned
  peak 0.0464 (benchmarks/targets.json) over the same remaining steps.

Usage (repository root; ~2.5 min of CPU with one torch thread)::

    nice -n 10 .venv/bin/python benchmarks/studies/anchors_check.py

Writes ``benchmarks/results/studies/anchors-check/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ORACLE_LR = 0.0464  # benchmarks/targets.json, digits: the tuned cosine grid's best peak
D_STEPS = (1, 2, 5, 10, 15, 20, 50, 100, 200, 400, 600)


# --------------------------------------------------------------------------- helpers
def network_state(work: Any, model: nn.Module) -> dict[str, float]:
    """Is the trained network dead? Spread of its logits over the score split, share of the
    fc64 ReLU units that are zero on every score example, and the weight norm."""
    x = work.score.x
    with torch.no_grad():
        model.eval()
        logits = model(x)
        hidden = model.head[:3](model.features(x))  # Flatten, Linear(512, 64), ReLU
        model.train()
    return {
        "logit_std_over_examples": float(logits.std(0).mean()),
        "dead_fc64_units": float((hidden.max(0).values <= 0).float().mean()),
        "weight_norm": float(torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters()))),
    }


def recording(fn: Any, log: list[tuple[float, float]]) -> Any:
    """Wraps a bench method so each ``ctx.step`` also records (training loss, reported lr)."""

    def run(ctx: Any) -> None:
        original = ctx.step

        def step(model: nn.Module, loss: Any, lr: float, **kw: Any) -> None:
            log.append((float(loss), float(lr)))
            original(model, loss, lr, **kw)

        ctx.step = step
        fn(ctx)

    return run


def bench_run(work: Any, method: str, seed: int, budget: int) -> dict[str, Any]:
    from autolrs.bench.harness import run_method
    from autolrs.bench.methods import METHODS

    log: list[tuple[float, float]] = []
    start = time.perf_counter()
    res = run_method(recording(METHODS[method].run, log), work, method, seed, budget=budget)
    return {
        "final_score": res.final_score,
        "best_score": min(s for _, s in res.curve),
        "steps": res.steps,
        "losses": [l for l, _ in log],
        "lrs": [r for _, r in log],
        "curve": [list(p) for p in res.curve],
        "extra": {k: v for k, v in res.extra.items() if k != "charged_seconds"},
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- D-Adaptation
def dadapt_hand(
    work: Any, seed: int, budget: int, warmup: int = 0, **options: Any
) -> dict[str, Any]:
    """Plain PyTorch: the workload's model and batches, DAdaptAdam, torch's LambdaLR."""
    from dadaptation import DAdaptAdam

    from autolrs.bench.harness import eval_steps

    start = time.perf_counter()
    model = work.model(seed)
    decay = options.pop("weight_decay_override", work.weight_decay)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Using decoupled weight decay"
        opt = DAdaptAdam(model.parameters(), lr=1.0, weight_decay=decay, decouple=True, **options)

    def cosine(step: int) -> float:  # warm-up (if any), then cosine to zero at the budget
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, budget - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    losses, lrs, ds, curve, updates, norms = [], [], [], [], [], []
    at = set(eval_steps(budget))  # where the harness scores
    params = list(model.parameters())
    for step, (x, y) in enumerate(work.batches(seed), start=1):
        group = opt.param_groups[0]
        lrs.append(float(group["lr"]) * float(group["d"]))
        before = [p.detach().clone() for p in params]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        ds.append(float(opt.param_groups[0]["d"]))
        with torch.no_grad():  # RMS of the step over all weights, and the weight norm
            sq = sum(float(((p - b) ** 2).sum()) for p, b in zip(params, before))
            updates.append(math.sqrt(sq / sum(p.numel() for p in params)))
            norms.append(math.sqrt(sum(float((p**2).sum()) for p in params)))
        if step in at:
            curve.append([step, work.evaluate(model, "score")["loss"]])
        if step >= budget:
            break
    return {
        "final_score": curve[-1][1],
        "best_score": min(s for _, s in curve),
        "losses": losses,
        "lrs": lrs,
        "d": ds,
        "update_rms": updates,
        "weight_norm": norms,
        "curve": curve,
        "network": network_state(work, model),
        "seconds": time.perf_counter() - start,
    }


def d_summary(ds: list[float]) -> dict[str, Any]:
    final = ds[-1]
    reach = next(i + 1 for i, d in enumerate(ds) if d >= 0.9 * final)
    return {
        "d_at": {str(s): ds[s - 1] for s in D_STEPS if s <= len(ds)},
        "d_final": final,
        "step_d_reaches_90pct_final": reach,
        "last_change_step": max(
            (i + 1 for i in range(1, len(ds)) if ds[i] != ds[i - 1]), default=1
        ),
    }


# --------------------------------------------------------------------------- LR finder
class _StreamDataset(torch.utils.data.IterableDataset):
    """The workload's endless batch stream as a dataset whose iterator is shared, so that the
    range test and the training after it read one stream (as the bench method does)."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Any]:
        return self.batches


def lrfinder_hand(work: Any, seed: int, budget: int) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder

    from autolrs.bench.methods import steepest_slope  # only to compare the two suggestions

    start = time.perf_counter()
    model = work.model(seed)
    loader = torch.utils.data.DataLoader(_StreamDataset(work.batches(seed)), batch_size=None)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7, momentum=0.9, weight_decay=work.weight_decay)
    criterion = nn.CrossEntropyLoss()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder = LRFinder(model, opt, criterion)
        finder.range_test(loader, start_lr=1e-7, end_lr=10, num_iter=100, step_mode="exp")
        fig, ax = plt.subplots()
        _, suggested = finder.plot(suggest_lr=True, ax=ax)  # the library's own suggestion
        plt.close(fig)
    lrs, smoothed = list(finder.history["lr"]), list(finder.history["loss"])
    sweep = len(lrs)
    ours = steepest_slope(lrs, smoothed)
    # the raw losses, undoing the library's smoothing: s_t = 0.05 raw_t + 0.95 s_{t-1}
    raw = [smoothed[0]] + [(smoothed[t] - 0.95 * smoothed[t - 1]) / 0.05 for t in range(1, sweep)]
    raw_steepest = steepest_slope(lrs, raw)
    best = int(np.argmin(smoothed))
    finder.reset()
    remaining = budget - sweep
    onecycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=suggested, total_steps=remaining)
    losses = []
    for step, (x, y) in enumerate(loader, start=1):
        loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        onecycle.step()
        losses.append(float(loss.detach()))
        if step >= remaining:
            break
    return {
        "suggested_lr_library_plot": float(suggested),
        "suggested_lr_autolrs_steepest_slope": ours,
        "steepest_slope_on_unsmoothed_losses": raw_steepest,
        "sweep_steps": sweep,
        "sweep_stopped_early": sweep < 100,
        "sweep_min_smoothed_loss_lr": lrs[best],
        "sweep_last_lr": lrs[-1],
        "sweep_lrs": lrs,
        "sweep_smoothed_losses": smoothed,
        "final_score": work.evaluate(model, "score")["loss"],
        "losses": losses,
        "network": network_state(work, model),
        "seconds": time.perf_counter() - start,
    }


def onecycle_at(work: Any, seed: int, budget: int, max_lr: float, sweep: int) -> dict[str, Any]:
    """One-cycle at a given peak over the steps the sweep leaves, from the same stream position."""
    model = work.model(seed)
    batches = work.batches(seed)
    for _ in range(sweep):
        next(batches)
    opt = work.make_optimizer(model.parameters(), lr=max_lr)
    remaining = budget - sweep
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=remaining)
    for step, batch in enumerate(batches, start=1):
        loss = work.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= remaining:
            break
    return {"max_lr": max_lr, "final_score": work.evaluate(model, "score")["loss"],
            "network": network_state(work, model)}


def max_abs_diff(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) for x, y in zip(a[:n], b[:n])), default=0.0)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--repro-budget", type=int, default=600,
                        help="also run the bench methods at this budget (the committed "
                        "runs'); 0: skip")
    parser.add_argument("--extra-seeds", type=int, nargs="*", default=list(range(3, 10)),
                        help="more seeds, final scores only: D-Adaptation (default, bias "
                        "correction, warm-up), the LR finder by hand, one-cycle at the tuned peak")
    parser.add_argument("--out", default="benchmarks/results/studies/anchors-check")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import dadaptation

    from autolrs.bench.workloads import get_workload

    work = get_workload("digits")
    B = args.budget
    out: dict[str, Any] = {
        "workload": "digits", "budget": B, "seeds": args.seeds, "torch_threads": 1,
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__,
            "dadaptation": getattr(dadaptation, "__version__", None)
            or _dist_version("dadaptation"),
            "torch_lr_finder": _dist_version("torch-lr-finder"), "numpy": np.__version__,
        },
        "dadapt": {}, "lrfinder": {},
    }
    t0 = time.perf_counter()

    # ---------------- D-Adaptation
    variants = {
        "hand (b)": {},
        "d0=1e-4 (c)": {"d0": 1e-4},
        "d0=1e-3 (c)": {"d0": 1e-3},
        "growth_rate=1.02 (d)": {"growth_rate": 1.02},
        "use_bias_correction (d)": {"use_bias_correction": True},
        "2% warm-up + cosine (d)": {"warmup": max(1, round(0.02 * B))},
        "weight_decay=1e-2 (AdamW family value)": {"weight_decay_override": 1e-2},
        "growth_rate=1.02 + bias correction (d)": {
            "growth_rate": 1.02, "use_bias_correction": True
        },
    }
    for seed in args.seeds:
        rows: dict[str, Any] = {}
        bench = bench_run(work, "dadapt", seed, B)
        rows["bench (a)"] = {k: bench[k] for k in ("final_score", "best_score", "steps")}
        for name, opts in variants.items():
            run = dadapt_hand(work, seed, B, **opts)
            rows[name] = {
                "final_score": run["final_score"], "best_score": run["best_score"],
                "network": run["network"], **d_summary(run["d"]),
                "max_effective_step_lr_x_d": max(run["lrs"]),
                "max_update_rms_first_50": max(run["update_rms"][:50]),
                "step_of_max_update_rms": int(np.argmax(run["update_rms"])) + 1,
                "weight_norm_at": {str(s): run["weight_norm"][s - 1] for s in (1, 10, 20, 30, 50)},
                "initial_weight_norm": network_state(work, work.model(seed))["weight_norm"],
            }
            if name == "hand (b)":
                rows[name]["loss_max_abs_diff_vs_bench"] = max_abs_diff(
                    bench["losses"], run["losses"])
                rows[name]["lr_max_abs_diff_vs_bench"] = max_abs_diff(bench["lrs"], run["lrs"])
                rows[name]["curve_max_abs_diff_vs_bench"] = max_abs_diff(
                    [s for _, s in bench["curve"]], [s for _, s in run["curve"]])
                rows[name]["first_losses"] = [round(v, 4) for v in run["losses"][:25]]
                rows[name]["d_first_25"] = run["d"][:25]
            print(f"dadapt seed {seed} {name:40s} final {run['final_score']:.4f} "
                  f"d_final {run['d'][-1]:.3g}", flush=True)
        if args.repro_budget:
            rep = bench_run(work, "dadapt", seed, args.repro_budget)
            rows[f"bench (a) B={args.repro_budget}"] = {"final_score": rep["final_score"],
                                                        "best_score": rep["best_score"]}
        out["dadapt"][str(seed)] = rows

    # ---------------- LR finder + one-cycle
    for seed in args.seeds:
        rows = {}
        bench = bench_run(work, "lrfinder-onecycle", seed, B)
        rows["bench (a)"] = {"final_score": bench["final_score"], **bench["extra"]["lrfinder"]}
        hand = lrfinder_hand(work, seed, B)
        bench_train = bench["losses"]  # the bench records only the training steps via ctx.step
        rows["hand (b)"] = {k: v for k, v in hand.items()
                            if k not in ("losses", "sweep_lrs", "sweep_smoothed_losses")}
        rows["hand (b)"]["train_loss_max_abs_diff_vs_bench"] = max_abs_diff(
            bench_train, hand["losses"])
        rows["sweep"] = {"lrs": hand["sweep_lrs"], "smoothed_losses": hand["sweep_smoothed_losses"]}
        sweep = hand["sweep_steps"]
        rows["onecycle at tuned peak 0.0464"] = onecycle_at(work, seed, B, ORACLE_LR, sweep)
        if hand["steepest_slope_on_unsmoothed_losses"] is not None:
            rows["onecycle at unsmoothed steepest"] = onecycle_at(
                work, seed, B, hand["steepest_slope_on_unsmoothed_losses"], sweep)
        rows["onecycle at suggestion / 10"] = onecycle_at(
            work, seed, B, hand["suggested_lr_library_plot"] / 10, sweep)
        if args.repro_budget:
            rep = bench_run(work, "lrfinder-onecycle", seed, args.repro_budget)
            rows[f"bench (a) B={args.repro_budget}"] = {"final_score": rep["final_score"],
                                                        **rep["extra"]["lrfinder"]}
        print(f"lrfinder seed {seed}: suggested {hand['suggested_lr_library_plot']:.4g} "
              f"(bench {bench['extra']['lrfinder']['suggested_lr']:.4g}) final hand "
              f"{hand['final_score']:.4f} bench {bench['final_score']:.4f}", flush=True)
        out["lrfinder"][str(seed)] = rows

    # ---------------- more seeds, final scores only ((b) equals (a) bit for bit, shown above)
    out["extra_seeds"] = {}
    for seed in args.extra_seeds:
        row: dict[str, Any] = {}
        for name, opts in (
            ("hand (b)", {}),
            ("use_bias_correction (d)", {"use_bias_correction": True}),
            ("2% warm-up + cosine (d)", {"warmup": max(1, round(0.02 * B))}),
        ):
            run = dadapt_hand(work, seed, B, **opts)
            row[f"dadapt {name}"] = {"final_score": run["final_score"], "d_final": run["d"][-1],
                                     "dead_fc64_units": run["network"]["dead_fc64_units"]}
        hand = lrfinder_hand(work, seed, B)
        row["lrfinder hand (b)"] = {
            "final_score": hand["final_score"], "suggested": hand["suggested_lr_library_plot"],
            "same_as_steepest_slope": hand["suggested_lr_library_plot"]
            == hand["suggested_lr_autolrs_steepest_slope"],
            "sweep_steps": hand["sweep_steps"],
            "sweep_min_smoothed_loss_lr": hand["sweep_min_smoothed_loss_lr"],
        }
        peak = onecycle_at(work, seed, B, ORACLE_LR, hand["sweep_steps"])
        row["onecycle at tuned peak 0.0464"] = {"final_score": peak["final_score"]}
        scores = ", ".join(f"{k} {v['final_score']:.3f}" for k, v in row.items())
        print(f"extra seed {seed}: {scores}", flush=True)
        out["extra_seeds"][str(seed)] = row

    out["cpu_seconds"] = time.process_time()
    out["wall_seconds"] = time.perf_counter() - t0
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {path / 'results.json'} ({out['wall_seconds']:.0f} s)")
    return 0


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
