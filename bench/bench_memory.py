"""What one memory sample costs, in total and per probe.

Run: `python bench/bench_memory.py [--runs 500]`. Every probe runs once per round, round after
round, so all of them see the same machine state; the table gives the median and p90 of each in
microseconds and its median as a share of a full `SystemSampler().sample()`. The target is a
full-sample median under 2 ms.

The cgroup probe, and the full sample, are also measured against a temporary three-level cgroup
tree with two limits, as a container or limited systemd slice would have; this machine may have
no cgroup v2 limit, which makes its own cgroup probe nearly free.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from nemo_tui.core.memory.probes import CgroupProbe, RssProbe, read_meminfo, read_psi
from nemo_tui.core.memory.profile import SimulatedSampler, SystemSampler

GIB = 1024**3


def fake_cgroup_tree(root: Path) -> tuple[Path, Path]:
    """A /proc and cgroup tree: this process two levels under a limited root, host meminfo."""
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/pod/app\n")
    (proc / "pressure").mkdir()
    (proc / "pressure" / "memory").write_text(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        (proc / "meminfo").write_bytes(meminfo.read_bytes())
    cgroup = root / "cgroup"
    for level, limit in (("", 2 * GIB), ("pod", 3 * GIB), ("pod/app", "max")):
        directory = cgroup / level
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "memory.max").write_text(f"{limit}\n")
        (directory / "memory.current").write_text(f"{GIB}\n")
        stat = "".join(f"{key} {n}\n" for n, key in enumerate(("anon", "file", "kernel") * 15))
        (directory / "memory.stat").write_text(f"{stat}inactive_file 1048576\n")
    return proc, cgroup


def measure(probes: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Run every probe once per round for `runs` rounds; return the timings in microseconds."""
    for probe in probes.values():  # warm-up: NVML start-up, first file opens, imports
        probe()
    timings: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(runs):
        for name, probe in probes.items():
            start = time.perf_counter_ns()
            probe()
            timings[name].append((time.perf_counter_ns() - start) / 1000)
    return timings


def p90(values: list[float]) -> float:
    """The 90th percentile."""
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    runs = parser.parse_args().runs

    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        proc, cgroup = fake_cgroup_tree(Path(tmp))
        fake_tree = CgroupProbe(proc_root=proc, cgroup_root=cgroup)
        this_host = CgroupProbe(proc_root=Path("/proc"), cgroup_root=Path("/sys/fs/cgroup"))
        simulated = SimulatedSampler(4096.0)
        probes: dict[str, Callable[[], object]] = {
            "SystemSampler().sample() (full)": SystemSampler().sample,
            "full sample, limited container (fake tree)": SystemSampler(
                proc_root=proc, cgroup_root=cgroup
            ).sample,
            "host: read_meminfo (used)": lambda: read_meminfo("/proc/meminfo"),
            "host: psutil virtual_memory + swap_memory": lambda: (
                psutil.virtual_memory(),
                psutil.swap_memory(),
            ),
            "PSI: read_psi": lambda: read_psi("/proc/pressure/memory"),
            "cgroup: this machine": lambda: this_host.read(1e9),
            "cgroup: 3 levels, 2 limits (fake tree)": lambda: fake_tree.read(1e9),
            "RSS: RssProbe, /proc/self/statm (used)": RssProbe().read_mb,
            "RSS: psutil.Process().memory_info() (not used on Linux)": process.memory_info,
            "SimulatedSampler().sample()": simulated.sample,
        }
        timings = measure(probes, runs)

    full = statistics.median(timings["SystemSampler().sample() (full)"])
    print(f"{runs} rounds; microseconds\n")
    print("| probe | median µs | p90 µs | median / full sample |")
    print("|---|---:|---:|---:|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {p90(values):.1f} | {median / full:.2f} |")


if __name__ == "__main__":
    main()
