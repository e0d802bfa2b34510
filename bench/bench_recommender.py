"""Recommendation decision time on simulated 2/4/8/16 GB machines (the original promised < 2 s).

Each round decides every (machine, complexity) pair once, with and without installed/loaded
information, interleaved; the table reports median and p99 per machine in microseconds.

Run: `python bench/bench_recommender.py [--rounds N]`
"""

from __future__ import annotations

import argparse
import statistics
import time

from nemo_tui.config import Config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.core.models.catalog import build_catalog
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import RecommendationRequest, ResidentModel, recommend

MACHINES_GB = (2, 4, 8, 16)
INSTALLED = ("tinyllama", "phi3:mini", "biomistral:7b", "smollm2:135m", "gemini-3.5-flash")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    config = Config()
    catalog = build_catalog(config)
    profiles = {gb: SimulatedSampler(gb * 1024.0).sample() for gb in MACHINES_GB}
    loaded = {"tinyllama": ResidentModel("tinyllama", 900.0, 2048)}
    times: dict[int, list[float]] = {gb: [] for gb in MACHINES_GB}
    picks: dict[tuple[int, Complexity], str] = {}
    for _ in range(rounds):
        for gb, profile in profiles.items():
            for complexity in Complexity:
                for request in (
                    RecommendationRequest(complexity, catalog),
                    RecommendationRequest(complexity, catalog, installed=INSTALLED, loaded=loaded),
                ):
                    started = time.perf_counter()
                    rec = recommend(profile, request, config)
                    times[gb].append(time.perf_counter() - started)
                picks[(gb, complexity)] = rec.model
    print(f"{rounds} rounds x 3 complexities x 2 request kinds per machine\n")
    print("| machine | median | p99 | low / medium / high picks (installed, tinyllama loaded) |")
    print("|---|---:|---:|---|")
    for gb, values in times.items():
        values.sort()
        p99 = values[int(len(values) * 0.99) - 1]
        chosen = " / ".join(picks[(gb, c)] for c in Complexity)
        print(
            f"| {gb} GB | {statistics.median(values) * 1e6:.0f} µs | {p99 * 1e6:.0f} µs |"
            f" {chosen} |"
        )


if __name__ == "__main__":
    main()
