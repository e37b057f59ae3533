"""Starts one process per rank for a multi-process test, with a deadline and no network port.

The ranks meet through a ``file://`` rendezvous in the test's own directory (no port to race
for), write their output to their own log files (never a shared pipe), and are all killed as soon
as one fails or the deadline passes, so a hung rank fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def launch(module: str, args: list[str], out: Path, *, world: int = 2,
           timeout: float = 180) -> None:
    """Runs ``python -m module --rank R --world W --init file://... --out OUT *args`` per rank.

    Args:
        module: The worker module (e.g. ``"tests.distributed.fsdp_check"``).
        args: Further arguments, the same for every rank.
        out: The directory the ranks write to (it receives ``rdzv-*`` and ``log-rank*.txt``).
        world: The number of ranks.
        timeout: Seconds all ranks together may take.

    Raises:
        AssertionError: If a rank exits non-zero or the deadline passes; the message holds the
            end of every rank's log.
    """
    out.mkdir(parents=True, exist_ok=True)
    rdzv = out / f"rdzv-{time.monotonic_ns()}"  # a fresh file: the file store must not exist yet
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # This checkout's sources first (an installed autolrs may come from another one).
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    logs = [out / f"log-{'-'.join(args)}-rank{r}.txt" for r in range(world)]
    procs = []
    for rank in range(world):
        with open(logs[rank], "w", encoding="utf-8") as log:
            cmd = [sys.executable, "-m", module, "--rank", str(rank), "--world", str(world),
                   "--init", rdzv.as_uri(), "--out", str(out), *args]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                          env=env))
    deadline = time.monotonic() + timeout
    failure = None
    try:
        while any(p.poll() is None for p in procs):
            failed = [r for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                failure = f"rank {failed[0]} exited with {procs[failed[0]].returncode}"
                break
            if time.monotonic() > deadline:
                failure = f"ranks still running after {timeout:.0f} s (a hang?)"
                break
            time.sleep(0.05)
        else:
            failed = [r for r, p in enumerate(procs) if p.returncode != 0]
            if failed:
                failure = f"rank {failed[0]} exited with {procs[failed[0]].returncode}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if failure is not None:
        tails = "\n".join(f"--- rank {r} ---\n{logs[r].read_text()[-2000:]}" for r in range(world))
        raise AssertionError(f"{module} {' '.join(args)}: {failure}\n{tails}")
