"""What the dashboard tests share: a machine whose memory a test sets, and the app around it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import TextArea

from nemo_tui.backends.base import Backend
from nemo_tui.config import Config, parse_config
from nemo_tui.core.memory.profile import GpuMemory, MemoryProfile
from nemo_tui.engine import Engine
from nemo_tui.ui.app import NemoApp, create_app
from nemo_tui.ui.widgets.memory_panel import MemoryFigures
from nemo_tui.ui.widgets.query_pane import QueryPane
from tests.fakes import Script, ScriptedBackend

GB = 1024.0
CSV = "age,sex\n34,F\n51,M\n29,F\n"
"""A data file small enough for a test script to read in a blink."""
FIXED_TIME = 1_700_000_000.0
"""Every sample carries this time stamp, so plots and expiry times never move in snapshots."""


def profile(
    total_gb: float = 16.0,
    available_gb: float = 12.0,
    *,
    simulated: bool = False,
    gpu_gb: float | None = None,
) -> MemoryProfile:
    """A complete, fixed memory profile (no measured RSS, unlike SimulatedSampler)."""
    total = total_gb * GB
    available = available_gb * GB
    gpus = (GpuMemory(0, "Test GPU", gpu_gb * GB, gpu_gb * GB / 4),) if gpu_gb else ()
    return MemoryProfile(
        total_mb=total,
        available_mb=available,
        used_mb=total - available,
        percent=(total - available) / total * 100,
        swap_total_mb=2 * GB,
        swap_used_mb=256.0,
        process_rss_mb=80.0,
        page_cache_mb=3 * GB,
        psi_some_avg10=0.5,
        psi_full_avg10=0.0,
        cgroup_limit_mb=None,
        cgroup_used_mb=None,
        host_total_mb=total,
        host_available_mb=available,
        gpus=gpus,
        simulated=simulated,
        timestamp=FIXED_TIME,
    )


class FixedSampler:
    """A machine whose memory stays put until a test changes it."""

    def __init__(self, start: MemoryProfile | None = None) -> None:
        self.profile = start or profile()

    def sample(self) -> MemoryProfile:
        """The current profile."""
        return self.profile

    def set_available(self, available_gb: float) -> None:
        """Change how much memory is free."""
        self.profile = replace(self.profile.with_available(available_gb * GB))


@dataclass
class Rig:
    """One dashboard under test and the fakes around it."""

    app: NemoApp
    engine: Engine
    backend: ScriptedBackend
    sampler: FixedSampler
    config_path: Path
    notes: list[str]
    """Every notification shown, as `title: message`."""


def make_rig(
    tmp_path: Path,
    *,
    config: Config | None = None,
    sampler: FixedSampler | None = None,
    backend: ScriptedBackend | None = None,
    config_text: str | None = None,
    theme: str | None = None,
    theme_dirs: list[Path] | None = None,
    gate: threading.Event | None = None,
    backends: Sequence[Backend] | None = None,
) -> Rig:
    """Build the real app around a scripted Ollama-like backend and a fixed machine.

    With `backends`, the engine uses those instead (the scripted one is then left idle). With
    `gate`, the app is given the sampler and an engine factory (as `nemo-tui` does) that
    hands the engine over only once the gate is set, so a test can use the dashboard before its
    engine exists.
    """
    backend = backend or ScriptedBackend(
        name="ollama", models=("tinyllama", "phi3:mini"), sizes_mb={"tinyllama": 700.0}
    )
    sampler = sampler or FixedSampler()
    config_path = tmp_path / "config.yaml"
    if config_text is not None:
        config_path.write_text(config_text, encoding="utf-8")
        config = config or parse_config(config_text, source=str(config_path))
    config = config or Config()
    engine = Engine(
        config,
        sampler=sampler,
        backends=list(backends) if backends is not None else [backend],
        monitor=False,
    )
    source: Engine | Callable[[], Engine] = engine
    first_sampler = None
    if gate is not None:
        first_sampler = sampler
        opened = gate

        def build_engine() -> Engine:
            opened.wait(timeout=60)
            return engine

        source = build_engine
    app = create_app(
        config,
        source,
        sampler=first_sampler,
        config_path=config_path,
        theme=theme,
        theme_dirs=theme_dirs,
    )
    notes: list[str] = []
    original = app.notify

    def record(message: str, *, title: str = "", **kwargs: object) -> None:
        notes.append(f"{title}: {message}")
        original(message, title=title, **kwargs)  # type: ignore[arg-type]

    app.notify = record  # type: ignore[method-assign]
    return Rig(app, engine, backend, sampler, config_path, notes)


async def settle(pilot: Pilot[None], until: Callable[[], bool], *, rounds: int = 200) -> None:
    """Let workers and messages run until `until()` holds (bounded; fails loudly if never).

    Not a timing assertion: each round yields to the event loop and waits for the screen to
    be idle; the bound only stops a broken test from hanging.
    """
    for _ in range(rounds):
        if until():
            return
        await pilot.pause(0.01)
    raise AssertionError("the dashboard never reached the expected state")


async def started(pilot: Pilot[None]) -> None:
    """Wait until the engine answered its first probe and the first sample is drawn."""
    app = pilot.app
    await settle(pilot, lambda: "backends:" in str(app.screen.sub_title))
    await settle(pilot, lambda: "ram" in app.screen.query_one(MemoryFigures).readings)


def still_cursor(app: NemoApp) -> None:
    """Stop the question box's cursor blinking (snapshots must not depend on the blink phase)."""
    for area in app.screen.query(TextArea):
        area.cursor_blink = False


def answer_with(code: str) -> list[str]:
    """A model's answer holding `code` in a python block, streamed in pieces."""
    text = f"Here is a script:\n\n```python\n{code}```\n\nIt prints its results."
    return [text[start : start + 40] for start in range(0, len(text), 40)]


async def with_data(pilot: Pilot[None], tmp_path: Path) -> Path:
    """Attach a small CSV (`cohort.csv`) and turn analysis mode on (ctrl+n)."""
    data = tmp_path / "cohort.csv"
    data.write_text(CSV, encoding="utf-8")
    pane = pilot.app.screen.query_one(QueryPane)
    pane.attach(data)
    await pilot.press("ctrl+n")
    assert pane.analysis_mode
    return data


async def ask(pilot: Pilot[None], rig: Rig, tokens: list[str]) -> QueryPane:
    """Ask about the data and wait until the answer is in (and any script taken out of it)."""
    rig.backend.script = Script(tokens=tokens)
    pane = rig.app.screen.query_one(QueryPane)
    await pilot.press(*"Describe the patients")
    await pilot.press("ctrl+s")
    await settle(pilot, lambda: not pane.running and pane.answer != "")
    return pane
