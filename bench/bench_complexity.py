"""Benchmark query complexity decisions: median and p99 time per query.

Run from the repository root: `python bench/bench_complexity.py [--repeat 200]`.

The queries are the table from tests/unit/test_complexity.py (greetings to clinical reasoning)
plus long inputs: a 10 KB, a 100 KB and a 1 MB pasted document. Each query is assessed
`--repeat` times; the table shows the median and 99th percentile of single decisions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from test_complexity import CASES  # noqa: E402

from nemo_tui.core.models.complexity import assess_complexity  # noqa: E402

PARAGRAPH = (
    "The maintenance team reviewed the coolant loop after the spring outage and found the "
    "pressure readings within limits, although one sensor drifted during the night shift. "
)


def long_input(size: int) -> str:
    """A pasted document of about `size` characters with an ask at each end."""
    body = PARAGRAPH * (size // len(PARAGRAPH) + 1)
    return f"Please analyze this log.\n\n{body[:size]}\n\nWhat went wrong, and why?"


def timings(query: str, data: bool, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        assess_complexity(query, data_attached=data)
        out.append(time.perf_counter() - start)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    table = [t for query, data, _ in CASES for t in timings(query, data, args.repeat)]
    rows = [(f"test table ({len(CASES)} queries)", table)]
    for label, size in (("10 KB document", 10_000), ("100 KB document", 100_000)):
        rows.append((label, timings(long_input(size), False, args.repeat)))
    rows.append(("1 MB document", timings(long_input(1_000_000), False, max(5, args.repeat // 10))))

    print("| input | decisions | median | p99 |\n|---|---|---|---|")
    for label, values in rows:
        median = statistics.median(values) * 1e6
        print(f"| {label} | {len(values):,} | {median:,.0f} µs | {p99(values) * 1e6:,.0f} µs |")


if __name__ == "__main__":
    main()
