"""Soak: 200 queries through one engine, with cancels, a server restart, a killed worker and a
critical-pressure episode; afterwards, every query has ended, in order, and nothing has leaked.

Run from the repository root: `python bench/bench_soak.py [--queries 200] [--seed 7]`.

The engine is built the way `nemo-tui` builds it: the default configuration with
`backends.ollama.url` pointing at the fake Ollama server (`tests.fakes.FakeOllama`, on a
loopback port, in this process), the backends from `build_backends` (Ollama, and the embedded
SmolLM2-135M in its llama.cpp worker), the real memory sampler and the background monitor on.
Queries come in waves of ten, submitted at once so that nine wait in the queue; each names one
of three models (SmolLM2 in the embedded backend, tinyllama and phi3 on the fake Ollama),
picked at random with a fixed seed. Along the way:

- cancels: about one query in seven is cancelled, half while queued, half after its first token;
- a server restart: during wave 6, when an Ollama answer has started, the fake server goes down
  like a killed daemon (its connections cut, its models forgotten) and comes back on the same
  port;
- a killed worker: during wave 10, when an embedded answer has started, its llama.cpp worker gets
  SIGKILL, as from the out-of-memory killer;
- a critical-pressure episode: during waves 13 and 14, for 6 s, the sampler reports the machine
  97% used (the real profile with `MemoryProfile.with_available`; the one figure that is not
  real, since driving a shared machine into critical pressure would hurt its other users), so
  the monitor unloads what the running query does not use.

Checks, each printed with its figures; the exit status is 1 when one fails:

- every handle ends (`result()` within 120 s), none lost;
- the queries that ran started in the order they were submitted, and no query cancelled while
  queued ever started;
- the critical episode unloaded models (Evicting events for memory pressure);
- after the run, measured as before it (garbage collected, the same models loaded): this
  process's RSS and Python's allocated blocks within 10% of the level after the first two waves
  (the warm-up: imports, first connections, first loads), the same number of open file
  descriptors, TCP connections, threads and llama.cpp workers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.llama_workers import worker_process  # noqa: E402
from nemo_tui.backends.discovery import build_backends  # noqa: E402
from nemo_tui.backends.embedded import DEFAULT_MODEL_NAME, embedded_unavailable_reason  # noqa: E402
from nemo_tui.config import Config, parse_config  # noqa: E402
from nemo_tui.core.memory.profile import MemoryProfile, SystemSampler  # noqa: E402
from nemo_tui.engine import Engine, QueryHandle  # noqa: E402
from nemo_tui.events import (  # noqa: E402
    Cancelled,
    Done,
    Evicting,
    Failed,
    PressureChanged,
    Query,
    Queued,
    Token,
)
from tests.fakes import FakeOllama  # noqa: E402

MODELS = (DEFAULT_MODEL_NAME, "tinyllama:1.1b", "phi3:mini")
WAVE = 10
WARM_UP_WAVES = 2
RESTART_WAVE = 6
KILL_WAVE = 10
PRESSURE_WAVES = (13, 14)
PRESSURE_S = 6.0
CRITICAL_FREE_SHARE = 0.03
CANCEL_SHARE = 1 / 7
RESULT_TIMEOUT_S = 120.0
TOLERANCE = 0.10
TOPICS = ("rivers", "bread", "clocks", "owls", "glass", "tides", "maps", "bees", "salt", "kites")


class EpisodeSampler:
    """The machine's real memory, except during a pressure episode, when it is nearly full."""

    def __init__(self) -> None:
        self._real = SystemSampler(use_gpu=False)
        self.critical = False

    def sample(self) -> MemoryProfile:
        """The real profile, or during the episode the same with 3% of memory available."""
        profile = self._real.sample()
        if not self.critical:
            return profile
        return profile.with_available(profile.total_mb * CRITICAL_FREE_SHARE)


@dataclass
class Footprint:
    """What this process holds at one moment."""

    rss_mb: float
    allocated_blocks: int
    fds: int
    tcp: int
    threads: int
    workers: int

    @classmethod
    def now(cls) -> Footprint:
        """Measure after a full garbage collection."""
        gc.collect()
        me = psutil.Process()
        workers = [c for c in me.children() if "llama_worker" in " ".join(c.cmdline())]
        return cls(
            rss_mb=me.memory_info().rss / 2**20,
            allocated_blocks=sys.getallocatedblocks(),
            fds=me.num_fds(),
            tcp=len(me.net_connections(kind="tcp")),
            threads=me.num_threads(),
            workers=len(workers),
        )


@dataclass
class Run:
    """What the soak saw."""

    outcomes: Counter[str] = field(default_factory=Counter)
    lost: list[int] = field(default_factory=list)
    started_order: list[int] = field(default_factory=list)
    cancelled_queued: set[int] = field(default_factory=set)
    pressure_evictions: int = 0
    pressure_changes: list[str] = field(default_factory=list)
    seconds_per_query: list[float] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Soak:
    """One engine, the fake server and the plan of waves."""

    def __init__(self, engine: Engine, server: FakeOllama, sampler: EpisodeSampler, seed: int):
        self.engine = engine
        self.server = server
        self.sampler = sampler
        self.random = random.Random(seed)
        self.run = Run()
        self._numbers = iter(range(1, 10**6))

    async def watch(self) -> None:
        """Follow every engine event: the start order and the pressure episode's work."""
        seen: set[int] = set()
        async for event in self.engine.subscribe():
            query_id = getattr(event, "query_id", 0)
            if isinstance(event, PressureChanged):
                self.run.pressure_changes.append(event.change.current.value)
            elif isinstance(event, Evicting) and "pressure" in event.reason:
                self.run.pressure_evictions += 1
            elif (
                query_id
                and query_id not in seen
                and not isinstance(event, Queued | Cancelled | Failed)
            ):
                seen.add(query_id)
                self.run.started_order.append(query_id)

    async def wave(self, index: int) -> None:
        """Submit a wave at once, follow each query, inject this wave's fault."""
        fault_armed = index in (RESTART_WAVE, KILL_WAVE)
        followers = []
        for _ in range(WAVE):
            n = next(self._numbers)
            model = self.random.choice(MODELS)
            query = Query(
                f"Question {n}: one short fact about {TOPICS[n % len(TOPICS)]}.",
                model=model,
                max_tokens=self.random.randint(8, 24),
            )
            cancel = self.random.random() < CANCEL_SHARE
            when = self.random.choice(("queued", "first token")) if cancel else ""
            handle = self.engine.submit(query)
            if when == "queued":
                handle.cancel()
                self.run.cancelled_queued.add(query.id)
            fault = ""
            if fault_armed and not when:
                if index == RESTART_WAVE and model != DEFAULT_MODEL_NAME:
                    fault, fault_armed = "restart", False
                elif index == KILL_WAVE and model == DEFAULT_MODEL_NAME:
                    fault, fault_armed = "kill", False
            followers.append(self.follow(handle, when == "first token", fault))
        pressure = None
        if index == PRESSURE_WAVES[0]:
            pressure = asyncio.create_task(self.episode())
        await asyncio.gather(*followers)
        if pressure is not None:
            await pressure

    async def follow(self, handle: QueryHandle, cancel_at_first_token: bool, fault: str) -> None:
        """Read one query's events to its end; cancel or inject a fault at its first token."""
        started = time.perf_counter()

        async def read() -> Done | Failed | Cancelled:
            first = True
            async for event in handle.events():
                if isinstance(event, Token) and first:
                    first = False
                    if cancel_at_first_token:
                        handle.cancel()
                    elif fault:
                        await self.inject(fault)
            return await handle.result()

        try:
            result = await asyncio.wait_for(read(), RESULT_TIMEOUT_S)
        except TimeoutError:
            self.run.lost.append(handle.query.id)
            return
        self.run.outcomes[type(result).__name__] += 1
        if isinstance(result, Failed):
            self.run.failures.append(f"{result.model}: {result.error.message}")
        if isinstance(result, Done):
            self.run.seconds_per_query.append(time.perf_counter() - started)

    async def inject(self, fault: str) -> None:
        """Restart the Ollama server, or kill the embedded worker, mid-answer."""
        if fault == "restart":
            await asyncio.to_thread(self.server.stop)
            await asyncio.sleep(0.2)
            await asyncio.to_thread(self.server.start)
            self.run.faults.append("Ollama server restarted mid-answer")
        else:
            worker = worker_process_of(DEFAULT_MODEL_NAME)
            if worker is not None:
                os.kill(worker.pid, signal.SIGKILL)
                self.run.faults.append("embedded worker killed (SIGKILL) mid-answer")

    async def episode(self) -> None:
        """Critical pressure for a while, as the monitor samples it."""
        self.sampler.critical = True
        await asyncio.sleep(PRESSURE_S)
        self.sampler.critical = False
        self.run.faults.append(f"critical pressure for {PRESSURE_S:.0f} s")


def worker_process_of(model: str) -> psutil.Process | None:
    """The embedded worker serving `model` (the soak only ever runs one)."""
    try:
        return worker_process()
    except SystemExit:
        return None


async def settle(engine: Engine) -> None:
    """The same resident set before each footprint: SmolLM2 loaded, nothing else."""
    await engine.clear_cache()
    await engine.preload(DEFAULT_MODEL_NAME)
    await asyncio.sleep(0.5)


async def soak(queries: int, seed: int) -> tuple[Run, Footprint, Footprint, float]:
    """Run the waves; the run, the footprints after the warm-up and at the end, and the time."""
    server = FakeOllama(tokens_per_s=200.0, evict_to_fit=True)
    server.start()
    config = parse_config(f"backends:\n  ollama:\n    url: {server.url}\n")
    sampler = EpisodeSampler()
    engine = Engine(config, sampler=sampler, backends=build_backends(config))
    await engine.start()
    # The default executor's thread, which the server restart uses, exists before the first
    # footprint, so that count compares like with like.
    await asyncio.to_thread(int)
    runner = Soak(engine, server, sampler, seed)
    watcher = asyncio.create_task(runner.watch())
    started = time.perf_counter()
    waves = max(queries // WAVE, WARM_UP_WAVES + 1)
    try:
        for index in range(WARM_UP_WAVES):
            await runner.wave(index)
        await settle(engine)
        before = Footprint.now()
        for index in range(WARM_UP_WAVES, waves):
            await runner.wave(index)
        await settle(engine)
        after = Footprint.now()
    finally:
        await engine.aclose()
        watcher.cancel()
        server.stop()
    return runner.run, before, after, time.perf_counter() - started


def report(run: Run, before: Footprint, after: Footprint, seconds: float, queries: int) -> bool:
    """Print the figures and checks; True when every check passed."""
    ended = sum(run.outcomes.values())
    started = run.started_order
    checks = {
        f"every handle ended ({ended} of {queries}, {len(run.lost)} lost)": ended == queries
        and not run.lost,
        "the queries that ran started in submission order": started == sorted(started),
        "no query cancelled while queued started": not (run.cancelled_queued & set(started)),
        f"critical pressure unloaded models ({run.pressure_evictions} evictions)": (
            run.pressure_evictions > 0 and "critical" in run.pressure_changes
        ),
        f"RSS {before.rss_mb:.1f} -> {after.rss_mb:.1f} MiB (within 10%)": after.rss_mb
        <= before.rss_mb * (1 + TOLERANCE),
        f"Python blocks {before.allocated_blocks} -> {after.allocated_blocks} (within 10%)": (
            after.allocated_blocks <= before.allocated_blocks * (1 + TOLERANCE)
        ),
        f"open files {before.fds} -> {after.fds}": after.fds <= before.fds,
        f"TCP connections {before.tcp} -> {after.tcp}": after.tcp <= before.tcp,
        f"threads {before.threads} -> {after.threads}": after.threads <= before.threads,
        f"llama.cpp workers {before.workers} -> {after.workers}": after.workers == before.workers,
    }
    print(f"{queries} queries in {seconds:.0f} s; load average {os.getloadavg()[0]:.2f}")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(run.outcomes.items())))
    if run.seconds_per_query:
        print(
            f"completed queries, submit to end (queue wait included): median "
            f"{statistics.median(run.seconds_per_query):.2f} s"
        )
    print("faults: " + "; ".join(run.faults))
    for failure in run.failures:
        print(f"  failed: {failure}")
    print("pressure levels seen: " + " -> ".join(run.pressure_changes))
    for text, ok in checks.items():
        print(f"  [{'pass' if ok else 'FAIL'}] {text}")
    return all(checks.values())


def main() -> None:
    """Run the soak and exit 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    reason = embedded_unavailable_reason(Config())
    if reason is not None:
        raise SystemExit(f"the soak needs the embedded backend: {reason}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    run, before, after, seconds = asyncio.run(soak(args.queries, args.seed))
    if not report(run, before, after, seconds, args.queries):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
