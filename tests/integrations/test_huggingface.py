"""AutoLRSCallback with a real transformers.Trainer on CPU (a tiny GPT-2 built from a config)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from tests.helpers import import_error_without

from autolrs import AutoLRSWarning, Config
from autolrs.integrations.huggingface import STATE_FILE, AutoLRSCallback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTEXT = 32


class Windows(torch.utils.data.Dataset):
    def __init__(self, ids, stride=8):
        self.ids, self.starts = ids, range(0, len(ids) - CONTEXT, stride)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        w = self.ids[self.starts[i] : self.starts[i] + CONTEXT]
        return {"input_ids": w, "labels": w}


def corpus():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    vocab = sorted(set(text))
    return torch.tensor([vocab.index(c) for c in text]), len(vocab)


def make_trainer(out, callback, *, max_steps=120, save_steps=60, scheduler="constant", learning_rate=1e-3, **extra):
    ids, vocab = corpus()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2))
    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8,
        **({} if learning_rate is None else {"learning_rate": learning_rate}),
        lr_scheduler_type=scheduler, logging_steps=extra.pop("logging_steps", 1000),
        save_steps=save_steps, save_strategy=extra.pop("save_strategy", "steps"),
        report_to="none", use_cpu=True, disable_tqdm=True, seed=0, save_only_model=False, **extra,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Windows(ids[: int(0.9 * len(ids))]), callbacks=[callback])
    used = []
    return trainer, model, used


def record_lrs(trainer, used):
    """Records the learning rate each optimizer step really uses (registered once the optimizer exists)."""

    class Recorder(AutoLRSCallback.__mro__[1]):  # a plain TrainerCallback
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            inner = getattr(optimizer, "optimizer", optimizer)
            inner.register_step_pre_hook(lambda opt, *_: used.append(opt.param_groups[0]["lr"]))

    trainer.add_callback(Recorder())


def held_out_loss(model) -> float:
    """Mean loss on the last tenth of the corpus (the Trainer trains on the rest)."""
    ids, _ = corpus()
    held = Windows(ids[int(0.9 * len(ids)) :])
    batch = torch.stack([held[i]["input_ids"] for i in range(min(32, len(held)))])
    model.eval()
    with torch.no_grad():
        return float(model(input_ids=batch, labels=batch).loss)


def test_trainer_trains_with_the_learning_rate_autolrs_chooses(tmp_path):
    callback = AutoLRSCallback(seed=0, config=Config.stagewise(candidates=4))
    trainer, model, used = make_trainer(tmp_path, callback)
    record_lrs(trainer, used)
    before = held_out_loss(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        trainer.train()
    assert len(used) == 120
    assert len(set(used)) > 10  # range test and candidates, not the Trainer's constant 1e-3
    assert callback.sched.decisions and not callback.sched.in_trial
    # The Trainer's training_loss averages every step, the range test's divergent end included;
    # what counts is the model it leaves: clearly better than the untrained one on held-out text.
    after = held_out_loss(model)
    assert after < before - 0.5, (before, after)
    assert os.path.exists(tmp_path / "checkpoint-60" / STATE_FILE)


def test_resume_from_checkpoint_continues_the_search_exactly(tmp_path):
    full, _, used_full = make_trainer(tmp_path / "full", AutoLRSCallback(seed=0, config=Config.stagewise(candidates=4)))
    record_lrs(full, used_full)
    full.train()
    first, _, _ = make_trainer(tmp_path / "cut", AutoLRSCallback(seed=0, config=Config.stagewise(candidates=4)))
    first.train()  # writes checkpoint-60 (mid-run) and checkpoint-120
    resumed, _, used_resumed = make_trainer(tmp_path / "cut", AutoLRSCallback(seed=0, config=Config.stagewise(candidates=4)))
    record_lrs(resumed, used_resumed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-60"))
    assert len(used_resumed) == 60
    assert used_resumed == used_full[60:]


def test_a_decaying_trainer_schedule_is_reported_as_miswiring(tmp_path):
    trainer, _, _ = make_trainer(tmp_path, AutoLRSCallback(seed=0), max_steps=40, scheduler="cosine", warmup_steps=5)
    with pytest.warns(AutoLRSWarning, match="lr_scheduler_type='constant'"):
        trainer.train()


def test_a_model_without_a_loss_output_needs_logging_every_step(tmp_path):
    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"]
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))

    class NoLoss(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids=None, labels=None):
            return {"logits": self.inner(input_ids=input_ids).logits}

    trainer, model, _ = make_trainer(tmp_path, AutoLRSCallback(seed=0), max_steps=40, save_strategy="no")
    trainer.model = NoLoss(model)
    trainer.compute_loss_func = compute_loss
    with pytest.raises(RuntimeError, match="logging_steps=1"):
        trainer.train()
    ok, model, _ = make_trainer(tmp_path / "ok", AutoLRSCallback(seed=0), max_steps=40, logging_steps=1, save_strategy="no")
    ok.model = NoLoss(model)
    ok.compute_loss_func = compute_loss
    ok.train()


def test_missing_transformers_names_the_extra():
    assert 'pip install "autolrs[hf]"' in import_error_without("transformers", "autolrs.integrations.huggingface")


def test_the_trainers_logged_learning_rate_is_the_rate_autolrs_set(tmp_path):
    trainer, _, used = make_trainer(
        tmp_path, AutoLRSCallback(seed=0, config=Config.stagewise(candidates=4)), max_steps=60,
        logging_steps=1, save_strategy="no",
    )
    record_lrs(trainer, used)
    trainer.train()
    logged = [(e["step"], e["learning_rate"]) for e in trainer.state.log_history if "learning_rate" in e]
    assert len(logged) == 60
    assert [lr for _, lr in logged] == pytest.approx([used[step - 1] for step, _ in logged], rel=1e-6)
    assert len({lr for _, lr in logged}) > 10  # not the Trainer's constant 1e-3


def test_the_trainers_default_learning_rate_is_named_at_the_start(tmp_path):
    trainer, _, _ = make_trainer(tmp_path, AutoLRSCallback(seed=0), max_steps=5, learning_rate=None, save_strategy="no")
    assert trainer.args.learning_rate == 5e-5  # the library default, never chosen here
    with pytest.warns(AutoLRSWarning) as record:
        trainer.train()
    said = [str(w.message) for w in record if "the Trainer's default" in str(w.message)]
    assert len(said) == 1
    assert "TrainingArguments.learning_rate is 5e-05" in said[0]
    assert "as the starting point of its search where its learning-rate range test finds " \
        "nothing" in said[0]
    assert "Set TrainingArguments(learning_rate=...) to your best guess" in said[0]


def test_a_chosen_learning_rate_is_not_questioned(tmp_path):
    trainer, _, _ = make_trainer(tmp_path, AutoLRSCallback(seed=0), max_steps=5, learning_rate=2e-4, save_strategy="no")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        trainer.train()
