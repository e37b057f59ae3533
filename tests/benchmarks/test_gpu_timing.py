"""benchmarks/gpu/timing.py runs (on CPU here: the small size, tiny and short) and writes its
JSON and Markdown, so the script is ready whenever an accelerator is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "timing.py"


def test_the_gpu_timing_script_runs_and_writes_json_and_markdown(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)  # this checkout's autolrs first
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--sizes", "gpt2-12m"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "timing.json").read_text())
    (result,) = report["results"]
    assert result["size"] == "gpt2-12m" and result["plain"]["ms_per_step"] > 0
    assert set(result["autolrs"]) == {"sync_default", "sync_1", "sync_default_cpu_snapshots"}
    assert result["autolrs"]["sync_1"]["sync_every"] == 1
    assert result["autolrs"]["sync_default_cpu_snapshots"]["snapshot_device"] == "cpu"
    for snap in result["snapshots"]:
        # one snapshot: the parameters and AdamW's two moments (float32), plus RNG states
        assert snap["bytes"] >= 3 * result["param_bytes"]
        assert snap["save_ms"] > 0 and snap["restore_ms"] > 0
    table = (tmp_path / "timing.md").read_text()
    assert "| gpt2-12m |" in table and "## One snapshot" in table
