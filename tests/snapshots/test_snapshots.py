"""What the dashboard looks like: the main screen at 80x24 and 120x40, stats, help, an error.

Every figure comes from a fixed memory profile and a scripted backend, so the pictures only
change when the screen does. Regenerate with `pytest tests/snapshots --snapshot-update` and look
at the report before committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from nemo_tui.backends.base import OutOfMemory
from nemo_tui.ui.screens.help import HelpScreen
from nemo_tui.ui.screens.stats import StatsScreen
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.ui.widgets.query_pane import QueryPane
from tests.fakes import Script
from tests.ui.support import FixedSampler, Rig, make_rig, profile, settle, started, still_cursor

SnapCompare = Callable[..., bool]


def rig_for(tmp_path: Path) -> Rig:
    """A 16 GB machine with 11 GB free and a GPU, served by a scripted Ollama."""
    return make_rig(tmp_path, sampler=FixedSampler(profile(16, 11, gpu_gb=8)))


def ready(rig: Rig) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await started(pilot)
        # A second sample (f5 takes one now) starts the history plot.
        await pilot.press("f5")
        history = rig.app.screen.query_one(MemoryHistory)
        await settle(pilot, lambda: len(history.history.samples) >= 2)
        await pilot.pause()
        still_cursor(rig.app)

    return run_before


def test_main_screen_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=ready(rig))


def test_main_screen_120x40(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    assert snap_compare(rig.app, terminal_size=(120, 40), run_before=ready(rig))


def test_stats_screen(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        await started(pilot)
        await pilot.press("f2")
        await settle(
            pilot,
            lambda: isinstance(rig.app.screen, StatsScreen) and bool(rig.app.screen.section_titles),
        )

    assert snap_compare(rig.app, terminal_size=(120, 40), run_before=run_before)


def test_help_screen(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        await started(pilot)
        await pilot.press("f1")
        await settle(pilot, lambda: isinstance(rig.app.screen, HelpScreen))

    assert snap_compare(rig.app, terminal_size=(120, 40), run_before=run_before)


def test_error_in_the_query_pane(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    rig.backend.script = Script(
        tokens=["The page cache holds ", "memory-mapped weights", " and"],
        error=OutOfMemory(
            "model runner has unexpectedly stopped",
            backend="ollama",
            fix="use a smaller context or model",
        ),
        error_after_tokens=2,
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        pane.choose_model("tinyllama")
        await pilot.press(*"Where do mmapped weights live?")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: pane.error_text != "")
        still_cursor(rig.app)

    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=run_before)
