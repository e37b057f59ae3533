"""Which look at a held rate ranks it as the rest of the run does (issue 19, seventh session)?

The default holds one rate from its first search to a 35 % linear decay. This study trains a
workload at ``rate`` (a linear warm-up over the first fifth, then constant) to a checkpoint at
``--at`` of the budget, and from there, for ``rate`` times each ``--factors``, with the seed's
batch order:

* **truth**: the default's shape from the checkpoint: constant to 65 % of the budget (or
  ``--decay-from``), then linear decay to zero at its end; the score-split loss at the end;
* **const L**: ``L`` steps at the constant rate; the holdout loss after them, for each
  ``--lengths``;
* **cooled L**: ``L`` steps at the rate, cooling linearly to zero over the last third as a
  search's trial does (:func:`autolrs.core.phases.trials.trial_rate`; no warm-up, as from a
  trained model); the holdout loss.

With ``--warmups`` it instead trains from scratch with the default's shape at ``rate``, once
per warm-up length (steps), on the same batches: how far a perturbation that changes nothing
on average moves one run's final score.

Usage (repository root; one torch thread):

    .venv/bin/python benchmarks/studies/hold_horizon.py fashion-cnn 1000 0.1 --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/studies/hold_horizon.py fashion-cnn 1000 0.1 --seeds 0 3 \\
        --warmups 1 3 10 30
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import torch

from autolrs.bench.workloads import Workload, get_workload
from autolrs.core.phases.trials import trial_rate

sys.path.insert(0, str(Path(__file__).parent))
from proxy_vs_truth import batches_from, finite_model, resume, step  # noqa: E402  (a sibling)

DECAY_FROM = 0.65  # the default's hold ends at 65 % of the budget (final_decay_fraction 0.35)


def _score(work: Workload, model, split: str) -> float:
    value = work.evaluate(model, split)["loss"] if finite_model(model) else math.inf
    return float(value) if math.isfinite(value) else math.inf


def default_shape(
    budget: int, lr: float, t: int, warmup: int = 0, decay_from: float = DECAY_FROM
) -> float:
    """The rate at step ``t`` (0-based): a linear warm-up over ``warmup`` steps, a hold to
    ``decay_from`` (65 %, the default's) of ``budget``, then a linear decay to zero at its end."""
    decay_start = int(round(decay_from * budget))
    if t >= decay_start:
        return lr * (budget - t) / (budget - decay_start)
    return lr * min(1.0, (t + 1) / warmup) if warmup > 0 else lr


def _train(work: Workload, model, opt, batches, lrs) -> bool:
    for rate in lrs:
        if not math.isfinite(step(work, model, opt, next(batches), rate)):
            return False
    return True


def from_checkpoint(work: Workload, seed: int, budget: int, rate: float, at: float,
                    factors: list[float], lengths: list[int],
                    decay_from: float = DECAY_FROM) -> list[dict]:
    """The truth and the proxies of every ``rate * factor`` from the seed's checkpoint."""
    position = int(round(at * budget))
    model = work.model(seed)
    opt = work.make_optimizer(model.parameters(), lr=rate)
    warm = max(1, position // 5)
    _train(work, model, opt, work.batches(seed),
           [rate * min(1.0, (t + 1) / warm) for t in range(position)])
    state = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict())}
    rows = []
    for factor in factors:
        lr = rate * factor
        row: dict = {"seed": seed, "position": position, "lr": lr, "const": {}, "cooled": {}}
        model, opt = resume(work, seed, state, lr)
        ok = _train(work, model, opt, batches_from(work, seed, position),
                    [default_shape(budget, lr, t, decay_from=decay_from)
                     for t in range(position, budget)])
        row["truth"] = _score(work, model, "score") if ok else math.inf
        for length in lengths:
            for kind, anneal in (("const", 0), ("cooled", int(round(length / 3)))):
                model, opt = resume(work, seed, state, lr)
                ok = _train(work, model, opt, batches_from(work, seed, position),
                            [trial_rate(lr, length, anneal, i) for i in range(1, length + 1)])
                row[kind][length] = _score(work, model, "holdout") if ok else math.inf
        rows.append(row)
    return rows


def warmup_noise(work: Workload, seed: int, budget: int, rate: float, warmups: list[int]) -> dict:
    """Final scores of the default's shape at ``rate`` from scratch, one per warm-up length."""
    out = {}
    for warmup in warmups:
        model = work.model(seed)
        opt = work.make_optimizer(model.parameters(), lr=rate)
        ok = _train(work, model, opt, work.batches(seed),
                    [default_shape(budget, rate, t, warmup) for t in range(budget)])
        out[warmup] = _score(work, model, "score") if ok else math.inf
    return {"seed": seed, "warmups": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("budget", type=int)
    parser.add_argument("rate", type=float, help="the rate trained to the checkpoint")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--at", type=float, default=0.15, help="the checkpoint's share of B")
    parser.add_argument("--factors", type=float, nargs="+", default=[0.316, 0.5, 1.0, 2.0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 60, 120])
    parser.add_argument("--warmups", type=int, nargs="+", help="measure run noise instead")
    parser.add_argument("--decay-from", type=float, default=DECAY_FROM,
                        help="the truth's decay start, a share of the budget")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = get_workload(args.workload)
    for seed in args.seeds:
        if args.warmups:
            rows = [warmup_noise(work, seed, args.budget, args.rate, args.warmups)]
        else:
            rows = from_checkpoint(work, seed, args.budget, args.rate, args.at, args.factors,
                                   args.lengths, args.decay_from)
        for row in rows:
            print(json.dumps({"workload": args.workload, "budget": args.budget, **row}),
                  flush=True)


if __name__ == "__main__":
    main()
