"""`demo-data`: time and memory to generate the synthetic cohort, its size, and the whole command.

The original platform claimed "1500+ patients processed in 0.02s" and a "1.7MB dataset
footprint" without saying what was measured. This measures, beside those figures:

- generation: `cohort_csv(1500, 42)`, the whole CSV as one string, after a warm-up; median and
  p90 of `time.perf_counter` over the runs (target: 1,500 patients in at most 20 ms), and the
  same for 15,000 and 150,000 patients to show how it scales; then the first call in a fresh
  interpreter, nothing warmed up, as the command makes it;
- size: the bytes of the 1,500-patient CSV, and the memory of making it (tracemalloc's peak,
  and the size of the finished string), with the 150,000-patient file streamed to a sink by
  `write_cohort` for comparison;
- the command: `nemo-tui demo-data -o FILE` in a fresh interpreter against `python -c pass` and
  `nemo-tui --help`, one of each per round, nemo-tui's modules compiled to bytecode first, as
  an install does.

Run: `python bench/bench_demo_data.py [--runs 200] [--rounds 10]`
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

from bytecode_cache import ROOT, compile_bytecode

from nemo_tui.core.analysis.demo_cohort import cohort_csv, write_cohort

PATIENTS = 1500
SEED = 42
TARGET_S = 0.020
ORIGINAL_S = 0.02
ORIGINAL_MB = 1.7
SCALES = {1500: 1.0, 15_000: 0.1, 150_000: 0.02}
"""Patients, and the share of `--runs` each size gets (a 150,000-patient run takes a second)."""


class Sink(io.StringIO):
    """A text stream that only counts what it is given, so only the generator's memory is
    traced."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)


def timed_runs(make: Callable[[], object], runs: int) -> list[float]:
    """Seconds of each of `runs` calls, after two that are not counted."""
    for _ in range(2):
        make()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        make()
        times.append(time.perf_counter() - started)
    return times


def p90(values: list[float]) -> float:
    """The 90th percentile."""
    return statistics.quantiles(values, n=10)[-1]


def traced_peak(make: Callable[[], object]) -> int:
    """Bytes tracemalloc saw allocated at most while `make` ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        make()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def first_generation_times(rounds: int) -> list[float]:
    """Seconds of the first `cohort_csv(1500, 42)` in a fresh interpreter, as `demo-data` runs
    it: nothing warmed up yet."""
    script = (
        "import time\n"
        "from nemo_tui.core.analysis.demo_cohort import cohort_csv\n"
        "started = time.perf_counter()\n"
        f"cohort_csv({PATIENTS}, {SEED})\n"
        "print(time.perf_counter() - started)\n"
    )
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", script], check=True, cwd=ROOT, capture_output=True, text=True
            ).stdout
        )
        for _ in range(rounds)
    ]


def command_times(rounds: int, output: Path) -> dict[str, list[float]]:
    """Wall seconds of each command in a fresh interpreter, one of each per round."""
    variants: dict[str, Sequence[str]] = {
        "python -c pass (interpreter floor)": ("-c", "pass"),
        "nemo-tui --help (the CLI's own start-up)": ("-m", "nemo_tui", "--help"),
        f"nemo-tui demo-data -o {output.name}": ("-m", "nemo_tui", "demo-data", "-o", str(output)),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, args in variants.items():
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, *args],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="generations of 1,500 patients")
    parser.add_argument("--rounds", type=int, default=10, help="runs of the whole command")
    options = parser.parse_args()
    compile_bytecode()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")

    print("Generation, seconds of `cohort_csv(N, 42)` (the whole CSV as one string)\n")
    print("| patients | runs | median | p90 | median per 1,000 patients | original |")
    print("|---:|---:|---:|---:|---:|---|")
    medians: dict[int, float] = {}
    for patients, share in SCALES.items():
        runs = max(5, round(options.runs * share))
        times = timed_runs(functools.partial(cohort_csv, patients, SEED), runs)
        medians[patients] = statistics.median(times)
        original = f"{ORIGINAL_S:.2f} s for 1500+" if patients == PATIENTS else ""
        print(
            f"| {patients:,} | {runs} | {medians[patients] * 1000:.2f} ms |"
            f" {p90(times) * 1000:.2f} ms | {medians[patients] / patients * 1e6:.2f} ms |"
            f" {original} |"
        )

    first = first_generation_times(options.rounds)
    print(
        f"| {PATIENTS:,}, first call in a fresh interpreter | {options.rounds} |"
        f" {statistics.median(first) * 1000:.2f} ms | {p90(first) * 1000:.2f} ms |"
        f" {statistics.median(first) / PATIENTS * 1e6:.2f} ms | |"
    )

    text = cohort_csv(PATIENTS, SEED)
    size = len(text.encode("ascii"))
    peak = traced_peak(lambda: cohort_csv(PATIENTS, SEED))
    sink = Sink()
    streamed_peak = traced_peak(lambda: write_cohort(sink, 150_000, SEED))
    print("\nFootprint, 1,500 patients unless said (MB = 10^6 bytes, MiB = 2^20 bytes)\n")
    print("| measure | bytes | MB | MiB | original |")
    print("|---|---:|---:|---:|---|")
    rows = [
        ("CSV file", size, f"{ORIGINAL_MB} MB (unit and object not stated)"),
        ("the CSV as a Python str (`sys.getsizeof`)", sys.getsizeof(text), ""),
        ("tracemalloc peak while generating it", peak, ""),
        ("CSV file, 150,000 patients", sink.written, ""),
        ("tracemalloc peak, 150,000 patients streamed to a sink", streamed_peak, ""),
    ]
    for name, value, original in rows:
        print(f"| {name} | {value:,} | {value / 1e6:.3f} | {value / 2**20:.3f} | {original} |")
    print(f"\nThe 1,500-patient CSV is {ORIGINAL_MB * 1e6 / size:.1f}x smaller than 1.7 MB (10^6).")

    with tempfile.TemporaryDirectory() as folder:
        commands = command_times(options.rounds, Path(folder) / "cohort.csv")
    floor = statistics.median(commands["python -c pass (interpreter floor)"])
    print(f"\nThe whole command, {options.rounds} rounds, wall time in a fresh interpreter\n")
    print("| command | median | over the floor | / floor |")
    print("|---|---:|---:|---:|")
    for name, values in commands.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median * 1000:.0f} ms | {(median - floor) * 1000:+.0f} ms |"
            f" {median / floor:.1f}x |"
        )

    verdict = "PASS" if medians[PATIENTS] <= TARGET_S else "MISSED"
    print(
        f"\nTarget, 1,500 patients in at most {TARGET_S * 1000:.0f} ms of generation:"
        f" {verdict} ({medians[PATIENTS] * 1000:.2f} ms median; the original claimed"
        f" {ORIGINAL_S} s)"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
