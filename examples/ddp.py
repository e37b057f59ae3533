"""autolrs with torch.distributed: the same AutoLRS call on every rank (here 2 CPU processes).

    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/ddp.py --steps 300

Each rank trains on its own shard of every batch; losses are averaged over the ranks once per
trial, rank 0 decides, and every rank rolls back its own snapshot.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn

from autolrs import AutoLRS


def train(steps: int) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    try:
        train(args.steps)  # the DDP model is released before the process group goes
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
