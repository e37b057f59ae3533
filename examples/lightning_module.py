"""autolrs with PyTorch Lightning: one callback, on one CPU process or with ``--strategy ddp``.

    python examples/lightning_module.py --steps 300
    python examples/lightning_module.py --steps 300 --strategy ddp --devices 2

``configure_optimizers`` returns a plain optimizer (no LR scheduler): autolrs sets the learning
rate. Its search state is part of Lightning's checkpoints (``--ckpt`` resumes one).
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn

from autolrs.integrations.lightning import AutoLRSCallback


class DigitsClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)  # lr is ignored


def data() -> tuple[torch.utils.data.TensorDataset, torch.Tensor, torch.Tensor]:
    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images / 16.0, dtype=torch.float32), torch.tensor(labels)
    return torch.utils.data.TensorDataset(x[:1400], y[:1400]), x[1400:], y[1400:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--ckpt", default=None, help="resume from this checkpoint")
    parser.add_argument("--out", default="autolrs-lightning")
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    train, x_test, y_test = data()
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    module = DigitsClassifier()
    callback = AutoLRSCallback(seed=0)
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=args.devices,
        strategy=args.strategy,
        callbacks=[callback],
        default_root_dir=args.out,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader, ckpt_path=args.ckpt)
    with torch.no_grad():
        accuracy = (module.net(x_test).argmax(1) == y_test).float().mean().item()
    chosen = ", ".join(f"{d['lr']:.3g}" for d in callback.sched.decisions)
    print(f"rank {trainer.global_rank}: lr per stage {chosen}; test accuracy {accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
