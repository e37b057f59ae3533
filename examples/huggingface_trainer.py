"""Train a tiny GPT-2 (built from a config, nothing downloaded) with the Hugging Face Trainer, the
learning rate found by autolrs.

    python examples/huggingface_trainer.py --steps 200 --out /tmp/autolrs-hf

The text is this repository's README, as character ids. One line plugs autolrs in:
``callbacks=[AutoLRSCallback()]``; ``lr_scheduler_type="constant"`` keeps the Trainer's own
scheduler out of the way. Re-running with ``--resume`` continues from the last checkpoint, search
state included.
"""

from __future__ import annotations

import argparse
import pathlib

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from autolrs.integrations.huggingface import AutoLRSCallback

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTEXT = 64


class CharWindows(torch.utils.data.Dataset):
    """Overlapping windows of character ids; the model predicts each next character."""

    def __init__(self, ids: torch.Tensor, stride: int = 16) -> None:
        self.ids, self.starts = ids, range(0, len(ids) - CONTEXT, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        window = self.ids[self.starts[i] : self.starts[i] + CONTEXT]
        return {"input_ids": window, "labels": window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="autolrs-hf-example")
    parser.add_argument("--save-steps", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --out")
    args = parser.parse_args()

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    cut = int(0.9 * len(ids))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)
    training = TrainingArguments(
        output_dir=args.out,
        max_steps=args.steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=5e-4,  # a fallback (see the README)
        lr_scheduler_type="constant",
        logging_steps=50,
        save_steps=args.save_steps,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    held_out = CharWindows(ids[cut:], stride=CONTEXT)
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=CharWindows(ids[:cut]),
        eval_dataset=held_out,
        callbacks=[AutoLRSCallback(val_dataset=held_out, seed=0, log_file=f"{args.out}/autolrs.jsonl")],
    )
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    print(f"eval loss {trainer.evaluate()['eval_loss']:.4f}")


if __name__ == "__main__":
    main()
