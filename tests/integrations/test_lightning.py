"""AutoLRSCallback with a real lightning.Trainer on CPU, single process and ddp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch
from torch import nn

from tests.helpers import import_error_without

from autolrs import AutoLRSWarning, Config
from autolrs.integrations.lightning import AutoLRSCallback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Regression(L.LightningModule):
    def __init__(self, scheduler: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
        self.scheduler = scheduler
        self.used: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return {"loss": nn.functional.mse_loss(self.net(x), y)}

    def on_before_optimizer_step(self, optimizer):
        self.used.append(optimizer.param_groups[0]["lr"])

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        if self.scheduler:
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 10)}
        return opt


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(640, 8, generator=g)
    y = torch.tanh(x[:, :1] * x[:, 1:2]) + 0.05 * torch.randn(640, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False)


def trainer(tmp_path, callback, max_steps=200, **kwargs):
    return L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, callbacks=[callback], default_root_dir=str(tmp_path),
        logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )


def fit(tmp_path, max_steps=200, ckpt_path=None, **kwargs):
    torch.manual_seed(0)
    module = Regression()
    callback = AutoLRSCallback(seed=0, config=Config(candidates=4))
    trainer(tmp_path, callback, max_steps, **kwargs).fit(module, loader(), ckpt_path=ckpt_path)
    return module, callback


def test_lightning_trains_with_autolrs(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        module, callback = fit(tmp_path)
    assert len(module.used) == 200 and len(set(module.used)) > 10
    assert callback.sched.decisions and not callback.sched.in_trial
    assert callback.sched.steps_taken == 200


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    module, callback = fit(tmp_path, max_steps=100, accumulate_grad_batches=2)
    assert len(module.used) == 100 and callback.sched.steps_taken == 100


def test_checkpoint_resume_restores_the_search_state(tmp_path):
    full, _ = fit(tmp_path / "full")
    # 40 batches per epoch: a checkpoint at the end of epoch 2 (step 80), in the middle of a search
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), every_n_epochs=1, save_top_k=-1)
    torch.manual_seed(0)
    module = Regression()
    # the interrupted run plans for 200 steps but stops at 80
    callback = AutoLRSCallback(seed=0, config=Config(candidates=4), total_steps=200)
    L.Trainer(max_steps=80, accelerator="cpu", devices=1, callbacks=[callback, ckpt], default_root_dir=str(tmp_path),
              logger=False, enable_progress_bar=False, enable_model_summary=False).fit(module, loader())
    path = os.path.join(tmp_path / "ckpt", sorted(os.listdir(tmp_path / "ckpt"))[-1])
    saved = torch.load(path, weights_only=False)
    (key,) = [k for k in saved["callbacks"] if "AutoLRSCallback" in k]
    state = saved["callbacks"][key]["autolrs"]
    assert state["controller"]["state"]["run"]["step"] == 80 and state["snapshots"]["slots"]
    first, callback_a = fit(tmp_path / "resume-a", ckpt_path=path)
    second, callback_b = fit(tmp_path / "resume-b", ckpt_path=path)
    # the search continues from the checkpoint: the first resumed step uses the rate the
    # uninterrupted run used there, and two resumes from one checkpoint decide identically.
    # (Lightning itself replays one batch when resuming from an end-of-epoch checkpoint, so
    # the data, not autolrs, make later steps differ from the uninterrupted run.)
    assert first.used[0] == full.used[80]
    assert first.used == second.used and len(first.used) == 120
    assert callback_a.sched.decisions == callback_b.sched.decisions
    assert callback_a.sched.steps_taken == 200 and not callback_a.sched.in_trial
    assert any(e["event"] == "resume" and e["step"] == 80 for e in callback_a.sched.events)


def test_an_lr_scheduler_in_configure_optimizers_is_reported(tmp_path):
    module = Regression(scheduler=True)
    with pytest.warns(AutoLRSWarning, match="remove the LR scheduler"):
        trainer(tmp_path, AutoLRSCallback(seed=0), max_steps=20).fit(module, loader())


def test_ddp_strategy_with_two_cpu_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    results = tmp_path / "results"
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "lightning_module.py"), "--steps", "150",
         "--strategy", "ddp", "--devices", "2", "--out", str(tmp_path / "out"), "--result-dir", str(results)],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # each rank writes its own file: the ranks' printed lines share one pipe and may interleave
    assert sorted(os.listdir(results)) == ["rank0.json", "rank1.json"]
    rank0, rank1 = (json.loads((results / f"rank{r}.json").read_text()) for r in range(2))
    assert [(r["rank"], r["world_size"]) for r in (rank0, rank1)] == [(0, 2), (1, 2)]
    assert rank0["steps_taken"] == 150 and rank0["decisions"]
    # identical schedules and identical models on both ranks
    assert rank0["decisions"] == rank1["decisions"]
    assert rank0["params_sha256"] == rank1["params_sha256"]
    assert rank0["accuracy"] == rank1["accuracy"]


def test_missing_lightning_names_the_extra():
    assert 'pip install "autolrs[lightning]"' in import_error_without("lightning", "autolrs.integrations.lightning")


# ------------------------------------------------------------------ the validation loss (issue 20)
class WithValidation(Regression):
    """A module whose validation_step returns its loss, or only logs it (``mode``)."""

    def __init__(self, mode: str = "return") -> None:
        super().__init__()
        self.mode = mode

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.mode == "return":
            return loss
        if self.mode == "log":
            self.log("val_loss", loss)
        return None


def fit_with_validation(tmp_path, module, callback, *, val=True, **kwargs):
    torch.manual_seed(0)
    run = trainer(tmp_path, callback, 200, num_sanity_val_steps=0, **kwargs)
    run.fit(module, loader(), loader() if val else None)
    return run


SEARCHES = Config(candidates=3, small_budget_ramp=None, discard_budget=None)
"""At these budgets the default would ramp instead of searching (and a tenth of the budget pays
for no search after the range test): these tests are about what scores a search's candidates."""


def scored_by(callback) -> set[str]:
    return {e["mode"] for e in callback.sched.events if e["event"] == "stage" and e["candidates"] > 1}


@pytest.mark.parametrize("mode", ["return", "log"])
def test_the_validation_loss_of_the_fit_dataloader_scores_candidates(tmp_path, caplog, mode):
    callback = AutoLRSCallback(seed=0, config=SEARCHES)
    with caplog.at_level("INFO"), warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRSWarning)
        module = WithValidation(mode)
        fit_with_validation(tmp_path, module, callback)
    assert callback.sched.val_fn is not None and scored_by(callback) == {"validation"}
    said = [r.getMessage() for r in caplog.records if "AutoLRSCallback:" in r.getMessage()]
    assert said == [
        "AutoLRSCallback: candidates are scored by the module's validation loss (validation_step "
        "on the first 8 batches of the Trainer's validation dataloader)."
    ]
    assert module.training and len(module.used) == 200


def test_a_val_dataloader_given_to_the_callback_is_used(tmp_path, caplog):
    callback = AutoLRSCallback(seed=0, config=SEARCHES, val_dataloader=loader(), val_batches=2)
    with caplog.at_level("INFO"):
        fit_with_validation(tmp_path, WithValidation(), callback, val=False)
    assert scored_by(callback) == {"validation"}
    assert any("first 2 batches of val_dataloader=" in r.getMessage() for r in caplog.records)


def test_without_validation_data_the_start_says_the_training_loss_scores(tmp_path, caplog):
    callback = AutoLRSCallback(seed=0, config=SEARCHES)
    with caplog.at_level("INFO"):
        fit_with_validation(tmp_path, Regression(), callback, val=False)
    assert callback.sched.val_fn is None and scored_by(callback) == {"train"}
    assert any(
        "candidates are scored by the training loss and nothing watches for overfitting" in r.getMessage()
        for r in caplog.records
    )


def test_a_validation_step_without_a_loss_is_reported_and_the_training_loss_scores(tmp_path):
    callback = AutoLRSCallback(seed=0, config=SEARCHES)
    with pytest.warns(AutoLRSWarning, match=(
        r"cannot score candidates by the validation loss: its validation_step returned NoneType "
        r"and logged nothing; return the loss from validation_step \(or log it as 'val_loss'\)"
    )):
        fit_with_validation(tmp_path, WithValidation(mode="none"), callback)
    assert callback.sched.val_fn is None and scored_by(callback) == {"train"}


def test_val_fn_and_val_dataloader_exclude_each_other():
    with pytest.raises(ValueError, match="either val_fn or val_dataloader"):
        AutoLRSCallback(val_fn=lambda: 1.0, val_dataloader=loader())


class TwoValidationSets(Regression):
    def validation_step(self, batch, batch_idx, dataloader_idx):  # several loaders: an index
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y) + dataloader_idx


def test_with_several_validation_dataloaders_the_first_ones_loss_scores(tmp_path):
    callback = AutoLRSCallback(seed=0, config=SEARCHES, val_batches=2)
    torch.manual_seed(0)
    run = trainer(tmp_path, callback, 200, num_sanity_val_steps=0)
    run.fit(TwoValidationSets(), loader(), [loader(), loader()])
    assert scored_by(callback) == {"validation"}
    assert callback.sched.val_fn() < 1.0  # the first loader's (index 0), not the second's (+1)
