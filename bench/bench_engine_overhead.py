"""What the engine adds to a streamed answer, against reading the same stream with bare httpx.

Run from the repository root: `python bench/bench_engine_overhead.py [--runs 30] [--tokens 2000]`
(`--profile` prints where engine queries spend their time instead).

A fake Ollama server (`tests.fakes.FakeOllama`) runs in a child process, so it has its own
interpreter and GIL and does not steal the client's CPU; on a 2-core machine the server and the
client each get a core. Every round streams the same answer three ways, in an order that rotates
from round to round:

- bare httpx: `AsyncClient.stream("POST", "/api/chat")`, `json.loads` on every line to the end
  of the body, text kept;
- backend: `OllamaBackend.stream_chat` (the wire layer alone);
- engine: `Engine.submit(Query(...))` with the Ollama backend, every event read from the handle
  (planning, cache check, Token events, metrics: what the CLI and the dashboard see).

Three scenarios: a `--tokens`-token answer streamed as fast as the server can (the worst case
for per-token overhead), 1-token answers (the fixed cost of a query: planning, recommendation,
metrics), and a 100-token answer paced at 200 tokens/s (a real small model's speed). Wall time
depends on the server as well, so the table also gives the client's own CPU time per token
(`time.process_time`), which is what the overhead really costs. Medians over the rounds; the
ratios are to bare httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.backends.base import ChatMessage, GenerationOptions, TokenChunk  # noqa: E402
from nemo_tui.backends.ollama import OllamaBackend  # noqa: E402
from nemo_tui.config import Config  # noqa: E402
from nemo_tui.core.memory import SimulatedSampler  # noqa: E402
from nemo_tui.engine import Engine  # noqa: E402
from nemo_tui.events import Query, Token  # noqa: E402

MODEL = "tinyllama:1.1b"
ENGINE = "Engine (query events)"
PACED_TOKENS = 100
PACED_RATE = 200.0
"""The paced scenario: the order of what a small model generates per second on a CPU."""
PROMPT = "Tell me a long story about a fox and a dog."

Variant = Callable[[], Awaitable[int]]


def serve(tokens: int, tokens_per_s: float) -> None:
    """Child-process mode: run the fake server, print its URL, stop when stdin closes."""
    from tests.fakes import FakeOllama

    with FakeOllama(answer_tokens=tokens, tokens_per_s=tokens_per_s, cold_load_s=0.0) as server:
        print(server.url, flush=True)
        sys.stdin.read()


def start_server(tokens: int, tokens_per_s: float) -> tuple[subprocess.Popen[str], str]:
    """Start the fake server in a child process; return it and its URL."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(tokens_per_s), "--tokens", str(tokens)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not url.startswith("http://"):
        child.kill()
        raise SystemExit(f"the fake Ollama server did not start (said {url!r})")
    return child, url


def stop_server(child: subprocess.Popen[str]) -> None:
    """Close the child's stdin, which ends it."""
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=10)


def bare_httpx(client: httpx.AsyncClient, tokens: int) -> Variant:
    """A minimal hand-written Ollama client: what the engine is compared with."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "options": {"num_predict": tokens},
    }

    async def run() -> int:
        parts: list[str] = []
        async with client.stream("POST", "/api/chat", json=body) as response:
            async for line in response.aiter_lines():
                if not line:
                    continue
                chunk = json.loads(line)
                content = chunk["message"]["content"]
                if content:
                    parts.append(content)
        return len(parts)

    return run


def backend_only(backend: OllamaBackend, tokens: int) -> Variant:
    """`OllamaBackend.stream_chat` without the engine."""
    messages = [ChatMessage("user", PROMPT)]
    options = GenerationOptions(max_tokens=tokens)

    async def run() -> int:
        parts: list[str] = []
        async for event in backend.stream_chat(MODEL, messages, options):
            if isinstance(event, TokenChunk):
                parts.append(event.text)
        return len(parts)

    return run


def through_engine(engine: Engine, tokens: int) -> Variant:
    """A query submitted to the engine, every event read as a subscriber would."""

    async def run() -> int:
        handle = engine.submit(Query(PROMPT, model=MODEL, max_tokens=tokens))
        count = 0
        async for event in handle.events():
            if isinstance(event, Token):
                count += 1
        return count

    return run


async def measure(url: str, tokens: int, runs: int) -> dict[str, list[tuple[float, float, int]]]:
    """(wall s, client CPU s, tokens) per variant per round, variants rotated round by round."""
    client = httpx.AsyncClient(base_url=url, timeout=60.0)
    backend = OllamaBackend(url)
    engine = Engine(
        Config(),
        sampler=SimulatedSampler(16 * 1024.0),
        backends=[OllamaBackend(url)],
        monitor=False,
    )
    await engine.start()
    variants: dict[str, Variant] = {
        "bare httpx + json.loads": bare_httpx(client, tokens),
        "OllamaBackend.stream_chat": backend_only(backend, tokens),
        ENGINE: through_engine(engine, tokens),
    }
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    names = list(variants)
    try:
        for name in names * 2:  # warm-up: connections, imports, the first (cold) load
            await variants[name]()
        for round_index in range(runs):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu = time.perf_counter(), time.process_time()
                count = await variants[name]()
                results[name].append((time.perf_counter() - wall, time.process_time() - cpu, count))
    finally:
        await engine.aclose()
        await backend.aclose()
        await client.aclose()
    return results


async def profile(url: str, tokens: int, queries: int) -> None:
    """cProfile over `queries` engine queries; prints the top functions by own and total time."""
    engine = Engine(
        Config(),
        sampler=SimulatedSampler(16 * 1024.0),
        backends=[OllamaBackend(url)],
        monitor=False,
    )
    await engine.start()
    run = through_engine(engine, tokens)
    await run()
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        for _ in range(queries):
            await run()
        profiler.disable()
    finally:
        await engine.aclose()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(25)
        print(out.getvalue())


@dataclass(frozen=True)
class Scenario:
    """One way of streaming: answer length, server pace, rounds."""

    title: str
    tokens: int
    tokens_per_s: float
    runs: int


def report(scenario: Scenario, results: dict[str, list[tuple[float, float, int]]]) -> float:
    """Print one scenario's rows; return the engine's median per-round CPU ratio to bare httpx."""
    walls = {name: [wall * 1000 for wall, _, _ in rows] for name, rows in results.items()}
    rates = {name: [n / wall for wall, _, n in rows] for name, rows in results.items()}
    cpu_us = {name: [cpu / n * 1e6 for _, cpu, n in rows] for name, rows in results.items()}
    baseline = next(iter(results))
    base_rate = statistics.median(rates[baseline])
    base_cpu = statistics.median(cpu_us[baseline])
    for name in results:
        wall = statistics.median(walls[name])
        rate = statistics.median(rates[name])
        cpu = statistics.median(cpu_us[name])
        cells = [
            scenario.title,
            name,
            f"{wall:.1f}",
            f"{rate:,.0f}",
            f"{rate / base_rate:.3f}",
            f"{cpu:.1f}",
            f"{cpu / base_cpu:.3f}",
        ]
        print("| " + " | ".join(cells) + " |")
    counts = {n for rows in results.values() for _, _, n in rows}
    if counts != {scenario.tokens}:
        print(f"warning: token counts seen {sorted(counts)}, expected {scenario.tokens}")
    # Paired per round, so a noisy round moves both variants alike.
    paired = [e / b for e, b in zip(cpu_us[ENGINE], cpu_us[baseline], strict=True)]
    return statistics.median(paired)


def main() -> None:
    """Parse the arguments, start the servers, measure each scenario, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds of the fast stream")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="profile engine queries instead")
    parser.add_argument("--serve", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.tokens, args.serve)
        return
    scenarios = [
        Scenario(f"{args.tokens} tokens, unpaced", args.tokens, 0.0, args.runs),
        Scenario("1-token answers (per-query cost)", 1, 0.0, args.runs * 2),
        Scenario(f"{PACED_TOKENS} tokens at {PACED_RATE:.0f}/s", PACED_TOKENS, PACED_RATE, 10),
    ]
    if args.profile:
        child, url = start_server(args.tokens, 0.0)
        try:
            asyncio.run(profile(url, args.tokens, args.runs))
        finally:
            stop_server(child)
        return
    print("Medians over rounds; the three variants run in an order rotated every round.\n")
    print(
        "| scenario | variant | wall ms / query | tokens/s (wall) | rate / bare"
        " | client CPU µs/token | CPU / bare |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    overheads: list[tuple[str, float]] = []
    for scenario in scenarios:
        child, url = start_server(scenario.tokens, scenario.tokens_per_s)
        try:
            results = asyncio.run(measure(url, scenario.tokens, scenario.runs))
        finally:
            stop_server(child)
        overheads.append((scenario.title, report(scenario, results)))
    print("\nEngine CPU per token over bare httpx, median of per-round ratios (target < 5 %):")
    for title, ratio in overheads:
        print(f"- {title}: {(ratio - 1) * 100:+.1f} %")


if __name__ == "__main__":
    main()
