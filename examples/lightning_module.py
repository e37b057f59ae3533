"""autolrs with PyTorch Lightning: one callback, on one CPU process or with ``--strategy ddp``.

    python examples/lightning_module.py --steps 300
    python examples/lightning_module.py --steps 300 --strategy ddp --devices 2

``configure_optimizers`` returns a plain optimizer (no LR scheduler): autolrs sets the learning
rate, starting from the optimizer's. Candidates are scored by the module's validation loss
(``validation_step`` on the validation dataloader given to ``fit``), as the start says. Its
search state is part of Lightning's checkpoints (``--ckpt`` resumes one).
``--result-dir DIR`` also writes each rank's outcome to ``DIR/rank{r}.json`` (under ddp the
ranks' printed lines may interleave).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

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

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)  # lr: a fallback


def data() -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset, torch.Tensor, torch.Tensor]:
    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images / 16.0, dtype=torch.float32), torch.tensor(labels)
    dataset = torch.utils.data.TensorDataset
    return dataset(x[:1400], y[:1400]), dataset(x[1400:1600], y[1400:1600]), x[1600:], y[1600:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--ckpt", default=None, help="resume from this checkpoint")
    parser.add_argument("--out", default="autolrs-lightning")
    parser.add_argument("--result-dir", help="also write each rank's outcome to DIR/rank{r}.json")
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    train, val, x_test, y_test = data()
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=50)
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
    trainer.fit(module, loader, val_loader, ckpt_path=args.ckpt)
    with torch.no_grad():
        accuracy = (module.net(x_test).argmax(1) == y_test).float().mean().item()
    chosen = ", ".join(f"{d['lr']:.3g}" for d in callback.sched.decisions)
    print(f"rank {trainer.global_rank}: lr per stage {chosen}; test accuracy {accuracy:.4f}", flush=True)
    if args.result_dir is not None:
        write_result(args.result_dir, trainer.global_rank, {
            "rank": trainer.global_rank, "world_size": trainer.world_size,
            "steps_taken": callback.sched.steps_taken, "accuracy": accuracy,
            "decisions": [[d["step"], d["lr"]] for d in callback.sched.decisions],
            "params_sha256": hashlib.sha256(
                torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy().tobytes()
            ).hexdigest(),
        })


def write_result(result_dir: str, rank: int, result: dict) -> None:
    """Writes ``result_dir/rank{rank}.json`` whole (written aside, then renamed)."""
    os.makedirs(result_dir, exist_ok=True)
    path = os.path.join(result_dir, f"rank{rank}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
