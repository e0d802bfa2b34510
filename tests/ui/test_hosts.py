"""The dashboard in a lab of several hosts: the hosts panel, the host that answered, pinning a
host, and the cache keys on other hosts.

The hosts are real servers on loopback: this machine's Ollama and gpu-box's (fake Ollamas),
gpu-box's node_exporter page of fixed figures, and nas, whose port nobody listens on. This
machine's memory is a fixed profile, so each test can make it short or roomy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from nemo_tui.backends.discovery import build_backends
from nemo_tui.config import parse_config
from nemo_tui.ui.screens.model_menu import ModelMenu
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.hosts_panel import HostsPanel
from nemo_tui.ui.widgets.memory_panel import MemoryFigures
from nemo_tui.ui.widgets.model_picker import HostPicker
from nemo_tui.ui.widgets.query_pane import QueryPane
from tests.fakes import FakeOllama
from tests.hosts.servers import GIB, FixtureServer, closed_url, node_page, ollama_holding
from tests.integration.test_routing_hosts import BIOMISTRAL, HARD, PHI3, TINYLLAMA
from tests.ui.support import FixedSampler, Rig, make_rig, profile, settle, started


@dataclass
class Lab:
    """This machine's Ollama, gpu-box (an Ollama holding phi3:mini, and a node_exporter page),
    and nas, which is down."""

    local: FakeOllama
    gpu: FakeOllama
    pages: FixtureServer
    nas_url: str

    def set_gpu_box_memory(self, total_gb: float, available_gb: float) -> None:
        self.pages.serve(
            "/gpu-box/metrics", node_page(total=total_gb * GIB, available=available_gb * GIB)
        )

    def config_text(self) -> str:
        return f"""
backends:
  ollama:
    url: {self.local.url}
  embedded:
    enabled: false
  gemini:
    enabled: false
hosts:
  - name: gpu-box
    ollama_url: {self.gpu.url}
    node_exporter_url: {self.pages.url}/gpu-box/metrics
  - name: nas
    ollama_url: {self.nas_url}
"""

    def rig(self, tmp_path: Path, *, total_gb: float, available_gb: float) -> Rig:
        """The dashboard on a machine of this size, with the lab's hosts."""
        text = self.config_text()
        return make_rig(
            tmp_path,
            config_text=text,
            sampler=FixedSampler(profile(total_gb, available_gb)),
            backends=build_backends(parse_config(text)),
        )


@pytest.fixture
def lab() -> Iterator[Lab]:
    pages = FixtureServer()
    gpu = ollama_holding(PHI3)
    gpu.models[BIOMISTRAL.name] = BIOMISTRAL
    try:
        with FakeOllama([TINYLLAMA, PHI3]) as local:
            lab = Lab(local, gpu, pages, closed_url())
            lab.set_gpu_box_memory(32, 20)
            yield lab
    finally:
        gpu.stop()
        pages.close()


def lines_of(panel: HostsPanel) -> list[str]:
    return panel.render().plain.splitlines()


async def hosts_shown(rig: Rig, pilot: Pilot[None]) -> HostsPanel:
    """Wait for the engine's start and the hosts' first answers on screen."""
    await started(pilot)
    panel = rig.app.screen.query_one(HostsPanel)
    await settle(pilot, lambda: len(panel.statuses) == 3)
    return panel


def stats_text(rig: Rig) -> str:
    return str(rig.app.screen.query_one("#query-stats", Static).render())


@pytest.mark.integration
async def test_the_panel_lists_each_host_with_its_memory_and_why_one_is_down(
    lab: Lab, tmp_path: Path
) -> None:
    rig = lab.rig(tmp_path, total_gb=16, available_gb=12)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        panel = await hosts_shown(rig, pilot)
        assert panel.display and not panel.folded
        assert panel.border_title == "Hosts (2 of 3 up)"
        local, gpu_box, nas = lines_of(panel)
        # The models column gets what the latency leaves: a host slower than 99 ms widens it.
        assert re.match(r"local +[█░]+ +12\.0 GB free +normal +\d+ ms +none lo", local)
        assert re.match(r"gpu-box +[█░]+ +20\.0 GB free +normal +\d+ ms +phi3:mini", gpu_box)
        assert re.match(r"nas +down +retry in \d+ s · connection refused at ", nas)

        # The line clips the reason; enter on the host shows it whole.
        panel.focus()
        await pilot.press("end", "enter")
        reason = f"Hosts: nas is down: connection refused at {lab.nas_url}/api/ps; retry in"
        await settle(pilot, lambda: any(note.startswith(reason) for note in rig.notes))

        # gpu-box's phi3:mini is listed with its host, and is not in this machine's gauges.
        cached = rig.app.screen.query_one(CachedModelsPanel)
        assert [(m.name, m.backend) for m in cached.models] == [("phi3:mini", "ollama@gpu-box")]
        assert cached.border_subtitle == "f8 unload · f9 clear local"
        models = rig.app.screen.query_one(MemoryFigures).readings["models"]
        assert models.figures == "0 MB, 0 models"


@pytest.mark.integration
async def test_f5_asks_the_hosts_again(lab: Lab, tmp_path: Path) -> None:
    rig = lab.rig(tmp_path, total_gb=16, available_gb=12)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        panel = await hosts_shown(rig, pilot)
        lab.set_gpu_box_memory(32, 9.1)
        await pilot.press("f5")
        await settle(pilot, lambda: "9.1 GB free" in lines_of(panel)[1])


@pytest.mark.integration
async def test_a_query_routed_to_another_host_names_it_in_the_answer_footer(
    lab: Lab, tmp_path: Path
) -> None:
    rig = lab.rig(tmp_path, total_gb=4, available_gb=1.2)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await hosts_shown(rig, pilot)
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press(*HARD)
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        assert stats_text(rig).startswith("biomistral:7b on gpu-box (ollama@gpu-box) · ")
        assert lab.gpu.requests_to("/api/chat") and not lab.local.requests_to("/api/chat")


@pytest.mark.integration
async def test_enter_on_a_host_pins_the_next_queries_to_it(lab: Lab, tmp_path: Path) -> None:
    # Roomy enough that routing would keep a small question on this machine.
    rig = lab.rig(tmp_path, total_gb=16, available_gb=12)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        panel = await hosts_shown(rig, pilot)
        pane = rig.app.screen.query_one(QueryPane)
        panel.focus()
        await pilot.press("home", "down", "enter")
        assert pane.host_override == "gpu-box"
        assert any(note.startswith("Hosts: The next queries go to gpu-box") for note in rig.notes)
        assert "host: gpu-box" in str(rig.app.screen.query_one(HostPicker).render())

        rig.app.screen.query_one("#query-input").focus()
        await pilot.press(*"hi")
        await settle(pilot, lambda: "pinned" in str(pane.query_one("#query-plan").render()))
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        assert " on gpu-box (ollama@gpu-box) · " in stats_text(rig)
        assert lab.gpu.requests_to("/api/chat") and not lab.local.requests_to("/api/chat")

        panel.focus()
        await pilot.press("enter")  # on the pinned host: routing picks again
        assert pane.host_override is None
        assert any(line.where == "hosts panel" for line in rig.app.key_help())


@pytest.mark.integration
async def test_the_host_picker_pins_a_host_from_the_keyboard(lab: Lab, tmp_path: Path) -> None:
    rig = lab.rig(tmp_path, total_gb=16, available_gb=12)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await hosts_shown(rig, pilot)
        picker = rig.app.screen.query_one(HostPicker)
        assert picker.display and picker.options == ["local", "gpu-box", "nas"]
        picker.focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(rig.app.screen, ModelMenu))
        await pilot.press("down", "down", "enter")  # auto, local, gpu-box
        await settle(pilot, lambda: picker.value == "gpu-box")
        assert rig.app.screen.query_one(QueryPane).current_query() is None  # nothing typed
        rig.app.screen.query_one("#query-input").focus()
        await pilot.press(*"hi")
        query = rig.app.screen.query_one(QueryPane).current_query()
        assert query is not None and query.host == "gpu-box"


@pytest.mark.integration
async def test_at_80x24_the_panel_is_one_line_that_expands_on_focus(
    lab: Lab, tmp_path: Path
) -> None:
    rig = lab.rig(tmp_path, total_gb=16, available_gb=12)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        panel = await hosts_shown(rig, pilot)
        await pilot.pause()
        assert panel.folded and panel.outer_size.height == 1
        assert lines_of(panel) == ["Hosts 2 of 3 up · gpu-box 20.0 GB free · nas down"]

        panel.focus()
        await settle(pilot, lambda: not panel.folded)
        await pilot.pause()
        assert panel.outer_size.height == 3 + 2  # a line per host, and the border
        side = rig.app.screen.query_one("#side")
        await settle(pilot, lambda: side.region.contains_region(panel.region))  # all of it
        assert [line.split()[0] for line in lines_of(panel)] == ["local", "gpu-box", "nas"]

        rig.app.screen.query_one("#query-input").focus()
        await settle(pilot, lambda: panel.folded)


@pytest.mark.integration
async def test_unload_acts_on_the_models_host_and_clear_on_this_machine_only(
    lab: Lab, tmp_path: Path
) -> None:
    rig = lab.rig(tmp_path, total_gb=16, available_gb=12)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await hosts_shown(rig, pilot)
        cached = rig.app.screen.query_one(CachedModelsPanel)
        assert cached.selected == "phi3:mini"

        await pilot.press("f9")
        await settle(
            pilot, lambda: any("Cleared local (this machine) only" in n for n in rig.notes)
        )
        assert "phi3:mini" in lab.gpu.loaded()

        await pilot.press("f8")
        await settle(pilot, lambda: not cached.models)
        assert "phi3:mini" not in lab.gpu.loaded()
        assert any(note.startswith("Cache: Unloaded phi3:mini") for note in rig.notes)


async def test_without_other_hosts_there_is_no_hosts_panel(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        screen = rig.app.screen
        assert not screen.query_one(HostsPanel).display
        assert not screen.query_one(HostPicker).display
        assert not any(line.where == "hosts panel" for line in rig.app.key_help())
        pane = screen.query_one(QueryPane)
        await pilot.press(*"hi")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        assert re.match(r"[\w:.-]+ \(ollama\) · ", stats_text(rig))
        assert not screen.query_one(HostsPanel).display
