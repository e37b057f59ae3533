"""AutoLRS on an FSDP2 model (``fully_shard``), one process per rank (gloo, CPU).

    python -m tests.distributed.fsdp_check --rank R --world W --init file:///tmp/x/rdzv \\
        --out DIR SCENARIO [SCENARIO ...]

Started by :func:`tests.distributed.launch.launch` (one process per rank, a ``file://``
rendezvous: no port). The scenarios run in the order given, in the same processes; each writes
``DIR/<scenario>-rank{r}.json`` (never stdout, where the ranks' lines interleave):

``train``
    Nested ``fully_shard`` (each block, then the root, which owns the head), AdamW,
    ``AutoLRS(total_steps=TOTAL, val_fn=...)`` where ``val_fn`` runs collectives (the sharded
    forward's all-gathers and an ``all_reduce``), rank 1 alone reporting NaN at ``NAN_STEPS``.
    Every snapshot and restore is instrumented: a digest of this rank's local model shards and
    sharded optimizer state, taken after each snapshot, is compared with the one after each
    restore of that slot. At the first step past ``CHECKPOINT_AFTER`` inside a trial, the
    model and optimizer are saved with DCP (``get_state_dict``) and each rank saves
    ``sched.state_dict()`` to its own file; the run then goes on uninterrupted.
``resume``
    Fresh processes: the DCP checkpoint is loaded (``set_state_dict``) before AutoLRS is
    built, then ``sched.load_state_dict``; training goes on to ``TOTAL``.
``memory``
    Bytes of one AdamW snapshot on this rank (model, optimizer, RNG parts) against the unsharded
    model's parameter bytes, kept on the model's device and with ``device="cpu"``, with the model
    sharded over every rank and over this rank alone (a one-rank mesh: world size 1).
``mixed``
    ``MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)`` and
    ``snapshot_device="cpu"``: a short run with a NaN on rank 1, the same snapshot/restore
    digests.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from autolrs import AutoLRS, Config
from autolrs.torch.snapshot import SnapshotStore, local_tensor, state_bytes

TOTAL = 300
NAN_STEPS = (60, 130)  # rank 1 alone reports NaN here (steps inside trials)
CHECKPOINT_AFTER = 100  # the checkpoint is taken at the first step past this one inside a trial
MIXED_TOTAL = 120
SEARCHES = Config(small_budget_ramp=None, discard_budget=None)
"""At these budgets the default would ramp, and a tenth of them pays for few trials: these checks
are about the search's trials and their restores."""
MIXED_NAN_STEP = 30
WIDTH = 32
MEMORY_WIDTH = 128
BATCH = 64


class Block(nn.Module):
    """Linear + tanh: one ``fully_shard`` unit."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))


class Net(nn.Module):
    """Two blocks and a head (the head's parameters belong to the root's ``fully_shard``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(8, width), Block(width, width)])
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def make_model(width: int = WIDTH, mp: MixedPrecisionPolicy | None = None) -> Net:
    """The same initial weights on every rank, then sharded: each block, then the root."""
    torch.manual_seed(0)
    model = Net(width)
    kwargs = {} if mp is None else {"mp_policy": mp}
    for block in model.blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step`` (a function of the step only: a resumed run draws the same)."""
    w = torch.randn(8, 1, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(BATCH, 8, generator=g)
    return x, torch.tanh(x @ w) + 0.1 * torch.randn(BATCH, 1, generator=g)


def local_half(tensor: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's part of a global batch."""
    n = tensor.shape[0]
    return tensor[rank * n // world:(rank + 1) * n // world]


def make_val_fn(model: nn.Module, rank: int, world: int, calls: list[int],
                steps: Callable[[], int]) -> Callable[[], float]:
    """A validation loss that needs every rank: the sharded forward all-gathers the weights and
    the loss is summed over the ranks with an ``all_reduce``. ``calls`` records the step of each
    call: a rank calling it alone would hang (and time out)."""
    x, y = batch(-1)

    def val_fn() -> float:
        calls.append(steps())
        with torch.no_grad():
            out = model(local_half(x, rank, world)).float()
            err = torch.stack([((out - local_half(y, rank, world)) ** 2).sum(),
                               torch.tensor(float(out.shape[0]))]).double()
        dist.all_reduce(err)
        return float(err[0] / err[1])

    return val_fn


def digest(model: nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """SHA-256 of this rank's local model shards and sharded optimizer state (exact bytes)."""
    h = hashlib.sha256()

    def add(name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            local = local_tensor(value).detach().contiguous().cpu()
            h.update(f"{name}:{local.dtype}:{tuple(local.shape)}".encode())
            h.update(local.reshape(-1).view(torch.uint8).numpy().tobytes())

    for name, value in model.state_dict().items():
        add(name, value)
    for index, state in sorted(optimizer.state_dict()["state"].items()):
        for key, value in sorted(state.items()):
            add(f"opt.{index}.{key}", value)
    return h.hexdigest()


def instrument(sched: AutoLRS, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[Any]:
    """Checks every restore against its snapshot (a test hook on the scheduler's executor).

    Returns:
        A list that receives ``[step, slot, exact]`` for each restore (``exact`` None for a
        slot snapshotted before a resume).
    """
    executor = sched._executor  # noqa: SLF001 - test instrumentation
    saved: dict[str, str] = {}
    if sched.steps_taken == 0:
        # A first stage that starts at once (a given lr_range, no warm-up) snapshots in the
        # constructor, before this hook: the model and optimizer are still what it saved.
        saved["stage"] = digest(model, optimizer)
    restores: list[Any] = []
    snapshot, restore = executor.snapshot, executor.restore

    def checked_snapshot(slot: str) -> None:
        snapshot(slot)
        saved[slot] = digest(model, optimizer)

    def checked_restore(slot: str) -> None:
        restore(slot)
        exact = digest(model, optimizer) == saved[slot] if slot in saved else None
        restores.append([sched.steps_taken, slot, exact])

    executor.snapshot, executor.restore = checked_snapshot, checked_restore
    return restores


def local_params(model: nn.Module) -> dict[str, list[float]]:
    """This rank's local shard of every parameter."""
    return {
        name: local_tensor(p).detach().reshape(-1).tolist() for name, p in model.named_parameters()
    }


def model_and_optimizer() -> tuple[Net, torch.optim.Optimizer]:
    """The ``train``/``resume`` model (sharded) and its AdamW."""
    model = make_model()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def scheduler(model: nn.Module, optimizer: torch.optim.Optimizer, rank: int, world: int,
              calls: list[int]) -> AutoLRS:
    """The same ``AutoLRS`` on every rank, with a collective ``val_fn`` recording into ``calls``."""
    holder: list[AutoLRS] = []
    # (holder is empty while val_fn runs inside AutoLRS(), as a small budget's ramp has it)
    val_fn = make_val_fn(model, rank, world, calls,
                         lambda: holder[0].steps_taken if holder else 0)
    sched = AutoLRS(model, optimizer, total_steps=TOTAL, val_fn=val_fn, seed=0, config=SEARCHES)
    holder.append(sched)
    return sched


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, sched: AutoLRS, rank: int,
                world: int, first: int, last: int, nan_steps: tuple[int, ...],
                on_step: Callable[[int], None] | None = None) -> list[float]:
    """Steps ``first`` .. ``last - 1``; returns the rate of each."""
    lrs = []
    for step in range(first, last):
        x, y = batch(step)
        lrs.append(sched.get_last_lr()[0])
        out = model(local_half(x, rank, world)).float()
        loss = nn.functional.mse_loss(out, local_half(y, rank, world))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sched.step(torch.tensor(float("nan")) if (rank == 1 and step in nan_steps) else loss)
        if on_step is not None:
            on_step(step)
    return lrs


def summary(sched: AutoLRS, model: nn.Module, lrs: list[float],
            calls: list[int]) -> dict[str, Any]:
    """What every scenario reports: rates, decisions, rollbacks, val_fn calls, local shards."""
    return {
        "lrs": lrs,
        "decisions": [[d["step"], d["lr"]] for d in sched.decisions],
        "rollbacks": [
            e["step"] for e in sched.events
            if e["event"] == "rollback" or (e["event"] == "candidate" and e["diverged"])
        ],
        "val_calls": calls,
        "params": local_params(model),
        "all_finite": all(math.isfinite(v) for vs in local_params(model).values() for v in vs),
        "in_trial": sched.in_trial,
    }


def scenario_train(rank: int, world: int, out: str) -> dict[str, Any]:
    ckpt = os.path.join(out, "checkpoint")
    model, optimizer = model_and_optimizer()
    calls: list[int] = []
    sched = scheduler(model, optimizer, rank, world, calls)
    restores = instrument(sched, model, optimizer)
    saved: dict[str, Any] = {}

    def maybe_checkpoint(step: int) -> None:
        if saved or step < CHECKPOINT_AFTER or not sched.in_trial:
            return
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=ckpt)
        # The snapshots are this rank's shards: one file per rank.
        torch.save(sched.state_dict(), os.path.join(ckpt, f"autolrs-rank{rank}.pt"))
        saved.update(step=step, in_trial=sched.in_trial, phase=sched.phase)

    lrs = train_steps(model, optimizer, sched, rank, world, 0, TOTAL, NAN_STEPS, maybe_checkpoint)
    sched.finish()
    result = summary(sched, model, lrs, calls)
    exp_avg = [local_tensor(s["exp_avg"]).numel() for s in optimizer.state.values()]
    result.update(
        restores=restores,
        checkpoint=saved,
        optimizer_local_numel=sum(exp_avg),
        global_numel=sum(p.numel() for p in model.parameters()),
        snapshot_bytes=sched.snapshot_bytes,
    )
    return result


def scenario_resume(rank: int, world: int, out: str) -> dict[str, Any]:
    ckpt = os.path.join(out, "checkpoint")
    with open(os.path.join(out, f"train-rank{rank}.json"), encoding="utf-8") as f:
        step = json.load(f)["checkpoint"]["step"]
    model, optimizer = model_and_optimizer()
    calls: list[int] = []
    # Load model and optimizer before AutoLRS exists: get_state_dict initialises a fresh
    # optimizer's state with a zero-rate step, which AutoLRS' step hooks would see.
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=ckpt)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched = scheduler(model, optimizer, rank, world, calls)
        # The snapshots hold DTensors (shards with their device mesh): not weights-only.
        path = os.path.join(ckpt, f"autolrs-rank{rank}.pt")
        sched.load_state_dict(torch.load(path, weights_only=False))
        lrs = train_steps(model, optimizer, sched, rank, world, step + 1, TOTAL, NAN_STEPS)
        sched.finish()
    result = summary(sched, model, lrs, calls)
    result.update(resumed_after=step, warnings=[str(w.message) for w in caught])
    return result


def snapshot_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, rank: int,
                   world: int) -> dict[str, Any]:
    """One snapshot of an AdamW-trained model on this rank, on the model's device and on
    ``"cpu"``: its bytes by part, and whether a restore after a change is exact."""
    for step in range(2):  # the optimizer's state exists
        x, y = batch(step)
        loss = nn.functional.mse_loss(model(local_half(x, rank, world)), local_half(y, rank, world))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result: dict[str, Any] = {
        "unsharded_param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "local_param_bytes": sum(state_bytes(p) for p in model.parameters()),
    }
    for device in (None, "cpu"):
        store = SnapshotStore(model, optimizer, device=device)
        store.save("s")
        snap = store.state_dict()["slots"]["s"]
        before = digest(model, optimizer)
        with torch.no_grad():
            for p in model.parameters():
                local_tensor(p).add_(1.0)
        store.restore("s")
        result[str(device)] = {
            "model": state_bytes(snap["model"]),
            "optimizer": state_bytes(snap["optimizer"]),
            "rng": state_bytes(snap["rng"]),
            "total": store.nbytes(),
            "restored_exactly": digest(model, optimizer) == before,
            "local_shapes_match": all(
                tuple(local_tensor(snap["model"][name]).shape) == tuple(local_tensor(p).shape)
                for name, p in model.named_parameters()
            ),
        }
    return result


def scenario_memory(rank: int, world: int, out: str) -> dict[str, Any]:
    """Snapshot bytes with the model sharded over every rank and over this rank alone (a
    one-rank mesh: the world-size-1 case, in the same processes)."""
    singles = [dist.new_group([r]) for r in range(world)]  # every rank creates every group
    result = {}
    for name, mesh in (("sharded", None), ("single", DeviceMesh.from_group(singles[rank], "cpu"))):
        torch.manual_seed(0)
        model = Net(MEMORY_WIDTH)
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        shards = 1 if mesh is not None else world
        result[name] = dict(snapshot_bytes(model, optimizer, rank if shards > 1 else 0, shards),
                            shards=shards)
    return result


def scenario_mixed(rank: int, world: int, out: str) -> dict[str, Any]:
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    model = make_model(mp=mp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = AutoLRS(model, optimizer, total_steps=MIXED_TOTAL, lr_range=(1e-4, 1e-1), seed=0,
                    snapshot_device="cpu", config=SEARCHES)
    restores = instrument(sched, model, optimizer)
    x, _ = batch(0)
    out_dtype = str(model(local_half(x, rank, world)).dtype)
    lrs = train_steps(model, optimizer, sched, rank, world, 0, MIXED_TOTAL, (MIXED_NAN_STEP,))
    sched.finish()
    result = summary(sched, model, lrs, [])
    result.update(
        restores=restores,
        output_dtype=out_dtype,
        param_dtypes=sorted({str(p.dtype) for p in model.parameters()}),
    )
    return result


SCENARIOS = {"train": scenario_train, "resume": scenario_resume, "memory": scenario_memory,
             "mixed": scenario_mixed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--init", required=True, help="init_method, e.g. file:///tmp/x/rdzv")
    parser.add_argument("--out", required=True)
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=args.init, rank=args.rank, world_size=args.world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        for name in args.scenarios:
            start = time.perf_counter()
            result = SCENARIOS[name](args.rank, args.world, args.out)
            seconds = time.perf_counter() - start
            result.update(rank=args.rank, world_size=args.world, seconds=seconds)
            path = os.path.join(args.out, f"{name}-rank{args.rank}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(result, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
