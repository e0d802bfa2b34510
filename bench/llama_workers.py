"""The llama.cpp worker a benchmark's embedded backend started (shared by the bench scripts)."""

from __future__ import annotations

import psutil

from nemo_tui.backends.embedded import WORKER_MODULE


def worker_process() -> psutil.Process:
    """The one llama.cpp worker this process is running; exits the benchmark otherwise."""
    workers = [
        child for child in psutil.Process().children() if WORKER_MODULE in " ".join(child.cmdline())
    ]
    if len(workers) != 1:
        raise SystemExit(f"expected one worker process, found {len(workers)}")
    return workers[0]
