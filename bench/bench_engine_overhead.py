"""What the engine adds to a streamed answer, against `OllamaBackend.stream_chat` alone.

Run from the repository root: `python bench/bench_engine_overhead.py [--runs 30] [--tokens 2000]`
(`--scenario paced` measures one scenario only; `--profile {unpaced,one,paced}` prints where
engine queries spend their time instead).

The reference is what the engine itself calls: `OllamaBackend.stream_chat`, consumed to its
final event. A fake Ollama server (`tests.fakes.FakeOllama`) runs in a child process, so it has
its own interpreter and GIL and does not steal the client's CPU; on a 2-core machine the server
and the client each get a core. Every round runs the same answer through each variant, in an
order that rotates from round to round:

- backend (the reference): `OllamaBackend.stream_chat`, every event read, tokens counted;
- engine as `nemo-tui ask` runs it: `Engine.submit(Query(...))` with the default `Config()`, the
  real memory sampler, the metrics history file, no monitor; every event read from the handle
  (queued, recommendation, prompt, tokens, done: what the CLI and the dashboard see);
- engine as the dashboard runs it: no history file, every event read through `Engine.subscribe()`
  (the handle is kept, to cancel, but not read), plus the monitor (below);
- bare httpx, for information only: `AsyncClient.stream`, `json.loads` on every line.

The dashboard's monitor samples memory every `gauge_interval_s` and re-probes the backends every
`refresh_interval_s`, whatever the queries do. Run inside the rotation, it would charge each
sample to whichever variant happened to be running, so it is measured on its own in the same
run (CPU of one sample and of one probe, medians) and added to the dashboard row in proportion
to that row's wall time: CPU/s of the monitor times seconds per token.

Three scenarios: a `--tokens`-token answer streamed as fast as the server can (the worst case for
per-token overhead), 1-token answers (the fixed cost of a query: planning, recommendation,
metrics; reported per query, `--batch` queries per variant per round), and a 100-token answer
paced at 200 tokens/s (a real small model's speed). The measure is the client's own CPU time
(`time.process_time`): wall time depends on the server too. Medians over the rounds; the ratio
to the backend is the median of per-round ratios, so a noisy round moves both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import fake_ollama_process  # noqa: E402
from nemo_tui.backends.base import ChatMessage, GenerationOptions, TokenChunk  # noqa: E402
from nemo_tui.backends.ollama import OllamaBackend  # noqa: E402
from nemo_tui.config import Config  # noqa: E402
from nemo_tui.core.memory.profile import SystemSampler  # noqa: E402
from nemo_tui.engine import Engine  # noqa: E402
from nemo_tui.events import FINAL_EVENTS, Done, Query  # noqa: E402

MODEL = "tinyllama:1.1b"
PROMPT = "Tell me a long story about a fox and a dog."
TARGET = 0.05
"""The engine may add at most this share of the backend's CPU per token."""
PACED_TOKENS = 100
PACED_RATE = 200.0
"""The paced scenario: the order of what a small model generates per second on a CPU."""
MONITOR_SAMPLES = 20
"""How many memory samples and backend probes the monitor's cost is measured over."""

BACKEND = "OllamaBackend.stream_chat"
ASK = "Engine, as `ask`"
DASHBOARD = "Engine, as the dashboard"
BARE = "bare httpx + json.loads"
ENGINES = (ASK, DASHBOARD)

Variant = Callable[[], Awaitable[int]]
Row = tuple[float, float, int]
"""Wall seconds, client CPU seconds, tokens (or queries, for 1-token answers) of one round."""


def bare_httpx(client: httpx.AsyncClient, tokens: int) -> Variant:
    """A minimal hand-written Ollama client, for information."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "options": {"num_predict": tokens},
    }

    async def run() -> int:
        count = 0
        async with client.stream("POST", "/api/chat", json=body) as response:
            async for line in response.aiter_lines():
                if not line:
                    continue
                if json.loads(line)["message"]["content"]:
                    count += 1
        return count

    return run


def backend_only(backend: OllamaBackend, tokens: int) -> Variant:
    """`OllamaBackend.stream_chat` consumed to its final event: the reference."""
    messages = [ChatMessage("user", PROMPT)]
    options = GenerationOptions(max_tokens=tokens)

    async def run() -> int:
        count = 0
        async for event in backend.stream_chat(MODEL, messages, options):
            if isinstance(event, TokenChunk):
                count += 1
        return count

    return run


def through_engine(engine: Engine, tokens: int) -> Variant:
    """A query submitted to the engine, every event read from its handle, as `ask` does.

    Answer text read late comes joined into one Token, so tokens are counted by `Done`, as the
    server reported them.
    """

    async def run() -> int:
        handle = engine.submit(Query(PROMPT, model=MODEL, max_tokens=tokens))
        count = 0
        async for event in handle.events():
            if isinstance(event, Done):
                count = event.tokens_out
        return count

    return run


def through_subscriber(engine: Engine, tokens: int) -> Variant:
    """A query submitted to the engine and read from a subscription, as the dashboard does.

    The dashboard keeps the handle (to cancel) but reads every event through `subscribe()`.
    """
    events = engine.subscribe()

    async def run() -> int:
        handle = engine.submit(Query(PROMPT, model=MODEL, max_tokens=tokens))
        async for event in events:
            if isinstance(event, FINAL_EVENTS) and event.query_id == handle.query.id:
                return event.tokens_out if isinstance(event, Done) else 0
        return 0

    return run


async def same_answer(backend: OllamaBackend, engine: Engine, tokens: int) -> None:
    """Check that the engine hands on exactly the text the backend streams."""
    parts = [
        event.text
        async for event in backend.stream_chat(
            MODEL, [ChatMessage("user", PROMPT)], GenerationOptions(max_tokens=tokens)
        )
        if isinstance(event, TokenChunk)
    ]
    done = await engine.submit(Query(PROMPT, model=MODEL, max_tokens=tokens)).result()
    if not isinstance(done, Done) or done.text != "".join(parts):
        raise SystemExit(f"the engine's answer differs from the backend's: {done}")


def repeated(variant: Variant, times: int) -> Variant:
    """`times` queries in a row; returns how many queries ran (for per-query figures)."""

    async def run() -> int:
        for _ in range(times):
            await variant()
        return times

    return run


def make_engine(url: str, history: Path | None) -> Engine:
    """An engine with the default settings and the real sampler, reading one Ollama server."""
    return Engine(
        Config(),
        sampler=SystemSampler(),
        backends=[OllamaBackend(url)],
        monitor=False,
        history_path=history,
    )


@dataclass(frozen=True)
class Scenario:
    """One way of streaming: answer length, server pace, rounds, queries per round."""

    title: str
    tokens: int
    tokens_per_s: float
    runs: int
    batch: int = 1
    """Queries per variant per round; above 1 the figures are per query, not per token."""

    @property
    def per_query(self) -> bool:
        """Whether the figures are per query (1-token answers) rather than per token."""
        return self.batch > 1


@dataclass(frozen=True)
class Measured:
    """One scenario's rounds per variant, and the monitor's cost in CPU seconds per second."""

    rows: dict[str, list[Row]]
    monitor_cpu_per_s: float


async def monitor_cost(engine: Engine) -> float:
    """The dashboard monitor's CPU per second of running, at the configured intervals.

    Each gauge tick takes a memory sample (what a tick costs when the pressure level holds);
    each refresh probes the backends again (health, installed and loaded models).
    """
    samples, probes = [], []
    for _ in range(MONITOR_SAMPLES):
        cpu = time.process_time()
        engine.sample()
        samples.append(time.process_time() - cpu)
        cpu = time.process_time()
        await engine.probe()
        probes.append(time.process_time() - cpu)
    monitor = engine.config.monitor
    return (
        statistics.median(samples) / monitor.gauge_interval_s
        + statistics.median(probes) / monitor.refresh_interval_s
    )


async def measure(url: str, scenario: Scenario, history: Path) -> Measured:
    """Every variant once per round, in an order rotated round by round."""
    client = httpx.AsyncClient(base_url=url, timeout=60.0)
    backend = OllamaBackend(url)
    ask = make_engine(url, history)
    dashboard = make_engine(url, None)
    await ask.start()
    await dashboard.start()
    tokens = scenario.tokens
    variants: dict[str, Variant] = {
        BACKEND: backend_only(backend, tokens),
        ASK: through_engine(ask, tokens),
        DASHBOARD: through_subscriber(dashboard, tokens),
        BARE: bare_httpx(client, tokens),
    }
    if scenario.batch > 1:
        variants = {name: repeated(run, scenario.batch) for name, run in variants.items()}
    rows: dict[str, list[Row]] = {name: [] for name in variants}
    names = list(variants)
    try:
        for name in names * 2:  # warm-up: connections, imports, the first (cold) load
            await variants[name]()
        await same_answer(backend, ask, tokens)
        for round_index in range(scenario.runs):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu = time.perf_counter(), time.process_time()
                count = await variants[name]()
                rows[name].append((time.perf_counter() - wall, time.process_time() - cpu, count))
        monitor = await monitor_cost(dashboard)
    finally:
        await ask.aclose()
        await dashboard.aclose()
        await backend.aclose()
        await client.aclose()
    return Measured(rows, monitor)


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles."""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def report(scenario: Scenario, measured: Measured) -> dict[str, float]:
    """Print one scenario's rows; return each engine's overhead over the backend (a share)."""
    rows = measured.rows
    scale = 1e3 if scenario.per_query else 1e6  # ms per query, or µs per token
    cpu = {name: [c / n * scale for _, c, n in runs] for name, runs in rows.items()}
    wall_per = {name: [w / n for w, _, n in runs] for name, runs in rows.items()}
    # The monitor runs all the time: its CPU per second, times the dashboard's seconds per unit.
    cpu[DASHBOARD] = [
        c + measured.monitor_cpu_per_s * w * scale
        for c, w in zip(cpu[DASHBOARD], wall_per[DASHBOARD], strict=True)
    ]
    overheads: dict[str, float] = {}
    for name in rows:
        paired = [v / b for v, b in zip(cpu[name], cpu[BACKEND], strict=True)]
        ratio = statistics.median(paired)
        low, high = quartiles(paired)
        wall_ms = statistics.median(w * 1e3 for w, _, _ in rows[name]) / scenario.batch
        if scenario.per_query:
            rate = "–"
        else:
            rate = f"{statistics.median(n / w for w, _, n in rows[name]):,.0f}"
        overhead = f"{(ratio - 1) * 100:+.1f} %" if name != BACKEND else "(reference)"
        verdict = ""
        if name in ENGINES:
            overheads[name] = ratio - 1
            verdict = "met" if ratio - 1 < TARGET else "**missed**"
        cells = [
            scenario.title,
            name,
            f"{wall_ms:.1f}",
            rate,
            f"{statistics.median(cpu[name]):,.1f}",
            f"{ratio:.3f} ({low:.3f}–{high:.3f})",
            overhead,
            verdict,
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
    counts = {n for runs in rows.values() for _, _, n in runs}
    expected = scenario.batch if scenario.per_query else scenario.tokens
    if counts != {expected}:
        print(f"warning: counts seen {sorted(counts)}, expected {expected}")
    return overheads


async def profile(url: str, tokens: int, queries: int) -> None:
    """cProfile over `queries` engine queries; prints the top functions by own and total time."""
    engine = make_engine(url, None)
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
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(60)
        print(out.getvalue())


def load_average() -> str:
    """The 1, 5 and 15-minute load averages."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    """Parse the arguments, start the servers, measure each scenario, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds per scenario")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens of the unpaced answer")
    parser.add_argument("--batch", type=int, default=10, help="1-token queries per round")
    parser.add_argument(
        "--scenario",
        choices=("unpaced", "one", "paced"),
        action="append",
        help="measure only this scenario (repeatable); all three by default",
    )
    parser.add_argument(
        "--profile",
        choices=("unpaced", "one", "paced"),
        help="profile engine queries of one scenario instead",
    )
    args = parser.parse_args()
    scenarios = {
        "unpaced": Scenario(f"{args.tokens} tokens, unpaced", args.tokens, 0.0, args.runs),
        "one": Scenario("1-token answers", 1, 0.0, args.runs, batch=args.batch),
        "paced": Scenario(
            f"{PACED_TOKENS} tokens at {PACED_RATE:.0f}/s", PACED_TOKENS, PACED_RATE, args.runs
        ),
    }
    if args.profile:
        chosen = scenarios[args.profile]
        child, url = fake_ollama_process.start(
            tokens=chosen.tokens, tokens_per_s=chosen.tokens_per_s
        )
        try:
            queries = chosen.runs * max(chosen.batch, 1)
            asyncio.run(profile(url, chosen.tokens, queries))
        finally:
            fake_ollama_process.stop(child)
        return
    if args.scenario:
        scenarios = {key: scenarios[key] for key in args.scenario}
    print(f"Load average before: {load_average()} ({os.cpu_count()} cores)")
    print(
        "Client CPU per token (µs), or per query (ms) for 1-token answers; medians over"
        f" {args.runs} rounds, variants in an order rotated every round. Ratio: median of"
        " per-round ratios to the backend (interquartile range).\n"
    )
    print(
        "| scenario | variant | wall ms / query | tokens/s (wall) | client CPU"
        " | CPU / backend (IQR) | overhead | target < 5 % |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    monitors: list[float] = []
    summary: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        history = Path(scratch) / "history.jsonl"
        for scenario in scenarios.values():
            child, url = fake_ollama_process.start(
                tokens=scenario.tokens, tokens_per_s=scenario.tokens_per_s
            )
            try:
                measured = asyncio.run(measure(url, scenario, history))
            finally:
                fake_ollama_process.stop(child)
            monitors.append(measured.monitor_cpu_per_s)
            summary.append((scenario.title, report(scenario, measured)))
    print(
        f"\nDashboard monitor: {statistics.median(monitors) * 1e6:,.0f} µs of CPU per second"
        " (one memory sample per gauge interval, one backend probe per refresh interval),"
        " included in the dashboard rows."
    )
    print("\nEngine CPU over the backend, median of per-round ratios (target < 5 %):")
    for title, overheads in summary:
        cells = [f"{name}: {value * 100:+.1f} %" for name, value in overheads.items()]
        print(f"- {title}: " + "; ".join(cells))
    print(f"\nLoad average after: {load_average()}")


if __name__ == "__main__":
    main()
