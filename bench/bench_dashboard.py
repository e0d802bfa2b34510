"""The dashboard's weight and idle output beside a bare Textual app, and its lag in a fast stream.

Run: `python bench/bench_dashboard.py [--runs 5] [--idle-s 30]`. Needs tmux.

Part 1 starts three programs the same way, each in its own tmux session at 120x40, `--runs` times
each, interleaved (which one starts first rotates from run to run), and then lets them idle side
by side:

- `bare`: a Textual app that shows one label (it imports nothing but Textual);
- `dead port`: `nemo-tui` with no arguments, exactly as installed: a fresh config and cache, the
  real memory sampler, the engine's monitor and the default backends. The embedded model is on
  (found installed; no llama.cpp worker starts before a query) and Ollama is probed at
  `$OLLAMA_HOST`, here a loopback port nothing listens on;
- `fixture`: the same, with `$OLLAMA_HOST` pointing at the tests' fake Ollama server
  (`tests.fakes.FakeOllama`), which runs in a child process of its own so it shares neither the
  interpreter nor the CPU accounting of the measured app.

All run from compiled bytecode, as after an install. For each run it measures:

- time to the first full frame: from `tmux new-session` until `capture-pane` shows the whole
  screen (the label; for the dashboard, every panel, the key bar, and the RAM gauge with the
  figures of a real sample in it), polled every 20 ms (faster polling loads the tmux server
  that is drawing the app);
- time until ready: the same, until the dashboard has also probed its backends and shows its
  recommendation. It is reported, not held to a target: it is the servers' answer time, which
  the dashboard does not wait for;
- resident memory (RSS) 10 s after the start;
- over the next `--idle-s` seconds of idling (gauges live, nobody typing): CPU as a share of one
  core, and the bytes the app writes to its terminal (tmux `pipe-pane` copies every byte the
  program writes to the pane into a file), per second;
- the windows are then resized to 80x24 and, once the redraw that follows has settled, the
  bytes written are counted over another `--idle-s` seconds.

Part 2 runs the dashboard headless (Textual's test driver) and streams an answer from a fake
backend at 2,000 tokens/s for 5 s while keys are typed into the question box. It reports the
event-loop lag (how long a key press would wait before it is handled: the input lag), the
round trip of Pilot's `press` (which also waits for the screen to settle, so it is an upper
bound), whether every key typed during the stream reached the question box, and whether the
answer on screen holds every token in order.

Medians are printed as a markdown table with the ratio to the bare app, then each target, met or
missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import fake_ollama_process
from bytecode_cache import compile_bytecode

if TYPE_CHECKING:
    from collections.abc import Callable

    import psutil


SIZE = (120, 40)
SMALL_SIZE = (80, 24)
SOCKET = f"nemo-bench-{os.getpid()}"
RSS_AT_S = 10.0
SETTLE_S = 1.0
"""Pause between runs, after the sessions are closed."""
RESIZE_SETTLE_S = 3.0
"""After the resize to `SMALL_SIZE`: the full redraw it causes, and one gauge tick, go uncounted."""
STREAM_S = 5.0
APPS = Path(__file__).with_name("dashboard_apps.py")
KINDS = ("bare", "dead-port", "fixture")
TITLES = {
    "bare": "bare Textual app",
    "dead-port": "dashboard, Ollama on a dead port",
    "fixture": "dashboard, Ollama fixture",
}
FIRST_FRAME_TARGET = 1.5
"""The first full frame may take at most this many times the bare app's."""
RSS_TARGET_MIB = 50.0
IDLE_CPU_TARGET_PCT = 1.0
IDLE_BYTES_TARGET = 200.0
"""Bytes per second written to the terminal while idle."""


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
    idle_bytes_per_s: list[float] = field(default_factory=list)
    small_idle_bytes_per_s: list[float] = field(default_factory=list)


def dead_port() -> int:
    """A loopback port nothing listens on: bound once by the system, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    kind: str, workdir: Path, ollama_hosts: dict[str, str]
) -> tuple[psutil.Process, float, float]:
    """Start one app in its own tmux session.

    Returns:
        Its process, the time to the first full frame and the time until it is ready.
    """
    env = {
        "XDG_CONFIG_HOME": str(workdir / kind / "xdg-config"),
        "XDG_DATA_HOME": str(workdir / kind / "xdg-data"),
        "XDG_STATE_HOME": str(workdir / kind / "xdg-state"),
        "XDG_CACHE_HOME": str(workdir / kind / "xdg-cache"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    if kind in ollama_hosts:
        env["OLLAMA_HOST"] = ollama_hosts[kind]
    program = "bare" if kind == "bare" else "nemo"
    command = "exec env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    command += f" {shlex.quote(sys.executable)} {shlex.quote(str(APPS))} {program}"
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


def count_output(kinds: list[str], seconds: float, workdir: Path) -> dict[str, float]:
    """Bytes per second each session's program writes to its terminal over `seconds`."""
    files = {kind: workdir / f"{kind}.out" for kind in kinds}
    for kind, path in files.items():
        path.unlink(missing_ok=True)
        tmux("pipe-pane", "-t", kind, f"cat > {shlex.quote(str(path))}")
    time.sleep(seconds)
    for kind in kinds:
        tmux("pipe-pane", "-t", kind)
    # `cat` copies what it has read before it sees the pipe close.
    time.sleep(0.2)
    return {
        kind: (path.stat().st_size if path.exists() else 0) / seconds
        for kind, path in files.items()
    }


def measure_run(
    idle_s: float,
    workdir: Path,
    results: dict[str, Sample],
    order: tuple[str, ...],
    ollama_hosts: dict[str, str],
) -> None:
    """One run of every app: start-up one after the other (in `order`), then idle side by side.

    The sessions are closed at the end and the tmux server is given a moment to tear them down,
    so the next run's first start does not share the machine with that work.
    """
    procs: dict[str, tuple[psutil.Process, float]] = {}
    for kind in order:
        proc, first_frame, ready = start(kind, workdir, ollama_hosts)
        procs[kind] = (proc, time.perf_counter())
        results[kind].first_frame_s.append(first_frame)
        results[kind].ready_s.append(ready)
    for kind, (proc, started_at) in procs.items():
        time.sleep(max(0.0, started_at + RSS_AT_S - time.perf_counter()))
        results[kind].rss_mb.append(proc.memory_info().rss / 2**20)
    kinds = list(procs)
    before = {kind: proc.cpu_times() for kind, (proc, _) in procs.items()}
    written = count_output(kinds, idle_s, workdir)
    for kind, (proc, _) in procs.items():
        after = proc.cpu_times()
        used = (after.user - before[kind].user) + (after.system - before[kind].system)
        results[kind].idle_cpu_pct.append(used / idle_s * 100)
        results[kind].idle_bytes_per_s.append(written[kind])
    for kind in kinds:
        tmux("resize-window", "-t", kind, "-x", str(SMALL_SIZE[0]), "-y", str(SMALL_SIZE[1]))
    time.sleep(RESIZE_SETTLE_S)
    for kind, per_s in count_output(kinds, idle_s, workdir).items():
        results[kind].small_idle_bytes_per_s.append(per_s)
    for kind in kinds:
        tmux("kill-session", "-t", kind)
    time.sleep(SETTLE_S)


async def stream_bench() -> dict[str, object]:
    """Part 2: a 2,000 tokens/s answer while typing; loop lag, key latency, text integrity."""
    from dashboard_backend import STREAM_RATE, StreamingBackend, stream_tokens
    from textual.widgets import Markdown

    from nemo_tui.config import Config
    from nemo_tui.core.memory.profile import SystemSampler
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


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def print_targets(results: dict[str, Sample]) -> None:
    """Each target, for each dashboard, met or missed (on the medians)."""

    def median(kind: str, values: Callable[[Sample], list[float]]) -> float:
        return statistics.median(values(results[kind]))

    bare_frame = median("bare", lambda s: s.first_frame_s)
    print("\nTargets:\n")
    for kind in KINDS[1:]:
        frame = median(kind, lambda s: s.first_frame_s) / bare_frame
        rss = median(kind, lambda s: s.rss_mb)
        cpu = median(kind, lambda s: s.idle_cpu_pct)
        written = median(kind, lambda s: s.idle_bytes_per_s)
        small = median(kind, lambda s: s.small_idle_bytes_per_s)
        print(
            f"- {TITLES[kind]}:"
            f" first frame {frame:.2f}x bare (at most {FIRST_FRAME_TARGET}x):"
            f" {verdict(frame <= FIRST_FRAME_TARGET)};"
            f" RSS {rss:.1f} MiB (at most {RSS_TARGET_MIB:.0f}):"
            f" {verdict(rss <= RSS_TARGET_MIB)};"
            f" idle CPU {cpu:.2f}% (under {IDLE_CPU_TARGET_PCT:.0f}%):"
            f" {verdict(cpu < IDLE_CPU_TARGET_PCT)};"
            f" idle output {written:.0f} B/s at {SIZE[0]}x{SIZE[1]}, {small:.0f} B/s at"
            f" {SMALL_SIZE[0]}x{SMALL_SIZE[1]} (under {IDLE_BYTES_TARGET:.0f}):"
            f" {verdict(max(written, small) < IDLE_BYTES_TARGET)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=30.0)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_dashboard needs tmux")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"nemo-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    results = {kind: Sample() for kind in KINDS}
    fixture, fixture_url = fake_ollama_process.start()
    ollama_hosts = {"dead-port": f"127.0.0.1:{dead_port()}", "fixture": fixture_url}
    try:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}…", file=sys.stderr)
            # Which app starts first rotates, so none always follows another.
            order = KINDS[run % len(KINDS) :] + KINDS[: run % len(KINDS)]
            measure_run(args.idle_s, workdir, results, order, ollama_hosts)
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
        fake_ollama_process.stop(fixture)
    idle_window = f"{args.idle_s:.0f} s"
    small = f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]}"
    measures: list[tuple[str, Callable[[Sample], list[float]], str, bool]] = [
        ("time to first full frame (s)", lambda s: s.first_frame_s, "{:.3f}", True),
        ("time until ready: backends probed (s)", lambda s: s.ready_s, "{:.3f}", True),
        (f"RSS after {RSS_AT_S:.0f} s (MiB)", lambda s: s.rss_mb, "{:.1f}", True),
        (f"idle CPU over {idle_window} (% of a core)", lambda s: s.idle_cpu_pct, "{:.2f}", False),
        (
            f"idle output over {idle_window} (bytes/s)",
            lambda s: s.idle_bytes_per_s,
            "{:.0f}",
            False,
        ),
        (
            f"idle output over {idle_window} at {small} (bytes/s)",
            lambda s: s.small_idle_bytes_per_s,
            "{:.0f}",
            False,
        ),
    ]
    print(f"\ntmux {SIZE[0]}x{SIZE[1]}, {args.runs} runs each, medians; ratios to the bare app\n")
    print("| measure | " + " | ".join(TITLES[k] for k in KINDS) + " |")
    print("|---|" + "---:|" * len(KINDS))
    for name, values, fmt, with_ratio in measures:
        base = statistics.median(values(results["bare"]))
        cells = [fmt.format(base)]
        for kind in KINDS[1:]:
            median = statistics.median(values(results[kind]))
            ratio = f" ({median / base:.2f}x)" if with_ratio else ""
            cells.append(fmt.format(median) + ratio)
        print(f"| {name} | " + " | ".join(cells) + " |")
    print_targets(results)
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
