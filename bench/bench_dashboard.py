"""How heavy the dashboard is next to a bare Textual app, and how it copes with a fast stream.

Run: `python bench/bench_dashboard.py [--runs 5] [--idle-s 30]`. Needs tmux.

Part 1 starts two programs the same way, in tmux at 120x40, `--runs` times each, interleaved:
a bare Textual app that shows one label, and the dashboard (real memory sampler, engine monitor
on, one in-process fake backend so no model server or model is involved). For each run it
measures:

- time to first frame: from `tmux new-session` until `capture-pane` shows the layout (the
  label; for the dashboard, the memory panel, the recommendation panel and the footer, while
  the engine may still be starting), polled every 20 ms (faster polling loads the tmux server
  that is drawing the app);
- time to first full frame: the same, until the dashboard also shows the probed backends;
- resident memory (RSS) 10 s after the start;
- CPU over the next `--idle-s` seconds of idling (gauges live), as a share of one core.

Part 2 runs the dashboard headless (Textual's test driver) and streams an answer from a fake
backend at 2,000 tokens/s for 5 s while keys are typed into the question box. It reports the
event-loop lag (how long a key press would wait before it is handled: the input lag), the
round trip of Pilot's `press` (which also waits for the screen to settle, so it is an upper
bound), whether every key typed during the stream reached the question box, and whether the
answer on screen holds every token in order.

Medians are printed as a markdown table with the ratio to the bare app.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from nemo_tui.backends.base import (
    BackendHealth,
    ChatMessage,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.core.catalog import ModelArchitecture

if TYPE_CHECKING:
    from nemo_tui.engine import Engine

SIZE = (120, 40)
SOCKET = f"nemo-bench-{os.getpid()}"
RSS_AT_S = 10.0
STREAM_RATE = 2000
STREAM_S = 5.0
TICK_S = 0.01
"""The fake stream sends STREAM_RATE * TICK_S tokens every TICK_S."""


class StreamingBackend:
    """An in-process `Backend` serving one model that answers at a fixed token rate."""

    name = "ollama"
    local = True

    def __init__(self, tokens: list[str] | None = None) -> None:
        self.tokens = tokens or ["Ready."]
        self.loaded: set[str] = set()

    async def health(self) -> BackendHealth:
        return BackendHealth(self.name, "memory://bench", True, "bench")

    async def list_installed(self) -> list[InstalledModel]:
        return [InstalledModel("tinyllama", self.name)]

    async def list_loaded(self) -> list[LoadedModel]:
        return [LoadedModel(m, self.name, 700.0, context_length=2048) for m in self.loaded]

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        return None

    async def preload(self, model: str, options: GenerationOptions) -> None:
        self.loaded.add(model)

    async def unload(self, model: str) -> float | None:
        self.loaded.discard(model)
        return 700.0

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        per_tick = max(1, int(STREAM_RATE * TICK_S))
        for start in range(0, len(self.tokens), per_tick):
            await asyncio.sleep(TICK_S)
            for token in self.tokens[start : start + per_tick]:
                yield TokenChunk(token)
        yield StreamEnd(completion_tokens=len(self.tokens), model=model)

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        return None

    async def aclose(self) -> None:
        return None


def stream_tokens(count: int) -> list[str]:
    """Markdown-ish tokens: words, bold, and a paragraph break every 200 tokens."""
    tokens = []
    for i in range(count):
        if i % 200 == 199:
            tokens.append("\n\n")
        elif i % 50 == 0:
            tokens.append(f"**w{i}** ")
        else:
            tokens.append(f"w{i} ")
    return tokens


def serve(kind: str) -> None:
    """Run one of the two apps in this process (inside tmux)."""
    if kind == "bare":
        from textual.app import App, ComposeResult
        from textual.widgets import Label

        class Bare(App[None]):
            def compose(self) -> ComposeResult:
                yield Label("bare app ready")

        Bare().run()
        return
    from nemo_tui.config import Config
    from nemo_tui.core.memory import SystemSampler
    from nemo_tui.ui.app import create_app

    config = Config()

    def build_engine() -> Engine:
        # As `nemo-tui` does: the app builds the engine in a thread after its first frame.
        from nemo_tui.engine import Engine

        return Engine(config, sampler=SystemSampler(), backends=[StreamingBackend()])

    create_app(config, build_engine, config_path=Path(os.environ["BENCH_CONFIG"])).run()


def tmux(*args: str) -> str:
    result = subprocess.run(
        ["tmux", "-L", SOCKET, *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def ready_test(kind: str, *, full: bool = True) -> Callable[[str], bool]:
    """Whether the screen is drawn: full means the backends are probed, else just the layout."""
    if kind == "bare":
        return lambda screen: "bare app ready" in screen
    marks = ("RAM (OS", "Recommended model", "^p palette") + (("backends:",) if full else ())
    return lambda screen: all(mark in screen for mark in marks)


@dataclass
class Sample:
    first_paint_s: list[float] = field(default_factory=list)
    first_frame_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    idle_cpu_pct: list[float] = field(default_factory=list)


def start(kind: str, workdir: Path) -> tuple[psutil.Process, float, float]:
    """Start one app in its own tmux session.

    Returns:
        Its process, the time until the layout is drawn and the time to the first full frame.
    """
    env = {
        "BENCH_CONFIG": str(workdir / "config.yaml"),
        "XDG_CONFIG_HOME": str(workdir / "xdg"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    command = "exec env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    command += f" {shlex.quote(sys.executable)} {shlex.quote(__file__)} --serve {kind}"
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
    painted, test = ready_test(kind, full=False), ready_test(kind)
    first_paint: float | None = None
    while True:
        screen = tmux("capture-pane", "-p", "-t", kind)
        now = time.perf_counter() - begun
        if first_paint is None and painted(screen):
            first_paint = now
        if test(screen):
            break
        if now > 60:
            raise RuntimeError(f"{kind} never drew its first frame")
        time.sleep(0.02)
    pid = int(tmux("display-message", "-p", "-t", kind, "#{pane_pid}").strip())
    return psutil.Process(pid), first_paint if first_paint is not None else now, now


def measure_pair(idle_s: float, workdir: Path, results: dict[str, Sample]) -> None:
    """One run of both apps: start-up one after the other, then idle side by side."""
    procs: dict[str, tuple[psutil.Process, float]] = {}
    for kind in ("bare", "nemo"):
        proc, first_paint, first_frame = start(kind, workdir)
        procs[kind] = (proc, time.perf_counter())
        results[kind].first_paint_s.append(first_paint)
        results[kind].first_frame_s.append(first_frame)
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


async def stream_bench() -> dict[str, object]:
    """Part 2: a 2,000 tokens/s answer while typing; loop lag, key latency, text integrity."""
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
    parser.add_argument("--serve", choices=("bare", "nemo"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if shutil.which("tmux") is None:
        sys.exit("bench_dashboard needs tmux")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"nemo-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"bare": Sample(), "nemo": Sample()}
    try:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}…", file=sys.stderr)
            measure_pair(args.idle_s, workdir, results)
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
    bare, nemo = results["bare"], results["nemo"]
    rows = [
        ("time to first frame, layout drawn (s)", bare.first_paint_s, nemo.first_paint_s, "{:.3f}"),
        ("time to first full frame (s)", bare.first_frame_s, nemo.first_frame_s, "{:.3f}"),
        (f"RSS after {RSS_AT_S:.0f} s (MB)", bare.rss_mb, nemo.rss_mb, "{:.1f}"),
        (
            f"idle CPU over {args.idle_s:.0f} s (% of a core)",
            bare.idle_cpu_pct,
            nemo.idle_cpu_pct,
            "{:.2f}",
        ),
    ]
    print(f"\ntmux {SIZE[0]}x{SIZE[1]}, {args.runs} runs each, medians\n")
    print("| measure | bare Textual app | nemo-tui dashboard | ratio |")
    print("|---|---:|---:|---:|")
    for name, base, ours, fmt in rows:
        b, o = statistics.median(base), statistics.median(ours)
        print(f"| {name} | {fmt.format(b)} | {fmt.format(o)} | {o / b:.2f}x |")
    stream = asyncio.run(stream_bench())
    print(
        f"\nStream: {stream['tokens']} tokens at {STREAM_RATE} tok/s"
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
