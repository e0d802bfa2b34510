"""The memory panel follows the sampler: gauges, pressure level and its notification, sources."""

from __future__ import annotations

from pathlib import Path

from nemo_tui.ui.widgets.gauge import Gauge
from nemo_tui.ui.widgets.memory_panel import MemoryPanel
from tests.ui.support import FixedSampler, make_rig, profile, settle, started


async def test_gauges_follow_the_samples(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        ram = rig.app.screen.query_one("#gauge-ram", Gauge)
        assert ram.figures == "4.0 GB / 16.0 GB"
        assert ram.fraction == 0.25
        rig.sampler.set_available(6)
        await pilot.press("f5")
        await settle(pilot, lambda: ram.figures == "10.0 GB / 16.0 GB")
        assert ram.fraction == 10 / 16


async def test_pressure_change_is_announced_and_colours_the_gauge(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        ram = rig.app.screen.query_one("#gauge-ram", Gauge)
        assert ram.level == "ok"
        rig.sampler.set_available(3)  # 81 % used: above the 75 % threshold
        await pilot.press("f5")
        await settle(pilot, lambda: ram.level == "warn")
        assert any("Memory pressure is now elevated" in note for note in rig.notes)
        assert ram.has_class("-warn")
        pressure = str(rig.app.screen.query_one("#memory-pressure").render())
        assert "ELEVATED" in pressure
        rig.sampler.set_available(1)  # 94 %: critical
        await pilot.press("f5")
        await settle(pilot, lambda: ram.level == "crit")
        assert any("Memory pressure is now critical" in note for note in rig.notes)


async def test_the_panel_names_where_each_figure_comes_from(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12, gpu_gb=8)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(MemoryPanel)
        labels = [gauge.label for gauge in panel.query(Gauge)]
        assert labels[:2] == ["RAM (OS)", "Swap (OS)"]
        assert "GPU0 (NVML)" in labels
        parts = str(panel.query_one("#memory-parts").render())
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


async def test_resident_models_count_in_the_models_gauge(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        models = rig.app.screen.query_one("#gauge-models", Gauge)
        assert models.figures == "0 MB, 0 models"
        await pilot.press("f4")  # preload the recommended model
        await settle(pilot, lambda: "1 model" in models.figures)
        assert models.label == "Models (ollama)"
