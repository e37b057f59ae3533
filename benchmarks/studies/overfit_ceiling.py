"""How close can a method that starts from the user's rate get to the tuned cosine on
diabetes-overfit (issue 13)?

The tuned cosine (warm-up 2 % + cosine over B at 2e-5..5e-5, 20-50x below AdamW's default 1e-3)
scores 0.508-0.511; the fair protocol's speed-up is below 0.5x for any score above that. This
script runs the responses to overfitting a method could make from the default rate, told by the
library's own overfitting guard (``autolrs.core.overfitting``: its check steps, ``check_due``, and
its rule, ``OverfitGuard.observe`` with a 10 % margin: the smoothed validation loss clearly above
its best at three checks in a row while the training loss fell):

* ``stop``: back to the best checkpoint, rate 0 (early stopping);
* ``cont``: back to the best checkpoint, then the rate x k decaying linearly to zero by B;
* ``restart``: back to the *initial* weights, then a cosine from the rate x k over what is left.

Each is scored like the fair suite (score-split loss at step B, one torch thread).

Usage (repository root):

    .venv/bin/python benchmarks/studies/overfit_ceiling.py --out results.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
from pathlib import Path

import torch

from autolrs.bench.harness import RunContext, run_method
from autolrs.bench.workloads import get_workload
from autolrs.core.overfitting import OverfitGuard, check_due

WORKLOAD = "diabetes-overfit"
DEFAULT_LR = 1e-3
MARGIN = 0.1  # Config().overfit_guard


def _response(mode: str, k: float, budget: int):
    work = get_workload(WORKLOAD)

    def run(ctx: RunContext) -> None:
        model = ctx.model()
        opt = work.make_optimizer(model.parameters(), lr=DEFAULT_LR)
        initial = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
        warmup = max(1, budget // 50)
        guard, losses = OverfitGuard(), []
        best_state = initial
        phase, restart_at = "default", 0
        for step, batch in enumerate(ctx.batches(), 1):
            if phase == "default":
                lr = DEFAULT_LR * min(1.0, step / warmup)
            elif phase == "stopped":
                lr = 0.0
            else:
                t = (step - restart_at) / max(1, budget - restart_at)
                shape = 1.0 - t if mode == "cont" else 0.5 * (1.0 + math.cos(math.pi * t))
                lr = DEFAULT_LR * k * shape
            for group in opt.param_groups:
                group["lr"] = lr
            loss = work.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.step(model, loss.detach(), lr, committed=True, survives=True)
            losses.append(float(loss.detach()))
            if phase != "default" or not check_due(budget, step):
                continue
            value = work.evaluate(model, "holdout")["loss"]
            check = guard.observe(value, training=losses, margin=MARGIN, committed=[])
            verdict = None if check is None else check.verdict
            if verdict == "best":
                best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
            if verdict == "overfit":
                state = initial if mode == "restart" else best_state
                model.load_state_dict(state[0])
                opt.load_state_dict(state[1])
                phase, restart_at = ("stopped" if mode == "stop" else "slow"), step

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = get_workload(WORKLOAD)
    responses = [("stop", 1.0), ("cont", 0.1), ("cont", 0.03), ("restart", 0.1), ("restart", 0.03)]
    for factor in args.factors:
        budget = int(round(factor * work.step_hint))
        for mode, k in responses:
            finals = []
            for seed in args.seeds:
                response = _response(mode, k, budget)
                result = run_method(response, work, f"{mode}x{k}", seed, budget=budget)
                finals.append(result.final_score)
                with args.out.open("a") as f:
                    f.write(json.dumps({"budget": budget, "mode": mode, "k": k, "seed": seed,
                                        "final": result.final_score}) + "\n")
            print(f"B={budget} {mode} x{k}: median {statistics.median(finals):.4f} "
                  f"[{min(finals):.4f}, {max(finals):.4f}]", flush=True)


if __name__ == "__main__":
    main()
