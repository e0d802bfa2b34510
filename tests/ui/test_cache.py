"""Preload, unload and clear go through the engine, and their outcome is explained."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from nemo_tui.backends.base import GenerationOptions, LoadedModel
from nemo_tui.backends.openai_compat import OpenAICompatBackend
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.memory_panel import MemoryFigures
from nemo_tui.ui.widgets.query_pane import QueryPane
from tests.backends.support import MockServer
from tests.fakes import ScriptedBackend
from tests.ui.support import FixedSampler, make_rig, profile, settle, started


async def test_preload_unload_and_clear_call_the_engine(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        table = rig.app.screen.query_one(CachedModelsPanel)
        recommended = rig.engine.recommend_now().model
        await pilot.press("f4")
        await settle(pilot, lambda: table.selected == recommended)
        assert ("preload", recommended) in rig.backend.calls
        assert any(note.startswith("Cache: ") for note in rig.notes)

        await pilot.press("f8")
        await settle(pilot, lambda: table.selected is None)
        assert ("unload", recommended) in rig.backend.calls

        rig.app.screen.query_one("QueryPane").choose_model("tinyllama")  # type: ignore[attr-defined]
        await pilot.press("f4")
        await settle(pilot, lambda: table.selected == "tinyllama")
        await pilot.press("f9")
        await settle(pilot, lambda: not table.models)
        assert rig.backend.calls.count(("unload", "tinyllama")) == 1
        assert any("Unloaded tinyllama" in note for note in rig.notes)


async def test_unload_with_nothing_loaded_says_so(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("f8")
        await settle(pilot, lambda: any("No model is loaded" in n for n in rig.notes))
        assert not [call for call in rig.backend.calls if call[0] == "unload"]


async def test_a_preload_that_does_not_fit_is_refused_with_the_reason(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(4, 0.5)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        rig.app.screen.query_one("QueryPane").choose_model("phi3:mini")  # type: ignore[attr-defined]
        await pilot.press("f4")
        await settle(pilot, lambda: any(n.startswith("Cache: ") for n in rig.notes))
        message = next(n for n in rig.notes if n.startswith("Cache: "))
        assert "phi3:mini" in message
        assert ("preload", "phi3:mini") not in rig.backend.calls


async def test_an_eviction_during_a_query_is_explained(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, config_text="optimization:\n  enable_model_caching: false\n")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one("QueryPane")
        await pilot.press(*"hello")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: any(n.startswith("Cache: Unloaded") for n in rig.notes))
        assert not pane.running  # type: ignore[attr-defined]
        assert not rig.app.screen.query_one(CachedModelsPanel).models


class BrokenPreloadBackend(ScriptedBackend):
    """A server whose preload fails in a way no error class foresaw."""

    async def preload(self, model: str, options: GenerationOptions) -> None:
        raise RuntimeError("the disk vanished")


async def test_an_unexpected_failure_in_a_cache_action_is_shown_and_the_app_survives(
    tmp_path: Path,
) -> None:
    backend = BrokenPreloadBackend(name="ollama", models=("tinyllama", "phi3:mini"))
    rig = make_rig(tmp_path, backend=backend)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("f4")
        await settle(pilot, lambda: any("the disk vanished" in n for n in rig.notes))
        note = next(n for n in rig.notes if "the disk vanished" in n)
        assert note.startswith("Cache action failed: RuntimeError")
        assert rig.app.is_running


async def test_the_cursor_picks_which_model_f8_unloads(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        table = rig.app.screen.query_one(CachedModelsPanel)
        pane = rig.app.screen.query_one(QueryPane)
        for model in ("phi3:mini", "tinyllama"):
            pane.choose_model(model)
            await pilot.press("f4")
            await settle(pilot, lambda model=model: ("preload", model) in rig.backend.calls)
        await settle(pilot, lambda: len(table.models) == 2)
        shown = str(table.render())
        assert shown.splitlines()[0].split() == [
            "Model",
            "Where",
            "Size",
            "VRAM",
            "Ctx",
            "Expires",
            "Hits",
        ]
        assert "phi3:mini" in shown and "tinyllama" in shown
        table.focus()
        await pilot.press("home")
        assert table.selected == "phi3:mini"
        await pilot.press("down")
        assert table.selected == "tinyllama"
        await pilot.press("down")  # stays on the last row
        assert table.selected == "tinyllama"
        await pilot.press("f8")
        await settle(pilot, lambda: ("unload", "tinyllama") in rig.backend.calls)
        await settle(pilot, lambda: [m.name for m in table.models] == ["phi3:mini"])
        assert ("unload", "phi3:mini") not in rig.backend.calls


VLLM_MODELS = {
    "object": "list",
    "data": [{"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "max_model_len": 32768}],
}
"""vLLM's model list: the one model it serves, and nothing about its size."""


async def test_a_loaded_model_whose_server_reports_no_size_shows_unknown_not_0_mb(
    tmp_path: Path,
) -> None:
    server = MockServer({("GET", "/health"): (200, {}), ("GET", "/v1/models"): (200, VLLM_MODELS)})
    vllm = OpenAICompatBackend("http://127.0.0.1:8000/v1", transport=server.transport())
    rig = make_rig(tmp_path, backend=vllm)  # type: ignore[arg-type]
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        table = rig.app.screen.query_one(CachedModelsPanel)
        await settle(pilot, lambda: bool(table.models))
        header, row = str(table.render()).splitlines()[:2]
        await pilot.press("f5")  # the gauges take the loaded models at the next sample
        figures = rig.app.screen.query_one(MemoryFigures)
        await settle(pilot, lambda: "1 model" in figures.readings["models"].figures)
        gauge = figures.readings["models"]
        parts = figures.parts.plain
    size = row[header.index("Size") :].split()[0]
    assert row.startswith("Qwen/Qwen2.5-7B-Instruct")
    assert size == "unknown"
    # Its memory is not in the models' figure, and the figure does not pass for all of it.
    assert (gauge.label, gauge.figures) == ("Models (openai)", "0 MB + 1 unknown, 1 model")
    assert "models 0 MB + 1 unknown (openai)" in parts


class ExpiringBackend(ScriptedBackend):
    """Reports each loaded model with the time its server will let it go: `keep_s` after it
    was first asked."""

    def __init__(self, keep_s: float) -> None:
        super().__init__(name="ollama", models=("tinyllama", "phi3:mini"))
        self.keep_s = keep_s
        self.expires_at: datetime | None = None

    async def list_loaded(self) -> list[LoadedModel]:
        if self.expires_at is None:
            self.expires_at = datetime.fromtimestamp(time.time() + self.keep_s, UTC)
        return [replace(m, expires_at=self.expires_at) for m in await super().list_loaded()]


async def test_a_model_leaves_the_panel_once_its_server_lets_it_expire(tmp_path: Path) -> None:
    backend = ExpiringBackend(keep_s=2.0)
    backend.loaded["tinyllama"] = 2048  # loaded before the dashboard started
    rig = make_rig(tmp_path, backend=backend, config_text="monitor:\n  gauge_interval_s: 0.1\n")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        table = rig.app.screen.query_one(CachedModelsPanel)
        await settle(pilot, lambda: [m.name for m in table.models] == ["tinyllama"])
        await settle(pilot, lambda: not table.models, rounds=500)
        assert "no model loaded" in str(table.render())
