"""Routing across a lab of 20 hosts: how long one decision takes, and whether asking all hosts
holds up the event loop the dashboard draws on.

1. Decision time: `route_query` (this machine's recommendation, then the other hosts' weighed
   by the routing rules) with 20 other hosts of different sizes, side by side with a plain
   one-machine `recommend`, for a query this machine can take (low), one it is too short for
   (high, most hosts have room) and one no host can take (high, every host short).
2. Refresh: a real `HostMonitor` asks 20 hosts on loopback at once (16 node_exporter pages, 2
   ports that accept and never answer, 2 nobody listens on); a ticker on the same event loop
   wakes every 5 ms and records how late it woke, during the refreshes and, side by side, while
   idle.

Run: `python bench/bench_routing.py [--rounds N]`
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_tui.config import parse_config  # noqa: E402
from nemo_tui.core.memory.profile import MemoryProfile, SimulatedSampler  # noqa: E402
from nemo_tui.core.models.catalog import build_catalog  # noqa: E402
from nemo_tui.core.models.complexity import Complexity  # noqa: E402
from nemo_tui.core.models.recommender import RecommendationRequest, recommend  # noqa: E402
from nemo_tui.engine.planning import RemoteHost, route_query  # noqa: E402
from nemo_tui.hosts.monitor import HostMonitor  # noqa: E402
from tests.hosts.servers import GIB, FixtureServer, node_page  # noqa: E402

HOSTS = 20
TICK_S = 0.005


def machine(total_gb: float, available_gb: float) -> MemoryProfile:
    return SimulatedSampler(total_gb * 1024, available_gb * 1024).sample()


def timed(call: Callable[[], object], rounds: int) -> list[float]:
    for _ in range(min(50, rounds)):
        call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return sorted(times)


def p99(values: list[float]) -> float:
    return values[max(0, int(len(values) * 0.99) - 1)]


def decisions(rounds: int) -> None:
    config = parse_config("")
    catalog = build_catalog(config)
    roomy = [RemoteHost(f"host-{i}", machine(16 + 4 * i, 8 + 3 * i), 0.8) for i in range(HOSTS)]
    short = [RemoteHost(f"host-{i}", machine(8, 1), 0.8) for i in range(HOSTS)]
    cases = [
        ("low, this machine fits (16 GB, 12 free)", Complexity.LOW, machine(16, 12), roomy),
        ("high, this machine short (4 GB, 1.2 free)", Complexity.HIGH, machine(4, 1.2), roomy),
        ("high, every host short", Complexity.HIGH, machine(4, 1.2), short),
    ]
    print(f"Decision time, {rounds} decisions each, {HOSTS} other hosts\n")
    print("| case | route_query median | p99 | recommend (one machine) median | ratio | chosen |")
    print("|---|---:|---:|---:|---:|---|")
    for label, complexity, local, remotes in cases:
        request = RecommendationRequest(complexity, catalog)

        def routed(
            request: RecommendationRequest = request,
            local: MemoryProfile = local,
            remotes: list[RemoteHost] = remotes,
        ) -> object:
            return route_query(request, local, config, remotes, local_host="local")

        def single(
            request: RecommendationRequest = request, local: MemoryProfile = local
        ) -> object:
            return recommend(local, request, config)

        routed_times = timed(routed, rounds)
        single_times = timed(single, rounds)
        rec, host, _ = route_query(request, local, config, remotes, local_host="local")
        where = host.name if host is not None else ("local" if rec.local else "cloud")
        median_route = statistics.median(routed_times)
        median_single = statistics.median(single_times)
        print(
            f"| {label} | {median_route * 1e3:.3f} ms | {p99(routed_times) * 1e3:.3f} ms |"
            f" {median_single * 1e3:.3f} ms | {median_route / median_single:.1f}x |"
            f" {rec.model} on {where} |"
        )


async def lag_during(work: Callable[[], object] | None, seconds: float) -> list[float]:
    """How late a 5 ms ticker wakes while `work` (a coroutine factory) runs, or while idle."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            expected = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            lags.append(max(0.0, loop.time() - expected))

    ticking = asyncio.create_task(ticker())
    if work is None:
        await asyncio.sleep(seconds)
    else:
        await work()  # type: ignore[misc]
    done.set()
    await ticking
    return sorted(lags)


async def refreshes(rounds: int) -> None:
    with ExitStack() as stack:
        pages = FixtureServer()
        stack.callback(pages.close)
        silent = [stack.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in range(2)]
        closed = []
        for _ in range(2):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                closed.append(probe.getsockname()[1])
        lines = ["hosts:"]
        for i in range(HOSTS - 4):
            pages.serve(f"/host-{i}/metrics", node_page(total=(16 + i) * GIB, available=8 * GIB))
            lines += [f"  - name: host-{i}", f"    node_exporter_url: {pages.url}/host-{i}/metrics"]
        for i, listener in enumerate(silent):
            port = listener.getsockname()[1]
            lines += [f"  - name: hung-{i}", f"    ollama_url: http://127.0.0.1:{port}"]
        for i, port in enumerate(closed):
            lines += [f"  - name: gone-{i}", f"    ollama_url: http://127.0.0.1:{port}"]
        lines += ["backends:", "  ollama:", "    enabled: false"]
        config = parse_config("\n".join(lines) + "\n")
        monitor = HostMonitor(config, SimulatedSampler(16 * 1024, 12 * 1024))
        durations: list[float] = []
        busy: list[float] = []
        idle: list[float] = []
        now = [time.time()]
        # The backoff would skip the down hosts after the first round; each round starts anew,
        # so every refresh asks all 20.
        try:
            for _ in range(rounds):
                monitor = HostMonitor(
                    config, SimulatedSampler(16 * 1024, 12 * 1024), clock=lambda: now[0]
                )

                async def refresh(monitor: HostMonitor = monitor) -> None:
                    started = time.perf_counter()
                    statuses = await monitor.refresh()
                    durations.append(time.perf_counter() - started)
                    assert sum(s.up for s in statuses) == HOSTS - 4 + 1

                busy += await lag_during(refresh, 0)
                await monitor.aclose()
                idle += await lag_during(None, durations[-1])
                now[0] += 120
        finally:
            await monitor.aclose()
    busy.sort()
    idle.sort()
    print(f"\nRefresh of {HOSTS} hosts (16 up, 2 hung, 2 refused), {rounds} refreshes\n")
    print("| measure | while refreshing | idle, same length |")
    print("|---|---:|---:|")
    print(f"| refresh wall time, median | {statistics.median(durations):.3f} s | |")
    print(
        f"| ticker lag, median | {statistics.median(busy) * 1e3:.1f} ms |"
        f" {statistics.median(idle) * 1e3:.1f} ms |"
    )
    print(f"| ticker lag, p99 | {p99(busy) * 1e3:.1f} ms | {p99(idle) * 1e3:.1f} ms |")
    print(f"| ticker lag, max | {busy[-1] * 1e3:.1f} ms | {idle[-1] * 1e3:.1f} ms |")
    print(f"| ticks | {len(busy)} | {len(idle)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--refreshes", type=int, default=10)
    args = parser.parse_args()
    decisions(args.rounds)
    asyncio.run(refreshes(args.refreshes))


if __name__ == "__main__":
    main()
