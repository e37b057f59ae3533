"""What AutoLRS costs on one accelerator: per-step overhead, snapshot/restore time, peak memory.

For a GPT-2-small-sized language model (``gpt2-124m``: 12 layers, 768 wide, 124M parameters,
tied embeddings) and one about 10x smaller (``gpt2-12m``: 6 layers, 192 wide), trained with
AdamW under bf16 autocast on random tokens (nothing is downloaded), it measures:

* the time per training step of a plain loop, and of the same loop with ``AutoLRS`` at the
  default ``sync_every`` (16 on an accelerator) and at ``sync_every=1`` (one device
  synchronisation per step), snapshots on the device and on the host (``snapshot_device``);
  the peak device memory of each loop;
* one snapshot's save and restore time, its bytes and the device memory it adds, with
  ``snapshot_device`` on the device (``"cuda"``) and on the host (``"cpu"``).

AutoLRS is built with ``lr_range`` and a budget far past the timed steps, so they fall in its
first stage and the overhead is the steady per-step cost; a stage's trials add one restore per
candidate, which the snapshot/restore columns price.

Usage (repository root)::

    python benchmarks/gpu/timing.py      # writes benchmarks/results/gpu/timing.{json,md}
    python benchmarks/gpu/timing.py --out DIR --sizes gpt2-12m --steps 20

On CUDA it runs both sizes (batch 8 x 1024 tokens, 20 warm-up and 50 timed steps each). Without
CUDA it runs ``gpt2-12m`` only, with a 1024-token vocabulary (3M parameters), 2 x 32 tokens, a
few steps and float32 (bf16 autocast is emulated on most CPUs, and slow), so that the test suite
runs it in seconds (``tests/benchmarks/test_gpu_timing.py``): CPU timings are not meaningful.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from autolrs import AutoLRS, __version__
from autolrs.torch.snapshot import SnapshotStore

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu"
LR_RANGE = (1e-5, 1e-3)
BUDGET = 100_000  # AutoLRS' total_steps: the timed steps stay inside its first stage


@dataclass(frozen=True)
class GPTConfig:
    """A GPT-2 shape."""

    layers: int
    heads: int
    width: int
    vocab: int = 50257
    context: int = 1024


SIZES = {
    "gpt2-124m": GPTConfig(layers=12, heads=12, width=768),
    "gpt2-12m": GPTConfig(layers=6, heads=6, width=192),
}


@dataclass(frozen=True)
class Settings:
    """How long and how big each measurement is."""

    batch: int
    seq: int
    warmup: int
    steps: int
    reps: int
    vocab: int | None = None  # None: the size's own (GPT-2's 50257)


ON_CUDA = Settings(batch=8, seq=1024, warmup=20, steps=50, reps=5)
# On CPU the point is that the script runs: a 1024-token vocabulary keeps gpt2-12m's layers at
# ~3M parameters instead of 12.5M (the embedding dominates), so the test takes seconds.
ON_CPU = Settings(batch=2, seq=32, warmup=1, steps=3, reps=2, vocab=1024)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x MLP."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(),
                                 nn.Linear(4 * cfg.width, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT-2: token and position embeddings, blocks, final norm, head tied to the embedding."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def param_count(model: nn.Module) -> int:
    """Parameters, a tied weight counted once."""
    return sum(p.numel() for p in model.parameters())


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> int:
    """Resets the peak-memory counter; the bytes allocated now (0 off CUDA)."""
    if device.type != "cuda":
        return 0
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak(device: torch.device) -> int | None:
    """Peak device bytes since :func:`reset_peak` (None off CUDA)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


class Trainer:
    """A fresh model, AdamW and a random-token batch, the same for every loop of one size."""

    def __init__(self, cfg: GPTConfig, settings: Settings, device: torch.device) -> None:
        # The previous loop's model, optimizer and snapshots (AutoLRS holds a reference cycle)
        # must be gone before this one's memory is measured.
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch.manual_seed(0)
        self.device = device
        self.model = GPT(cfg).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=3e-4, weight_decay=0.1,
                                           fused=device.type == "cuda")
        g = torch.Generator(device=device).manual_seed(0)
        self.tokens = torch.randint(cfg.vocab, (settings.batch, settings.seq + 1), generator=g,
                                    device=device)

    def step(self) -> torch.Tensor:
        """One training step under bf16 autocast (float32 on CPU, where bf16 is emulated and
        slow); the loss (not read from the device)."""
        on_cuda = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on_cuda):
            logits = self.model(self.tokens[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), self.tokens[:, 1:].flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def time_loop(trainer: Trainer, settings: Settings,
              report: Callable[[torch.Tensor], None]) -> dict[str, Any]:
    """Milliseconds per step over ``settings.steps`` after ``settings.warmup``, and peak memory."""
    for _ in range(settings.warmup):
        report(trainer.step())
    base = reset_peak(trainer.device)
    start = time.perf_counter()
    for _ in range(settings.steps):
        report(trainer.step())
    sync(trainer.device)
    seconds = time.perf_counter() - start
    top = peak(trainer.device)
    return {"ms_per_step": 1e3 * seconds / settings.steps, "peak_bytes": top,
            "peak_over_start_bytes": None if top is None else top - base}


def plain_loop(cfg: GPTConfig, settings: Settings, device: torch.device) -> dict[str, Any]:
    """The reference: the same training steps without AutoLRS."""
    trainer = Trainer(cfg, settings, device)
    return time_loop(trainer, settings, lambda loss: None)


def autolrs_loop(cfg: GPTConfig, settings: Settings, device: torch.device, *,
                 sync_every: int | None, snapshot_device: str | None) -> dict[str, Any]:
    """The same steps with ``sched.step(loss)`` after each."""
    trainer = Trainer(cfg, settings, device)
    sched = AutoLRS(trainer.model, trainer.optimizer, total_steps=BUDGET, lr_range=LR_RANGE,
                    seed=0, sync_every=sync_every, snapshot_device=snapshot_device)
    result = time_loop(trainer, settings, sched.step)
    result.update(sync_every=sched.sync_every, snapshot_device=snapshot_device or "model's",
                  snapshot_bytes=sched.snapshot_bytes, phase=sched.phase)
    sched.remove_hooks()
    return result


def snapshot_costs(cfg: GPTConfig, settings: Settings, device: torch.device,
                   snapshot_device: str | None) -> dict[str, Any]:
    """Median save and restore time of one snapshot (model, AdamW state, RNGs), its bytes and
    the device memory it adds at its peak."""
    trainer = Trainer(cfg, settings, device)
    trainer.step()  # AdamW's state exists
    store = SnapshotStore(trainer.model, trainer.optimizer, device=snapshot_device)
    saves, restores, extra = [], [], 0
    for rep in range(settings.reps):
        store.discard("s")
        base = reset_peak(device)
        start = time.perf_counter()
        store.save("s")
        sync(device)
        saves.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.restore("s")
        sync(device)
        restores.append(time.perf_counter() - start)
        top = peak(device)
        extra = max(extra, 0 if top is None else top - base)
    return {
        "snapshot_device": snapshot_device or "model's",
        "save_ms": 1e3 * statistics.median(saves),
        "restore_ms": 1e3 * statistics.median(restores),
        "bytes": store.nbytes(),
        "peak_device_extra_bytes": extra if device.type == "cuda" else None,
    }


def measure(name: str, settings: Settings, device: torch.device) -> dict[str, Any]:
    """Every measurement for one model size."""
    cfg = SIZES[name]
    if settings.vocab is not None:
        cfg = replace(cfg, vocab=settings.vocab)
    on_device = "cuda" if device.type == "cuda" else None
    with torch.device("meta"):  # counted without allocating
        params = param_count(GPT(cfg))
    plain = plain_loop(cfg, settings, device)
    loops = {
        "sync_default": autolrs_loop(cfg, settings, device, sync_every=None,
                                     snapshot_device=on_device),
        "sync_1": autolrs_loop(cfg, settings, device, sync_every=1, snapshot_device=on_device),
        "sync_default_cpu_snapshots": autolrs_loop(cfg, settings, device, sync_every=None,
                                                   snapshot_device="cpu"),
    }
    for loop in loops.values():
        loop["overhead_ms_per_step"] = loop["ms_per_step"] - plain["ms_per_step"]
        loop["overhead_fraction"] = loop["overhead_ms_per_step"] / plain["ms_per_step"]
    snapshots = [snapshot_costs(cfg, settings, device, d) for d in (on_device, "cpu")]
    return {"size": name, "params": params, "param_bytes": 4 * params, "shape": asdict(cfg),
            "plain": plain, "autolrs": loops, "snapshots": snapshots}


def mib(value: int | None) -> str:
    """Bytes as MiB for the tables ("n/a" for None)."""
    return "n/a" if value is None else f"{value / 2**20:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    s = report["settings"]
    lines = [
        f"# AutoLRS timing on {report['device_name']}",
        "",
        f"torch {report['torch']}, autolrs {report['autolrs']}, "
        f"{'bf16 autocast' if report['device'] == 'cuda' else 'float32'}, AdamW; batch "
        f"{s['batch']} x {s['seq']} tokens, vocabulary {s['vocab'] or 50257}, "
        f"{s['warmup']} warm-up + {s['steps']} timed steps "
        f"per loop, snapshot times the median of {s['reps']}.",
        "",
        "## Per step",
        "",
        "| model | params | loop | sync_every | snapshots on | ms/step | overhead ms (%) "
        "| peak MiB |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        p = r["plain"]
        lines.append(f"| {r['size']} | {r['params'] / 1e6:.1f}M | plain | | | "
                     f"{p['ms_per_step']:.2f} | | {mib(p['peak_bytes'])} |")
        for loop in r["autolrs"].values():
            lines.append(
                f"| {r['size']} | | AutoLRS | {loop['sync_every']} | {loop['snapshot_device']} | "
                f"{loop['ms_per_step']:.2f} | {loop['overhead_ms_per_step']:+.2f} "
                f"({100 * loop['overhead_fraction']:+.1f} %) | {mib(loop['peak_bytes'])} |"
            )
    lines += ["", "## One snapshot (model, AdamW state, RNGs)", "",
              "| model | snapshots on | save ms | restore ms | snapshot MiB | device MiB added |",
              "|---|---|---:|---:|---:|---:|"]
    for r in report["results"]:
        for snap in r["snapshots"]:
            lines.append(f"| {r['size']} | {snap['snapshot_device']} | {snap['save_ms']:.1f} | "
                         f"{snap['restore_ms']:.1f} | {mib(snap['bytes'])} | "
                         f"{mib(snap['peak_device_extra_bytes'])} |")
    if report["device"] != "cuda":
        lines += ["", "Run without CUDA (small size, tiny batches): these numbers only show that "
                  "the script works; they say nothing about accelerator costs."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="directory for timing.json and timing.md")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None,
                        help="default: both on CUDA, gpt2-12m otherwise")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per loop")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (<= 1024)")
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary size (default: GPT-2's 50257 on CUDA, 1024 on CPU)")
    args = parser.parse_args(argv)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    base = ON_CUDA if device.type == "cuda" else ON_CPU
    settings = Settings(batch=args.batch or base.batch, seq=args.seq or base.seq,
                        warmup=base.warmup, steps=args.steps or base.steps, reps=base.reps,
                        vocab=args.vocab or base.vocab)
    if not 1 <= settings.seq <= 1024:
        parser.error(f"--seq must be between 1 and 1024 (GPT-2's context), got {settings.seq}")
    sizes = args.sizes or (["gpt2-124m", "gpt2-12m"] if device.type == "cuda" else ["gpt2-12m"])
    report = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "autolrs": __version__,
        "settings": asdict(settings),
        "results": [measure(name, settings, device) for name in sizes],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timing.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / "timing.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {args.out / 'timing.json'} and {args.out / 'timing.md'}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
