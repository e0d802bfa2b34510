"""Sandbox overhead: a sandboxed run of a trivial script against a bare `python -c`.

A sandboxed run (`nemo_tui.sandbox.runner.run_script`) makes a temporary folder, writes the
script, builds the environment, starts `python -I -X utf8 child.py ...`, which sets the limits and
runs the script with `runpy`, reads stdout and stderr on the event loop, reaps the child in a
thread with `os.wait4`, and removes the folder. The references start the same interpreter as a
plain subprocess with its output captured: `python -c`, and `python -I -c` (the isolated mode the
sandbox uses, without the launcher).

Each round runs every variant once, the order rotating from round to round, so the shared
machine's noise hits all of them alike; the table reports medians over the rounds and ratios to
the bare `python -c` of the same script measured in the same run. Wall time is taken around the
whole call, as a caller waits for it.

Run from the repository root: `python bench/bench_sandbox.py [--rounds N]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.core.analysis.run import RunLimits  # noqa: E402
from nemo_tui.sandbox.runner import run_script  # noqa: E402

LIMITS = RunLimits(memory_mb=1024, cpu_s=30, wall_s=60, output_bytes=1024 * 1024, file_mb=64)
SCRIPTS = {
    "print(1)": "print(1)",
    "import csv, statistics": "import csv, statistics\nprint(1)",
}


def bare(*flags: str, code: str) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True)
        took = time.perf_counter() - started
        assert done.stdout == b"1\n", done
        return took

    return run


def sandboxed(code: str, data: Path) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        started = time.perf_counter()
        result = await run_script(code, data, LIMITS)
        took = time.perf_counter() - started
        assert result.ok and result.stdout == "1\n", result
        return took

    return run


async def measure(rounds: int, data: Path) -> dict[str, list[float]]:
    variants: dict[str, Callable[[], Awaitable[float]]] = {}
    for label, code in SCRIPTS.items():
        variants[f"`python -c` {label}"] = bare(code=code)
        variants[f"`python -I -c` {label}"] = bare("-I", code=code)
        variants[f"sandboxed {label}"] = sandboxed(code, data)
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(2):  # warm-up: page cache, bytecode of the standard library
        for name in names:
            await variants[name]()
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(await variants[name]())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.csv"
        data.write_text("a,b\n1,2\n", encoding="utf-8")
        times = asyncio.run(measure(rounds, data))
    print(f"{rounds} rounds, medians; ratio and extra time against `python -c` of the same code.\n")
    print("| variant | median | p90 | ratio | extra |")
    print("|---|---:|---:|---:|---:|")
    for label in SCRIPTS:
        floor = statistics.median(times[f"`python -c` {label}"])
        for kind in ("`python -c`", "`python -I -c`", "sandboxed"):
            values = times[f"{kind} {label}"]
            median = statistics.median(values)
            p90 = statistics.quantiles(values, n=10)[-1]
            print(
                f"| {kind} {label} | {median * 1000:.1f} ms | {p90 * 1000:.1f} ms"
                f" | {median / floor:.2f}x | {(median - floor) * 1000:+.1f} ms |"
            )


if __name__ == "__main__":
    main()
