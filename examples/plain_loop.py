"""autolrs in a plain PyTorch loop: an MLP on scikit-learn's digits, no learning rate given.

    python examples/plain_loop.py --steps 600

Prints the learning rate chosen per stage and the test accuracy, and saves a checkpoint that
can be resumed (``--resume``), the search state included. On resume ``sched.wrap`` skips the
batches the saved run had drawn, so the seeded batch stream goes on where it was.
"""

from __future__ import annotations

import argparse
import os

import torch
from sklearn.datasets import load_digits
from torch import nn

from autolrs import AutoLRS


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 64, seed: int = 0):
    """Endless shuffled mini-batches."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - size + 1, size):
            yield x[order[i : i + size]], y[order[i : i + size]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--checkpoint", default="autolrs-plain.pt")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images / 16.0, dtype=torch.float32), torch.tensor(labels)
    x_train, y_train, x_val, y_val, x_test, y_test = x[:1200], y[:1200], x[1200:1450], y[1200:1450], x[1450:], y[1450:]

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # lr: a fallback

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        loss = nn.functional.cross_entropy(model(x_val), y_val).item()
        model.train()
        return loss

    sched = AutoLRS(model, optimizer, total_steps=args.steps, val_fn=evaluate, seed=0)
    if args.resume and os.path.exists(args.checkpoint):
        state = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["autolrs"])

    # The seeded batch stream restarts at its beginning: on resume, skip what the saved run drew.
    for xb, yb in sched.wrap(batches(x_train, y_train), skip_drawn=args.resume):
        loss = nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sched.step(loss)
        if sched.steps_taken == args.steps // 2:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "autolrs": sched.state_dict()}, args.checkpoint)

    for d in sched.decisions:
        print(f"stage {d['stage']} (step {d['step']}): lr {d['lr']:.3g}")
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy {accuracy:.4f} after {sched.steps_taken} steps (trials included)")


if __name__ == "__main__":
    main()
