"""CLI start-up: `status --json` and `--help` wall time, and the config library's import cost.

Each round runs every variant once, in turn, in a fresh interpreter, so the shared machine's
noise hits all of them alike; the table reports medians over the rounds and ratios between
variants measured in the same run. nemo-tui's modules are compiled to bytecode first, as an
install does (`bytecode_cache.py`).

Run: `python bench/bench_cli.py [--rounds N]`
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from bytecode_cache import compile_bytecode

VARIANTS: dict[str, Sequence[str]] = {
    "python -c pass (interpreter floor)": ("-c", "pass"),
    "nemo-tui --help": ("-m", "nemo_tui", "--help"),
    "nemo-tui status --json": ("-m", "nemo_tui", "status", "--json"),
    "nemo-tui status --json --simulate-memory 8GB": (
        "-m",
        "nemo_tui",
        "status",
        "--json",
        "--simulate-memory",
        "8GB",
    ),
    "import msgspec": ("-c", "import msgspec"),
    "import pydantic (BaseModel)": ("-c", "from pydantic import BaseModel"),
    "import nemo_tui.config (msgspec schema)": ("-c", "import nemo_tui.config"),
    "import textual.app (for comparison)": ("-c", "import textual.app"),
}


def run_once(args: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def available(args: Sequence[str]) -> bool:
    return subprocess.run([sys.executable, *args], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    compile_bytecode()
    variants = {name: args for name, args in VARIANTS.items() if available(args)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, args in variants.items():
            times[name].append(run_once(args))
    floor = statistics.median(times["python -c pass (interpreter floor)"])
    print(f"{rounds} rounds, medians; 'over floor' subtracts the bare interpreter start.\n")
    print("| variant | median wall | over floor |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.0f} ms | {(median - floor) * 1000:+.0f} ms |")
    status = statistics.median(times["nemo-tui status --json"])
    print(f"\nstatus --json: {status * 1000:.0f} ms median (target: under 250 ms)")


if __name__ == "__main__":
    main()
