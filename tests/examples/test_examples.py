"""Every example runs on CPU, as its docstring says (with fewer steps here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_every_example_has_a_docstring_with_its_command():
    for name in ("plain_loop.py", "huggingface_trainer.py", "lightning_module.py", "ddp.py"):
        text = open(os.path.join(EXAMPLES, name), encoding="utf-8").read()
        assert text.startswith('"""') and f"examples/{name}" in text.split('"""')[1]
        assert len(text.splitlines()) < 150


def test_plain_loop_and_its_resume(tmp_path):
    ckpt = str(tmp_path / "ckpt.pt")
    out = run([os.path.join(EXAMPLES, "plain_loop.py"), "--steps", "300", "--checkpoint", ckpt], tmp_path)
    assert "stage 1" in out and "test accuracy" in out
    out = run([os.path.join(EXAMPLES, "plain_loop.py"), "--steps", "300", "--checkpoint", ckpt, "--resume"], tmp_path)
    assert "test accuracy" in out


def test_huggingface_trainer_example(tmp_path):
    out = run([os.path.join(EXAMPLES, "huggingface_trainer.py"), "--steps", "60", "--save-steps", "30",
               "--out", str(tmp_path / "hf")], tmp_path)
    assert "eval loss" in out
    assert os.path.exists(tmp_path / "hf" / "checkpoint-30" / "autolrs_state.pt")


def test_lightning_example(tmp_path):
    out = run([os.path.join(EXAMPLES, "lightning_module.py"), "--steps", "120", "--out", str(tmp_path)], tmp_path)
    assert "rank 0: lr per stage" in out


def rank_results(result_dir, world_size=2):
    """Each rank's own JSON file: the ranks' printed lines share one pipe and may interleave."""
    assert sorted(os.listdir(result_dir)) == [f"rank{r}.json" for r in range(world_size)]
    results = [json.loads((result_dir / f"rank{r}.json").read_text()) for r in range(world_size)]
    assert [(r["rank"], r["world_size"]) for r in results] == [(r, world_size) for r in range(world_size)]
    return results


def test_ddp_example_with_two_processes(tmp_path):
    run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(EXAMPLES, "ddp.py"), "--steps", "150", "--result-dir", str(tmp_path / "results")], tmp_path)
    rank0, rank1 = rank_results(tmp_path / "results")
    assert rank0["steps_taken"] == 150 and rank0["decisions"]
    # identical schedules and identical models on both ranks
    assert rank0["decisions"] == rank1["decisions"]
    assert rank0["params_sha256"] == rank1["params_sha256"]
    assert rank0["accuracy"] == rank1["accuracy"]
