"""How heavy the dashboard is next to a bare Textual app, and how it copes with a fast stream.

Run: `python bench/bench_dashboard.py [--runs 5] [--idle-s 30]`. Needs tmux.

Part 1 starts two programs the same way, in tmux at 120x40, `--runs` times each, interleaved
(which one starts first alternates from run to run):
a bare Textual app that shows one label (it imports nothing but Textual), and `nemo-tui` with
no arguments: the same `run_dashboard` the command runs, with a fresh config, the real memory
sampler and the engine's monitor, and one in-process fake backend instead of the configured
servers, so no model server or model is involved. Both run from compiled bytecode, as after
an install. For each run it measures:

- time to the first full frame: from `tmux new-session` until `capture-pane` shows the whole
  screen (the label; for the dashboard, every panel, the footer, and the RAM gauge with the
  figures of a real sample in it), polled every 20 ms (faster polling loads the tmux server
  that is drawing the app);
- time until ready: the same, until the dashboard has also probed its backends and shows its
  recommendation. It is reported, not held to a target: with real servers it is the servers'
  answer time (an unreachable host takes its connect timeout), which the dashboard does not
  wait for;
- resident memory (RSS) 10 s after the start;
- CPU over the next `--idle-s` seconds of idling (gauges live), as a share of one core.

Part 2 runs the dashboard headless (Textual's test driver) and streams an answer from a fake
backend at 2,000 tokens/s for 5 s while keys are typed into the question box. It reports the
event-loop lag (how long a key press would wait before it is handled: the input lag), the
round trip of Pilot's `press` (which also waits for the screen to settle, so it is an upper
bound), whether every key typed during the stream reached the question box, and whether the
answer on screen holds every token in order.

With `--real`, a third program runs beside them: `nemo-tui` with its default backends (the
embedded model, which starts no llama.cpp worker until a query, and Ollama probed at its default
address), in a fresh config and cache.

Medians are printed as a markdown table with the ratio to the bare app.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bytecode_cache import compile_bytecode

if TYPE_CHECKING:
    from collections.abc import Callable

    import psutil


SIZE = (120, 40)
SOCKET = f"nemo-bench-{os.getpid()}"
RSS_AT_S = 10.0
SETTLE_S = 1.0
"""Pause between runs, after the sessions are closed."""
STREAM_S = 5.0


def tmux(*args: str) -> str:
    result = subprocess.run(
        ["tmux", "-L", SOCKET, *args], capture_output=True, text=True, check=True
    )
    return result.stdout


LIVE_RAM_GAUGE = re.compile(r"RAM \((OS|cgroup)\) +[█░]+ [0-9.]+ [KMGT]?B / [0-9.]+ [KMGT]?B")
"""The RAM gauge with figures from a real sample in it."""


def full_frame_test(kind: str) -> Callable[[str], bool]:
    """Whether the whole screen is drawn: for the dashboard, every panel and live memory."""
    if kind == "bare":
        return lambda screen: "bare app ready" in screen
    marks = ("Recommended model", "Cached models", "Settings", "Answer", "^p palette")
    return lambda screen: (
        all(mark in screen for mark in marks) and bool(LIVE_RAM_GAUGE.search(screen))
    )


def ready_test(kind: str) -> Callable[[str], bool]:
    """Whether the dashboard has probed its backends and shows its recommendation."""
    if kind == "bare":
        return lambda screen: "bare app ready" in screen
    full = full_frame_test(kind)
    return lambda screen: full(screen) and "backends:" in screen and "Why " in screen


@dataclass
class Sample:
    first_frame_s: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    idle_cpu_pct: list[float] = field(default_factory=list)


def start(kind: str, workdir: Path) -> tuple[psutil.Process, float, float]:
    """Start one app in its own tmux session.

    Returns:
        Its process, the time to the first full frame and the time until it is ready.
    """
    env = {
        "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
        "XDG_DATA_HOME": str(workdir / "xdg-data"),
        "XDG_STATE_HOME": str(workdir / "xdg-state"),
        "XDG_CACHE_HOME": str(workdir / "xdg-cache"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    command = "exec env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    apps = Path(__file__).with_name("dashboard_apps.py")
    command += f" {shlex.quote(sys.executable)} {shlex.quote(str(apps))} {kind}"
    # The previous run's server may still be shutting down (its last session was just
    # killed); a new session then fails to connect, so it is tried again.
    for attempt in range(10):
        begun = time.perf_counter()
        try:
            tmux("new-session", "-d", "-s", kind, "-x", str(SIZE[0]), "-y", str(SIZE[1]), command)
            break
        except subprocess.CalledProcessError:
            if attempt == 9:
                raise
            time.sleep(0.2)
    drawn, ready = full_frame_test(kind), ready_test(kind)
    first_frame: float | None = None
    while True:
        screen = tmux("capture-pane", "-p", "-t", kind)
        now = time.perf_counter() - begun
        if first_frame is None and drawn(screen):
            first_frame = now
        if ready(screen):
            break
        if now > 60:
            raise RuntimeError(f"{kind} never became ready:\n{screen}")
        time.sleep(0.02)
    import psutil

    pid = int(tmux("display-message", "-p", "-t", kind, "#{pane_pid}").strip())
    return psutil.Process(pid), first_frame if first_frame is not None else now, now


def measure_pair(
    idle_s: float, workdir: Path, results: dict[str, Sample], order: tuple[str, ...]
) -> None:
    """One run of every app: start-up one after the other (in `order`), then idle side by side.

    The sessions are closed at the end and the tmux server is given a moment to tear them down,
    so the next run's first start does not share the machine with that work.
    """
    procs: dict[str, tuple[psutil.Process, float]] = {}
    for kind in order:
        proc, first_frame, ready = start(kind, workdir)
        procs[kind] = (proc, time.perf_counter())
        results[kind].first_frame_s.append(first_frame)
        results[kind].ready_s.append(ready)
    for kind, (proc, started_at) in procs.items():
        time.sleep(max(0.0, started_at + RSS_AT_S - time.perf_counter()))
        results[kind].rss_mb.append(proc.memory_info().rss / 2**20)
    before = {kind: proc.cpu_times() for kind, (proc, _) in procs.items()}
    time.sleep(idle_s)
    for kind, (proc, _) in procs.items():
        after = proc.cpu_times()
        used = (after.user - before[kind].user) + (after.system - before[kind].system)
        results[kind].idle_cpu_pct.append(used / idle_s * 100)
        tmux("kill-session", "-t", kind)
    time.sleep(SETTLE_S)


async def stream_bench() -> dict[str, object]:
    """Part 2: a 2,000 tokens/s answer while typing; loop lag, key latency, text integrity."""
    from dashboard_backend import STREAM_RATE, StreamingBackend, stream_tokens
    from textual.widgets import Markdown

    from nemo_tui.config import Config
    from nemo_tui.core.memory import SystemSampler
    from nemo_tui.engine import Engine
    from nemo_tui.ui.app import create_app
    from nemo_tui.ui.widgets.query_pane import QueryPane

    tokens = stream_tokens(int(STREAM_RATE * STREAM_S))
    backend = StreamingBackend(tokens)
    config = Config()
    engine = Engine(config, sampler=SystemSampler(), backends=[backend], monitor=False)
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"nemo-bench-{os.getpid()}"
    app = create_app(config, engine, config_path=workdir / "config.yaml")
    lags: list[float] = []
    measuring = True

    async def probe() -> None:
        while measuring:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - asked - 0.01)

    async with app.run_test(size=SIZE) as pilot:
        while "backends:" not in str(app.screen.sub_title):
            await pilot.pause(0.05)
        pane = app.screen.query_one(QueryPane)
        area = app.screen.query_one("#query-input")
        probe_task = asyncio.create_task(probe())

        async def key_round_trips(count: int) -> list[float]:
            times = []
            for _ in range(count):
                started = time.perf_counter()
                await pilot.press("x")
                times.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)
            return times

        idle_keys = await key_round_trips(20)
        idle_lag = list(lags)
        lags.clear()
        await pilot.press("ctrl+a", "ctrl+k", *"stream please ")
        await pilot.press("ctrl+s")
        stream_started = time.perf_counter()
        stream_keys: list[float] = []
        while pane.running:
            stream_keys.extend(await key_round_trips(1))
        stream_s = time.perf_counter() - stream_started
        stream_lag = list(lags)
        measuring = False
        await probe_task
        expected = "".join(tokens).lstrip()
        markdown = app.screen.query_one("#answer", Markdown)
        shown = markdown.source
        answer = pane.answer
        typed = getattr(area, "text", "")
    return {
        "rate": STREAM_RATE,
        "tokens": len(tokens),
        "stream_s": stream_s,
        "idle_lag_ms": _ms(idle_lag),
        "stream_lag_ms": _ms(stream_lag),
        "idle_key_ms": _ms(idle_keys),
        "stream_key_ms": _ms(stream_keys),
        "keys_typed_during_stream": len(stream_keys),
        "keys_arrived": typed.count("x"),
        "keys_sent": len(stream_keys),
        "answer_intact": answer == expected and shown == expected,
    }


def _ms(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return (0.0, 0.0, 0.0)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument(
        "--real",
        action="store_true",
        help="also run `nemo-tui` with its default backends (embedded model, Ollama probed)",
    )
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_dashboard needs tmux")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"nemo-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    kinds = ("bare", "nemo", "real") if args.real else ("bare", "nemo")
    results = {kind: Sample() for kind in kinds}
    try:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}…", file=sys.stderr)
            # Which app starts first rotates, so none always follows another.
            order = kinds[run % len(kinds) :] + kinds[: run % len(kinds)]
            measure_pair(args.idle_s, workdir, results, order)
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
    measures: list[tuple[str, Callable[[Sample], list[float]], str]] = [
        ("time to first full frame (s)", lambda s: s.first_frame_s, "{:.3f}"),
        ("time until ready: backends probed (s)", lambda s: s.ready_s, "{:.3f}"),
        (f"RSS after {RSS_AT_S:.0f} s (MiB)", lambda s: s.rss_mb, "{:.1f}"),
        (f"idle CPU over {args.idle_s:.0f} s (% of a core)", lambda s: s.idle_cpu_pct, "{:.2f}"),
    ]
    titles = {
        "bare": "bare Textual app",
        "nemo": "dashboard, fake backend",
        "real": "dashboard, default backends",
    }
    print(f"\ntmux {SIZE[0]}x{SIZE[1]}, {args.runs} runs each, medians; ratios to the bare app\n")
    print("| measure | " + " | ".join(titles[k] for k in kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name, values, fmt in measures:
        base = statistics.median(values(results["bare"]))
        cells = [fmt.format(base)]
        for kind in kinds[1:]:
            median = statistics.median(values(results[kind]))
            cells.append(f"{fmt.format(median)} ({median / base:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    stream = asyncio.run(stream_bench())
    print(
        f"\nStream: {stream['tokens']} tokens at {stream['rate']} tok/s"
        f" ({stream['stream_s']:.2f} s), headless 120x40\n"
    )
    print("| measure | idle | while streaming |")
    print("|---|---:|---:|")
    for label, key in (("event-loop lag", "lag_ms"), ("key round trip", "key_ms")):
        idle = stream[f"idle_{key}"]
        busy = stream[f"stream_{key}"]
        assert isinstance(idle, tuple) and isinstance(busy, tuple)
        print(
            f"| {label} p50 / p99 / max (ms) | {idle[0]:.1f} / {idle[1]:.1f} / {idle[2]:.1f}"
            f" | {busy[0]:.1f} / {busy[1]:.1f} / {busy[2]:.1f} |"
        )
    print(
        f"\nkeys typed while streaming {stream['keys_sent']},"
        f" arrived in the question box {stream['keys_arrived']};"
        f" answer on screen intact: {stream['answer_intact']}"
    )


if __name__ == "__main__":
    main()
