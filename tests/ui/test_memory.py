"""The memory panel follows the sampler: gauges, pressure level and its notification, sources,
the history plot, and what each gauge tick writes to the terminal.

The tests look at the dashboard through `Terminal`: what a terminal that received the app's output
shows, and how many bytes reached it. The gauge clock is set to an hour, so a tick happens only
when a test takes one (`tick`, the same worker the clock starts): how many samples the panel has
seen never depends on how fast the machine runs the test.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from textual.color import Color
from textual.pilot import Pilot

from nemo_tui.core.memory.history import STEP_S
from nemo_tui.core.memory.profile import GpuMemory, MemoryProfile
from nemo_tui.ui.app import NemoApp
from nemo_tui.ui.screens.main import MainScreen
from nemo_tui.ui.widgets.history_plot import HistoryPlot
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from tests.ui.support import (
    FIXED_TIME,
    GB,
    FixedSampler,
    Rig,
    make_rig,
    profile,
    settle,
    started,
)
from tests.ui.support import still_cursor as freeze_cursor
from tests.ui.terminal import RGB, Terminal

SIZE = (120, 40)
PRESSURE_THRESHOLD = 0.6
CACHE_LIMIT = 0.7
CONFIG = f"""
monitor:
  gauge_interval_s: 3600
memory_thresholds:
  pressure_threshold: {PRESSURE_THRESHOLD}
  cache_limit: {CACHE_LIMIT}
"""
"""Gauges that tick only when a test says so, and shares unlike the defaults, so the legend can
only show them if it reads the config."""


class ClockedSampler(FixedSampler):
    """A machine whose memory stays put while its clock moves on when a test says so."""

    def __init__(self, start: MemoryProfile | None = None) -> None:
        super().__init__(start)
        self.now = FIXED_TIME

    def sample(self) -> MemoryProfile:
        """The current profile, stamped with the current time."""
        return replace(self.profile, timestamp=self.now)


def dashboard(
    tmp_path: Path, sampler: FixedSampler | None = None, gate: threading.Event | None = None
) -> tuple[Rig, Terminal]:
    """The dashboard around `sampler` (see `make_rig` for `gate`), with the gauge clock
    stopped, and its terminal."""
    rig = make_rig(tmp_path, sampler=sampler, config_text=CONFIG, gate=gate)
    return rig, Terminal.attach(rig.app, SIZE)


async def ready(pilot: Pilot[None]) -> None:
    """Started, first sample drawn, and the cursor held still (its blink is not under test)."""
    await started(pilot)
    freeze_cursor(cast(NemoApp, pilot.app))
    await pilot.pause()


async def tick(pilot: Pilot[None]) -> None:
    """One gauge tick: a sample taken and drawn, as the gauge clock takes one."""
    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    samples = screen.query_one(MemoryHistory).history.samples
    count = len(samples)
    await screen.sample_memory().wait()
    await settle(pilot, lambda: len(samples) > count)
    await pilot.pause()


async def second_tick(pilot: Pilot[None], terminal: Terminal) -> None:
    """The tick that brings the plot, until the plot is drawn and the screen is still again (a
    new plot is drawn once more when it has its theme)."""
    await tick(pilot)
    await settle(pilot, lambda: terminal.shows("100%"))
    for _ in range(100):
        terminal.clear_counts()
        await pilot.pause(0.02)
        if not terminal.bytes_written:
            return
    raise AssertionError("the screen never stopped changing")


def used_of(used_gb: float, total_gb: float) -> str:
    """A gauge's figures as a user reads them: used of total."""
    return f"{used_gb:.1f} GB / {total_gb:.1f} GB"


def bar_share(line: str) -> float:
    """How full the bar drawn on a gauge line is."""
    filled, empty = line.count("█"), line.count("░")
    return filled / (filled + empty)


async def test_the_gauges_show_a_change_of_memory_at_the_next_tick(tmp_path: Path) -> None:
    rig, terminal = dashboard(tmp_path, FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        ram = terminal.lines()[terminal.row_of(used_of(4, 16))]
        assert bar_share(ram) == pytest.approx(4 / 16, abs=0.03)
        assert "12.0 GB free" in terminal.lines()[terminal.row_of("free")]
        rig.sampler.set_available(6)
        await tick(pilot)
        ram = terminal.lines()[terminal.row_of(used_of(10, 16))]
        assert bar_share(ram) == pytest.approx(10 / 16, abs=0.03)
        assert "6.0 GB free" in terminal.lines()[terminal.row_of("free")]


async def test_idle_ticks_write_nothing_to_the_terminal(tmp_path: Path) -> None:
    rig, terminal = dashboard(tmp_path, ClockedSampler(profile(16, 12)))
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await second_tick(pilot, terminal)
        terminal.clear_counts()
        for _ in range(5):
            await tick(pilot)
        assert terminal.bytes_written == 0, terminal.report()


async def test_a_changed_figure_rewrites_only_its_own_line(tmp_path: Path) -> None:
    rig, terminal = dashboard(tmp_path, FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await second_tick(pilot, terminal)
        terminal.clear_counts()
        rig.sampler.profile = replace(rig.sampler.profile, swap_used_mb=1 * GB)
        await tick(pilot)
        swap = terminal.row_of("Swap")
        assert "1.0 GB / 2.0 GB" in terminal.lines()[swap]
        assert {row for row, _ in terminal.rewritten} == {swap}, terminal.report()


async def test_the_plot_moves_on_once_per_step_not_per_tick(tmp_path: Path) -> None:
    sampler = ClockedSampler(profile(16, 12))
    rig, terminal = dashboard(tmp_path, sampler)
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        step_start = (FIXED_TIME // STEP_S + 1) * STEP_S
        sampler.now = step_start
        await second_tick(pilot, terminal)  # the plot's line starts in the newest step
        plot = rig.app.screen.query_one(HistoryPlot)
        rows = range(plot.region.y, plot.region.bottom)
        ticks_per_step = 5
        writes_per_step = []
        for step in range(1, 4):
            writes = 0
            for index in range(ticks_per_step):
                sampler.now = step_start + step * STEP_S + index * STEP_S / ticks_per_step
                terminal.clear_counts()
                await tick(pilot)
                writes += any(row in rows for row, _ in terminal.rewritten)
            writes_per_step.append(writes)
        # Steady memory: the line only grows to the left, once at the start of each step.
        assert writes_per_step == [1, 1, 1]


async def test_pressure_change_is_announced_and_colours_the_gauge(tmp_path: Path) -> None:
    rig, terminal = dashboard(tmp_path, FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        variables = rig.app.theme_variables
        ok, warn, crit = (
            Color.parse(variables[f"gauge-{level}"]).rgb for level in ("ok", "warn", "crit")
        )

        def bar_colours() -> set[RGB | None]:
            row = terminal.row_of("RAM")
            line = terminal.lines()[row]
            return terminal.colours(row, line.index("█"), line.rindex("█") + 1)

        assert bar_colours() == {ok}
        rig.sampler.set_available(5)  # 69 % used: above the 60 % threshold
        await tick(pilot)
        assert any("Memory pressure is now elevated" in note for note in rig.notes)
        assert bar_colours() == {warn}
        pressure = terminal.row_of("ELEVATED")
        start = terminal.lines()[pressure].index("ELEVATED")
        assert terminal.colours(pressure, start, start + len("ELEVATED")) == {warn}
        rig.sampler.set_available(1)  # 94 %: critical
        await tick(pilot)
        assert any("Memory pressure is now critical" in note for note in rig.notes)
        assert bar_colours() == {crit}


def sources(machine: MemoryProfile) -> dict[str, str]:
    """Where each gauge's figures come from, as the user must be told: a cgroup limit sets RAM
    when one applies; simulated figures say so; otherwise the OS, and NVML for a GPU."""
    host = "simulated" if machine.simulated else "OS"
    named = {"RAM": "cgroup" if machine.cgroup_limit_mb is not None else host, "Swap": host}
    for gpu in machine.gpus:
        named[f"GPU{gpu.index}"] = "simulated" if gpu.simulated else "NVML"
    return named


def with_simulated_gpu(start: MemoryProfile) -> MemoryProfile:
    """`start` with a 6 GB simulated GPU, as `--simulate-gpu 6GB` gives."""
    return replace(start, gpus=(GpuMemory(0, "Simulated GPU", 6 * GB, 0.0, simulated=True),))


MACHINES = {
    "the OS and a GPU": profile(16, 12, gpu_gb=8),
    "a cgroup limit": replace(profile(8, 6), cgroup_limit_mb=8 * GB, cgroup_used_mb=2 * GB),
    "a simulated machine and GPU": with_simulated_gpu(profile(4, 3, simulated=True)),
    "a simulated GPU on a real machine": with_simulated_gpu(profile(16, 12)),
}


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
async def test_each_gauge_names_where_its_figures_come_from(
    tmp_path: Path, machine: MemoryProfile
) -> None:
    rig, terminal = dashboard(tmp_path, FixedSampler(machine))
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = "\n".join(terminal.lines())
        for gauge, source in sources(machine).items():
            assert f"{gauge} ({source})" in terminal.lines()[terminal.row_of(gauge)]
        host = "simulated" if machine.simulated else "OS"
        assert f"page cache {machine.page_cache_mb / GB:.1f} GB ({host})" in screen
        assert f"nemo-tui {machine.process_rss_mb:.0f} MB (RSS)" in screen
        if machine.any_simulated:
            assert "SIMULATED" in terminal.lines()[terminal.row_of("Memory")]


async def test_the_gauges_of_a_simulated_machine_fill_up_as_models_load(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    # Given the sampler, as `nemo-tui` runs it: once the engine exists the gauges read it.
    machine = profile(4, 3, simulated=True)
    rig, terminal = dashboard(tmp_path, FixedSampler(machine), gate=gate)
    model_mb = rig.backend.sizes_mb["tinyllama"]
    assert model_mb is not None
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert terminal.shows(used_of(1, 4))
        await pilot.press("f4")  # preload the recommended model, tinyllama
        await settle(pilot, lambda: terminal.shows("1 model"))
        await tick(pilot)
        assert terminal.shows(used_of(1 + model_mb / GB, 4))


async def test_resident_models_count_in_the_models_gauge(tmp_path: Path) -> None:
    rig, terminal = dashboard(tmp_path)
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "0 MB, 0 models" in terminal.lines()[terminal.row_of("Models")]
        await pilot.press("f4")  # preload the recommended model
        await settle(pilot, lambda: "1 model" in terminal.lines()[terminal.row_of("Models")])
        assert f"Models ({rig.backend.name})" in terminal.lines()[terminal.row_of("Models")]


async def test_the_history_plot_starts_with_the_second_sample(tmp_path: Path) -> None:
    rig, terminal = dashboard(tmp_path, ClockedSampler(profile(16, 12)))
    async with rig.app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        history = rig.app.screen.query_one(MemoryHistory)
        legend = terminal.lines()[terminal.row_of("RAM used")]
        assert f"pressure {PRESSURE_THRESHOLD:.0%}" in legend
        assert f"cache limit {CACHE_LIMIT:.0%}" in legend
        below = terminal.lines()[history.region.y + 1 : history.region.bottom]
        assert "collecting" in "\n".join(below)
        assert not any("now" in line or "100%" in line for line in below)
        await tick(pilot)
        below = terminal.lines()[history.region.y + 1 : history.region.bottom]
        assert "collecting" not in "\n".join(below)
        assert any("100%" in line for line in below)
        assert any("now" in line for line in below)
