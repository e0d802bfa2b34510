"""The memory panel follows the sampler: gauges, pressure level and its notification, sources."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from nemo_tui.core.memory import GpuMemory, MemoryProfile
from nemo_tui.ui.widgets.history_plot import HistoryPlot
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.ui.widgets.memory_panel import MemoryFigures, MemoryPanel
from tests.ui.support import GB, FixedSampler, make_rig, profile, settle, started


async def test_gauges_follow_the_samples(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        figures = rig.app.screen.query_one(MemoryFigures)
        assert figures.readings["ram"].figures == "4.0 GB / 16.0 GB"
        assert figures.readings["ram"].fraction == 0.25
        assert "4.0 GB / 16.0 GB" in str(figures.render())
        rig.sampler.set_available(6)
        await pilot.press("f5")
        await settle(pilot, lambda: figures.readings["ram"].figures == "10.0 GB / 16.0 GB")
        assert figures.readings["ram"].fraction == 10 / 16
        assert "10.0 GB / 16.0 GB" in str(figures.render())


async def test_pressure_change_is_announced_and_colours_the_gauge(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        figures = rig.app.screen.query_one(MemoryFigures)
        assert figures.readings["ram"].level == "ok"
        rig.sampler.set_available(3)  # 81 % used: above the 75 % threshold
        await pilot.press("f5")
        await settle(pilot, lambda: figures.readings["ram"].level == "warn")
        assert any("Memory pressure is now elevated" in note for note in rig.notes)
        assert "ELEVATED" in figures.pressure.plain
        assert "bold $gauge-warn" in {str(span.style) for span in figures.pressure.spans}
        warn_bar = figures.get_visual_style("gauge--warn")
        assert any(span.style == warn_bar for span in figures.render().spans)
        rig.sampler.set_available(1)  # 94 %: critical
        await pilot.press("f5")
        await settle(pilot, lambda: figures.readings["ram"].level == "crit")
        assert any("Memory pressure is now critical" in note for note in rig.notes)


async def test_the_panel_names_where_each_figure_comes_from(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12, gpu_gb=8)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        figures = rig.app.screen.query_one(MemoryFigures)
        labels = [reading.label for reading in figures.readings.values()]
        assert labels[:2] == ["RAM (OS)", "Swap (OS)"]
        assert "GPU0 (NVML)" in labels
        assert "GPU0 (NVML)" in str(figures.render())
        parts = figures.parts.plain
        assert "page cache 3.0 GB (OS)" in parts
        assert "nemo-tui 80 MB (RSS)" in parts
        assert "(server)" in parts


async def test_a_simulated_machine_is_marked_on_screen(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(4, 3, simulated=True)))
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(MemoryPanel)
        assert "SIMULATED" in str(panel.border_title)
        assert panel.has_class("-simulated")


def with_simulated_gpu(start: MemoryProfile) -> MemoryProfile:
    """`start` with a 6 GB simulated GPU, as `--simulate-gpu 6GB` gives."""
    return replace(start, gpus=(GpuMemory(0, "Simulated GPU", 6 * GB, 0.0, simulated=True),))


async def test_simulated_figures_are_labelled_simulated(tmp_path: Path) -> None:
    machine = with_simulated_gpu(profile(4, 3, simulated=True))
    rig = make_rig(tmp_path, sampler=FixedSampler(machine))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        figures = rig.app.screen.query_one(MemoryFigures)
        labels = [reading.label for reading in figures.readings.values()]
        drawn = str(figures.render())
    assert labels[:3] == ["RAM (simulated)", "Swap (simulated)", "GPU0 (simulated)"]
    assert "page cache 3.0 GB (simulated)" in figures.parts.plain
    assert "(OS)" not in drawn and "(NVML)" not in drawn


async def test_simulate_gpu_alone_labels_live_ram_as_the_os_s(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(with_simulated_gpu(profile(16, 12))))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(MemoryPanel)
        labels = [reading.label for reading in panel.figures.readings.values()]
        parts = panel.figures.parts.plain
    assert labels[:3] == ["RAM (OS)", "Swap (OS)", "GPU0 (simulated)"]
    assert "page cache 3.0 GB (OS)" in parts
    assert "SIMULATED GPU (--simulate-gpu)" in str(panel.border_title)
    assert panel.has_class("-simulated")


async def test_the_gauges_of_a_simulated_machine_fill_up_as_models_load(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    # Given the sampler, as `nemo-tui` runs it: once the engine exists the gauges read it.
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(4, 3, simulated=True)), gate=gate)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        figures = rig.app.screen.query_one(MemoryFigures)
        assert figures.readings["ram"].figures == "1.0 GB / 4.0 GB"
        await pilot.press("f4")  # preload the recommended model, tinyllama (700 MB)
        await settle(pilot, lambda: "1 model" in figures.readings["models"].figures)
        await pilot.press("f5")
        await settle(pilot, lambda: figures.readings["ram"].figures == "1.7 GB / 4.0 GB")


async def test_resident_models_count_in_the_models_gauge(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        figures = rig.app.screen.query_one(MemoryFigures)
        assert figures.readings["models"].figures == "0 MB, 0 models"
        await pilot.press("f4")  # preload the recommended model
        await settle(pilot, lambda: "1 model" in figures.readings["models"].figures)
        assert figures.readings["models"].label == "Models (ollama)"


async def test_the_history_plot_starts_with_the_second_sample(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        history = rig.app.screen.query_one(MemoryHistory)
        legend = str(history.render())
        assert "RAM used · ─ pressure 75% · ─ cache limit 80%" in legend
        if len(history.history.samples) < 2:
            assert "collecting memory samples" in legend
            assert not history.query(HistoryPlot)
        await pilot.press("f5")
        await settle(pilot, lambda: bool(history.query(HistoryPlot)))
        await pilot.pause()
        plot = str(history.query_one(HistoryPlot).render())
        assert "100%" in plot
        assert "now" in plot
        assert "collecting" not in str(history.render())
