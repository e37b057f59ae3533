"""Proxy versus truth: do short trials rank learning rates as the rest of the run does?
(issue 13, measurement B)

For each workload and seed, train at the workload's default rate (constant) to checkpoints at
15 % and 40 % of the budget B = H (the fair suite's budget). From each checkpoint, for each of
7 log-spaced rates ``default_lr * 10**(k/3)``, k = -3..3, all from the same model and
optimizer state and the same batch order (the batch iterator re-created and advanced to the
checkpoint's position):

* truth: continue at the rate until 0.8 B, then decay linearly to zero at B
  (``lr * (B - t) / (0.2 B)`` at step t); the score-split loss at B;
* a trial of T = round(0.036 B) steps (the length of a default stage's trial, tau' = 0.1 tau
  with tau ~ B/30 ... 8 B/30, seen from the middle of the run), scored four ways:
    - ``cooled_holdout`` (proxy 1): the last third of the T steps decay linearly to zero
      (the cooled trials' rate, ``autolrs.core.phases.trials.trial_rate``: ``lr * (T + 1 - i) /
      (a + 1)`` at 1-based step i > T - a, a = round(T/3)); the holdout loss at its end;
    - ``cooled_train``: the same cooled trial scored as ``Config.anneal_fraction`` scores it in
      training-loss mode, the mean of its last ``max(2, a // 2)`` training losses;
    - ``const_train`` (proxy 2): the T steps at the constant rate, mean training loss of the
      last 3 steps;
    - ``const_holdout`` (proxy 3): the same constant trial, holdout loss at its end.

The reference ``stay`` keeps the checkpoint's rate (the default, k = 0).
Each proxy's pick is the argmin, and the largest rate within 5 % of the best
(``autolrs.core.selection.select(..., prefer_larger_within=0.05)``, the default's rule).
A non-finite loss marks a rate diverged (score +inf).

Usage:
    nice -n 10 .venv/bin/python benchmarks/studies/proxy_vs_truth.py
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autolrs.bench.workloads import Workload, get_workload
from autolrs.core.phases.trials import trial_rate
from autolrs.core.selection import select

CHECKPOINTS = (0.15, 0.40)
KS = tuple(range(-3, 4))
TRIAL_FRACTION = 0.036
DECAY_FROM = 0.8
PROXIES = ("cooled_holdout", "cooled_train", "const_train", "const_holdout")
ONE_STEP = math.log10(2.2)


@dataclass(frozen=True)
class Scored:
    lr: float
    value: float


def grid(work: Workload) -> list[float]:
    return [work.default_lr * 10.0 ** (k / 3.0) for k in KS]


def batches_from(work: Workload, seed: int, position: int):
    """The seed's batch iterator advanced to ``position`` (the same order for every rate)."""
    it = work.batches(seed)
    for _ in range(position):
        next(it)
    return it


def resume(work: Workload, seed: int, state: dict, lr: float):
    model = work.model(seed)
    model.load_state_dict(state["model"])
    opt = work.make_optimizer(model.parameters(), lr=lr)
    opt.load_state_dict(copy.deepcopy(state["opt"]))
    for group in opt.param_groups:  # load_state_dict restores the checkpoint's rate
        group["lr"] = lr
    return model, opt


def step(work: Workload, model, opt, batch, lr: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    loss = work.loss(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def finite_model(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def truth(work: Workload, seed: int, state: dict, position: int, lr: float, budget: int) -> dict:
    model, opt = resume(work, seed, state, lr)
    it = batches_from(work, seed, position)
    decay_start = int(round(DECAY_FROM * budget))
    span = budget - decay_start
    for t in range(position, budget):
        rate = lr if t < decay_start else lr * (budget - t) / span
        loss = step(work, model, opt, next(it), rate)
        if not math.isfinite(loss):
            return {"score": math.inf, "holdout": math.inf, "diverged_at": t}
    if not finite_model(model):
        return {"score": math.inf, "holdout": math.inf, "diverged_at": budget}
    score = work.evaluate(model, "score")["loss"]
    holdout = work.evaluate(model, "holdout")["loss"]
    return {"score": _finite(score), "holdout": _finite(holdout)}


def trial(work: Workload, seed: int, state: dict, position: int, lr: float, steps: int,
          cooled: bool) -> dict:
    model, opt = resume(work, seed, state, lr)
    it = batches_from(work, seed, position)
    anneal = int(round(steps / 3)) if cooled else 0
    losses = []
    for i in range(1, steps + 1):
        loss = step(work, model, opt, next(it), trial_rate(lr, steps, anneal, i))
        losses.append(loss)
        if not math.isfinite(loss):
            return {"train": math.inf, "holdout": math.inf, "diverged_at": i}
    holdout = work.evaluate(model, "holdout")["loss"] if finite_model(model) else math.inf
    last = max(2, anneal // 2) if cooled else 3
    return {"train": _finite(float(np.mean(losses[-last:]))), "holdout": _finite(holdout),
            "scored_last": last, "anneal": anneal}


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else math.inf


def run_seed(name: str, seed: int) -> list[dict]:
    work = get_workload(name)
    budget = work.step_hint
    steps = int(round(TRIAL_FRACTION * budget))
    positions = [int(round(f * budget)) for f in CHECKPOINTS]
    model = work.model(seed)
    opt = work.make_optimizer(model.parameters(), lr=work.default_lr)
    it = work.batches(seed)
    out = []
    done = 0
    for frac, position in zip(CHECKPOINTS, positions):
        while done < position:
            step(work, model, opt, next(it), work.default_lr)
            done += 1
        state = {"model": copy.deepcopy(model.state_dict()),
                 "opt": copy.deepcopy(opt.state_dict())}
        base = work.evaluate(model, "score")["loss"]
        rows = []
        for k, lr in zip(KS, grid(work)):
            t0 = time.time()
            tr = truth(work, seed, state, position, lr, budget)
            cool = trial(work, seed, state, position, lr, steps, cooled=True)
            const = trial(work, seed, state, position, lr, steps, cooled=False)
            rows.append({"k": k, "lr": lr, "truth": tr, "cooled": cool, "const": const,
                         "seconds": time.time() - t0})
            print(f"  {name} seed {seed} ckpt {frac:.2f} lr {lr:.3g}: truth {tr['score']:.5g} "
                  f"cooled {cool['holdout']:.5g} const {const['train']:.5g}/"
                  f"{const['holdout']:.5g} ({time.time() - t0:.1f}s)", flush=True)
        out.append({"workload": name, "seed": seed, "checkpoint": frac, "position": position,
                    "budget": budget, "trial_steps": steps, "score_at_checkpoint": base,
                    "rates": rows})
    return out


# --------------------------------------------------------------------------- analysis
def proxy_values(row: dict) -> dict[str, float]:
    return {
        "cooled_holdout": row["cooled"]["holdout"],
        "cooled_train": row["cooled"]["train"],
        "const_train": row["const"]["train"],
        "const_holdout": row["const"]["holdout"],
    }


def pick(lrs: list[float], values: list[float], within: float | None) -> float | None:
    healthy = [Scored(lr, v) for lr, v in zip(lrs, values) if math.isfinite(v)]
    if not healthy:
        return None
    return select(healthy, prefer_larger_within=within).lr


def analyse(records: list[dict]) -> dict:
    cases = []
    for rec in records:
        rows = rec["rates"]
        lrs = [r["lr"] for r in rows]
        true = [r["truth"]["score"] for r in rows]
        best_i = int(np.argmin(true))
        best = lrs[best_i]
        case = {"workload": rec["workload"], "seed": rec["seed"], "checkpoint": rec["checkpoint"],
                "truth_best": best, "truth_best_score": true[best_i],
                "truth_within5": pick(lrs, true, 0.05), "truth_scores": true, "lrs": lrs,
                "picks": {}}
        for proxy in PROXIES + ("stay",):
            # "stay": a reference, not a proxy: keep the checkpoint's (default) rate, k = 0.
            if proxy == "stay":
                vals = [0.0 if r["k"] == 0 else 1.0 for r in rows]
            else:
                vals = [proxy_values(r)[proxy] for r in rows]
            for rule, within in (("argmin", None), ("within5", 0.05)):
                p = pick(lrs, vals, within)
                if p is None:
                    continue
                ratio = p / best
                regret = true[lrs.index(p)] / true[best_i] - 1.0
                case["picks"][f"{proxy}/{rule}"] = {
                    "lr": p, "ratio": ratio, "log10_ratio": math.log10(ratio),
                    "truth_regret": regret,
                }
        cases.append(case)
    summary = {}
    keys = sorted({k for c in cases for k in c["picks"]})
    for key in keys:
        for scope in ("all",) + tuple(sorted({c["workload"] for c in cases})):
            sel = [c["picks"][key] for c in cases
                   if key in c["picks"] and scope in ("all", c["workload"])]
            if not sel:
                continue
            logs = [s["log10_ratio"] for s in sel]
            summary.setdefault(key, {})[scope] = {
                "n": len(sel),
                "within_one_step": sum(abs(x) <= ONE_STEP + 1e-9 for x in logs) / len(sel),
                "exact": sum(abs(x) < 1e-9 for x in logs) / len(sel),
                "median_log10_ratio": float(np.median(logs)),
                "mean_log10_ratio": float(np.mean(logs)),
                "median_truth_regret": float(np.median([s["truth_regret"] for s in sel])),
                "mean_truth_regret": float(np.mean([s["truth_regret"] for s in sel])),
                "max_truth_regret": float(np.max([s["truth_regret"] for s in sel])),
                "regret_over_20pct": sum(s["truth_regret"] > 0.2 for s in sel),
            }
    return {"cases": cases, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["digits", "diabetes-overfit", "diamonds"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3],
                    help="seeds 0..N-1: one N for every workload, or one N per workload")
    ap.add_argument("--out", default="benchmarks/results/studies/proxy-vs-truth")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "runs.jsonl"
    records = [json.loads(line) for line in raw.read_text().splitlines()] if raw.exists() else []
    have = {(r["workload"], r["seed"]) for r in records}
    t0 = time.time()
    counts = args.seeds * len(args.workloads) if len(args.seeds) == 1 else args.seeds
    if len(counts) != len(args.workloads):
        ap.error("--seeds takes one count, or one per workload")
    for name, count in zip(args.workloads, counts):
        for seed in range(count):
            if (name, seed) in have:
                continue
            t = time.time()
            new = run_seed(name, seed)
            with raw.open("a") as fh:
                for rec in new:
                    rec["seconds"] = time.time() - t
                    fh.write(json.dumps(rec) + "\n")
            records += new
            print(f"{name} seed {seed}: {time.time() - t:.0f}s", flush=True)
    wanted = {(name, seed) for name, count in zip(args.workloads, counts) for seed in range(count)}
    result = analyse([r for r in records if (r["workload"], r["seed"]) in wanted])
    result["command"] = " ".join(["python"] + sys.argv)
    result["seconds_this_call"] = time.time() - t0
    result["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "numpy": np.__version__}
    (out / "results.json").write_text(json.dumps(result, indent=1))

    print("\nper case: truth-best | picks (argmin / within5) as ratio to truth-best")
    for c in result["cases"]:
        picks = "  ".join(
            f"{p}: {c['picks'][p + '/argmin']['ratio']:.3g}/"
            f"{c['picks'][p + '/within5']['ratio']:.3g}"
            for p in PROXIES if p + "/argmin" in c["picks"]
        )
        print(f"  {c['workload']:17s} s{c['seed']} {c['checkpoint']:.2f} best {c['truth_best']:.3g}"
              f"  {picks}")
    print("\nsummary: within one grid step (x2.2) | median log10(pick/best) | median regret"
          " | picks with regret > 20 %")
    for key, scopes in result["summary"].items():
        print(f"  {key:24s} " + "  ".join(
            f"{s}: {v['within_one_step']:.2f} {v['median_log10_ratio']:+.2f} "
            f"{100 * v['median_truth_regret']:.1f}% {v['regret_over_20pct']}/{v['n']}"
            for s, v in scopes.items()))


if __name__ == "__main__":
    main()
