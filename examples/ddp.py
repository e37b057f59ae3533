"""autolrs with torch.distributed: the same AutoLRS call on every rank (here 2 CPU processes).

    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/ddp.py --steps 300

Each rank trains on its own shard of every batch; losses are averaged over the ranks once per
trial, rank 0 decides, and every rank rolls back its own snapshot. ``--result-dir DIR`` also
writes each rank's outcome to ``DIR/rank{r}.json`` (the ranks' printed lines may interleave).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn

from autolrs import AutoLRS


def write_result(result_dir: str, rank: int, result: dict) -> None:
    """Writes ``result_dir/rank{rank}.json`` whole (written aside, then renamed)."""
    os.makedirs(result_dir, exist_ok=True)
    path = os.path.join(result_dir, f"rank{rank}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)


def train(steps: int, result_dir: str | None = None) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images / 16.0, dtype=torch.float32), torch.tensor(labels)
    x_train, y_train = x[rank:1400:world], y[rank:1400:world]  # this rank's shard
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = AutoLRS(model, optimizer, total_steps=steps, seed=0)

    g = torch.Generator().manual_seed(rank)
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (32,), generator=g)
        loss = nn.functional.cross_entropy(ddp(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sched.step(loss)
    sched.finish()

    with torch.no_grad():
        accuracy = (model(x[1400:]).argmax(1) == y[1400:]).float().mean().item()
    chosen = ", ".join(f"{d['lr']:.3g}" for d in sched.decisions)
    print(f"rank {rank}: lr per stage {chosen}; test accuracy {accuracy:.4f}", flush=True)
    if result_dir is not None:
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        write_result(result_dir, rank, {
            "rank": rank, "world_size": world, "steps_taken": sched.steps_taken,
            "decisions": [[d["step"], d["lr"]] for d in sched.decisions], "accuracy": accuracy,
            "params_sha256": hashlib.sha256(flat.numpy().tobytes()).hexdigest(),
        })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--result-dir", help="also write each rank's outcome to DIR/rank{r}.json")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    try:
        # the DDP model is released before the process group goes
        train(args.steps, args.result_dir)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
