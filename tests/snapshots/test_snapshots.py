"""What the dashboard looks like: the main screen at 80x24 and 120x40, stats, help, an error,
an analysis script and its run, and a lab of several hosts.

Every figure comes from a fixed memory profile and a scripted backend, so the pictures only
change when the screen does. Regenerate with `pytest tests/snapshots --snapshot-update` and look
at the report before committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from nemo_tui.backends.base import OutOfMemory
from nemo_tui.config import Config
from nemo_tui.core.analysis.run import AnalysisRun, RunLimits
from nemo_tui.core.memory.profile import PressureLevel
from nemo_tui.events import Done, HostsChanged
from nemo_tui.hosts.status import HostMemory, HostModel, HostStatus, local_status
from nemo_tui.ui.messages import EngineEventArrived
from nemo_tui.ui.screens.help import HelpScreen
from nemo_tui.ui.screens.stats import StatsScreen
from nemo_tui.ui.widgets.analysis_view import AnalysisView
from nemo_tui.ui.widgets.hosts_panel import HostsPanel
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.ui.widgets.query_pane import QueryPane, describe_done
from tests.fakes import Script
from tests.ui.support import (
    FIXED_TIME,
    GB,
    FixedSampler,
    Rig,
    answer_with,
    ask,
    make_rig,
    profile,
    settle,
    started,
    still_cursor,
    with_data,
)

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


SCRIPT = """import csv
import statistics
import sys

with open(sys.argv[1], newline="") as handle:
    rows = list(csv.DictReader(handle))
ages = [int(row["age"]) for row in rows]
print("patients:", len(rows))
print("mean age:", round(statistics.mean(ages), 1))
print("women:", sum(row["sex"] == "F" for row in rows))
"""

LIMITS = RunLimits(memory_mb=1228.8, cpu_s=60, wall_s=120, output_bytes=2**20, file_mb=512)


DONE = Done(
    query_id=1,
    model="phi3:mini",
    backend="ollama",
    text="",
    tokens_in=412,
    tokens_out=96,
    tokens_per_s=48.0,
    load_s=None,
    first_token_s=0.3,
    total_s=2.3,
    cache_hit=True,
    local=True,
    reduction_pct=0.0,
)
"""The stats line under the answer, with figures that do not vary from run to run."""


def script_run(
    rig: Rig, tmp_path: Path, run: AnalysisRun
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Ask for a script, then show `run` as its result (a real run's time and memory vary)."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(rig)(pilot)
        await with_data(pilot, tmp_path)
        pane = await ask(pilot, rig, answer_with(SCRIPT))
        assert pane.script is not None
        pane.query_one("#query-stats", Static).update(describe_done(DONE))
        pane.query_one(AnalysisView).end_run(run)
        await pilot.pause()
        still_cursor(rig.app)

    return run_before


def test_analysis_script_and_its_output_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    run = AnalysisRun(
        exit_code=0,
        stdout="patients: 3\nmean age: 38.0\nwomen: 2\n",
        stderr="",
        wall_s=0.08,
        peak_rss_mb=11.0,
        limit_hit=None,
        limits=LIMITS,
    )
    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=script_run(rig, tmp_path, run))


def test_analysis_script_that_failed_120x40(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    run = AnalysisRun(
        exit_code=1,
        stdout="patients: 3\n",
        stderr=(
            "Traceback (most recent call last):\n"
            '  File "analysis.py", line 7, in <module>\n'
            '    ages = [int(row["age"]) for row in rows]\n'
            "KeyError: 'age'\n"
        ),
        wall_s=0.07,
        peak_rss_mb=10.0,
        limit_hit=None,
        limits=LIMITS,
    )
    assert snap_compare(rig.app, terminal_size=(120, 40), run_before=script_run(rig, tmp_path, run))


def lab_statuses() -> tuple[HostStatus, ...]:
    """Four hosts with fixed figures: this machine (the rig's 16 GB, 11 GB free), gpu-box read
    through its node_exporter, pi whose memory only its Ollama reports, and nas, down."""
    local = local_status(
        Config(),
        profile(16, 11, gpu_gb=8),
        checked_at=FIXED_TIME,
        models=(HostModel("tinyllama", "ollama", 700.0, None, None),),
        models_mb=700.0,
        server_sources=("ollama /api/ps",),
        latency_ms=3.0,
    )
    gpu_box = HostStatus(
        name="gpu-box",
        local=False,
        up=True,
        reason=None,
        memory=HostMemory(
            ram_source="node_exporter",
            server_sources=("ollama /api/ps",),
            total_mb=32 * GB,
            available_mb=20 * GB,
            used_mb=12 * GB,
            percent=37.5,
            models_mb=2867.0,
        ),
        pressure=PressureLevel.NORMAL,
        models=(HostModel("phi3:mini", "ollama", 2867.0, None, None),),
        latency_ms=12.0,
        cache_limit=0.8,
        checked_at=FIXED_TIME,
    )
    pi = HostStatus(
        name="pi",
        local=False,
        up=True,
        reason=None,
        memory=HostMemory(ram_source=None, server_sources=("ollama /api/ps",), models_mb=637.0),
        pressure=None,
        models=(HostModel("tinyllama", "ollama", 637.0, None, None),),
        latency_ms=41.0,
        cache_limit=0.8,
        checked_at=FIXED_TIME,
    )
    nas = HostStatus(
        name="nas",
        local=False,
        up=False,
        reason="connection refused at http://10.0.0.7:11434/api/ps",
        memory=None,
        pressure=None,
        models=(),
        latency_ms=None,
        cache_limit=0.8,
        checked_at=FIXED_TIME,
        retry_at=FIXED_TIME + 30,
    )
    return (local, gpu_box, pi, nas)


ROUTED = replace(DONE, backend="ollama@gpu-box", host="gpu-box")
"""An answer from gpu-box, with figures that do not vary from run to run."""


def in_a_lab(rig: Rig) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """The hosts as the engine would report them (fixed figures: real latencies vary), then an
    answer from gpu-box under them."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(rig)(pilot)
        screen = rig.app.screen
        panel = screen.query_one(HostsPanel)
        panel.clock = lambda: FIXED_TIME
        screen.post_message(EngineEventArrived(HostsChanged(lab_statuses())))
        await settle(pilot, lambda: len(panel.statuses) == 4)
        rig.backend.script = Script(tokens=["The page cache holds memory-mapped weights."])
        pane = screen.query_one(QueryPane)
        await pilot.press(*"Where do mmapped weights live?")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        # The scripted backend answers on this machine; the footer shows gpu-box's answer.
        pane.query_one("#query-stats", Static).update(describe_done(ROUTED, hosts=True))
        await pilot.pause()
        still_cursor(rig.app)

    return run_before


def test_hosts_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    assert snap_compare(rig.app, terminal_size=(80, 24), run_before=in_a_lab(rig))


def test_hosts_120x40(snap_compare: SnapCompare, tmp_path: Path) -> None:
    rig = rig_for(tmp_path)
    assert snap_compare(rig.app, terminal_size=(120, 40), run_before=in_a_lab(rig))
