"""Run under torchrun with 2 CPU processes (gloo): AutoLRS under DistributedDataParallel.

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_check.py OUT_DIR

Each rank trains on its half of every global batch (so its local losses differ from the other
rank's), reports a NaN loss on rank 1 only at one step inside a trial, and writes
``OUT_DIR/rank{r}.json`` with the learning rate of every step, the decisions and the parameters.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from autolrs import AutoLRS, Config

TOTAL = 300
NAN_STEP = 70  # inside a trial of stage 1 (after the range test)
# Exact comparison with a single process needs decisions that rounding cannot flip. Inside the
# default trust region (a factor 3 around the last rate) the GP may try two rates 1 % apart
# whose forecasts differ by less than the all-reduce's rounding changes them (seen: 0.002937 vs
# 0.002963 swapping), so the comparison runs over the whole range.
CONFIG = Config(candidates=4, trust_region=None)


def global_batches(total: int):
    g = torch.Generator().manual_seed(123)
    w = torch.randn(8, 1, generator=g)
    for _ in range(total):
        x = torch.randn(64, 8, generator=g)
        yield x, torch.tanh(x @ w) + 0.1 * torch.randn(64, 1, generator=g)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))


def run(rank: int, world: int, out_dir: str) -> None:
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = AutoLRS(model, opt, total_steps=TOTAL, config=CONFIG, seed=0)
    lrs, checks = [], []
    for step, (x, y) in enumerate(global_batches(TOTAL)):
        shard = slice(rank * 64 // world, (rank + 1) * 64 // world)
        lrs.append(sched.get_last_lr()[0])
        loss = nn.functional.mse_loss(ddp(x[shard]), y[shard])
        opt.zero_grad()
        loss.backward()
        opt.step()
        reported = torch.tensor(float("nan")) if (step == NAN_STEP and rank == 1) else loss
        sched.step(reported)
        if step % 50 == 49:
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            checks.append(flat.tolist())
    sched.finish()
    result = {
        "lrs": lrs,
        "decisions": [[d["step"], d["lr"]] for d in sched.decisions],
        "checks": checks,
        # a NaN rolls the trial back: retried (a "rollback") or ended as divergent
        "rollbacks": [
            e["step"]
            for e in sched.events
            if e["event"] == "rollback" or (e["event"] == "candidate" and e["diverged"])
        ],
        "in_trial": sched.in_trial,
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    try:
        run(dist.get_rank(), dist.get_world_size(), sys.argv[1])
    finally:
        dist.barrier()
        dist.destroy_process_group()
