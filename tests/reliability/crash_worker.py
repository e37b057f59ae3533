"""A training process that checkpoints every N steps and can SIGKILL itself at a given step.

    python crash_worker.py DIR --total 240 --save-every 20 [--kill-at 57]

It resumes from ``DIR/ckpt.pt`` when the file exists. Every step appends ``[step, lr, phase]``
to ``DIR/log.jsonl``; at the end ``DIR/result.json`` holds the decisions and the accuracy.
Checkpoints hold the model, the optimizer, ``sched.state_dict()``, the data stream's generator
and the global RNG, written atomically (temporary file, then rename).
"""

from __future__ import annotations

import argparse
import json
import os
import signal

import torch

from autolrs import AutoLRS, Config
from autolrs.bench.workloads.digits import make_digits


class Stream:
    """Random training batches from a generator whose state is checkpointed."""

    def __init__(self, split, batch_size: int, seed: int) -> None:
        self.split, self.batch_size = split, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return self

    def __next__(self):
        idx = torch.randint(0, len(self.split), (self.batch_size,), generator=self.generator)
        return self.split.x[idx], self.split.y[idx]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--total", type=int, default=240)
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--kill-at", type=int, default=-1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    work = make_digits("adamw")
    model = work.model(seed=0)
    opt = work.make_optimizer(model.parameters(), lr=1e-3)
    # At this budget the default would ramp (a ramp's resume is covered in tests/core); kill
    # points inside a search of several candidates need the range test and the search.
    sched = AutoLRS(model, opt, total_steps=args.total, seed=0,
                    val_fn=lambda: work.evaluate(model, "holdout")["loss"],
                    config=Config(small_budget_ramp=None, discard_budget=None))
    stream = Stream(work.train, 64, seed=1)
    ckpt = os.path.join(args.dir, "ckpt.pt")
    start = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["autolrs"])
        stream.generator.set_state(state["stream"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    log = open(os.path.join(args.dir, "log.jsonl"), "a", encoding="utf-8")
    batches = sched.wrap(stream)
    for step in range(start, args.total):
        if step == args.kill_at:
            log.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        if step % args.save_every == 0 and step != start:
            tmp = ckpt + ".tmp"
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "autolrs": sched.state_dict(),
                    "stream": stream.generator.get_state(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                },
                tmp,
            )
            os.replace(tmp, ckpt)
        x, y = next(batches)
        lr = sched.get_last_lr()[0]
        phase = sched.phase
        loss = work.loss(model, (x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step(loss)
        log.write(json.dumps([step, lr, phase]) + "\n")
    log.close()
    sched.finish()
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    result = {
        "decisions": [[d["step"], d["lr"]] for d in sched.decisions],
        "accuracy": work.evaluate(model, "score")["accuracy"],
        "finite": bool(finite),
        "in_trial": sched.in_trial,
    }
    with open(os.path.join(args.dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
