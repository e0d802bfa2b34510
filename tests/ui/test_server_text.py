"""Model names, server messages and answers show on the dashboard exactly as written: brackets are
never read as markup, and no terminal control sequence reaches the screen."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Markdown, OptionList, Static

from nemo_tui.backends.base import BackendError
from nemo_tui.ui.app import NemoApp
from nemo_tui.ui.screens.model_menu import ModelMenu
from nemo_tui.ui.screens.stats import StatsScreen
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.model_picker import ModelPicker
from nemo_tui.ui.widgets.query_pane import QueryPane
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel
from tests.fakes import Script, ScriptedBackend
from tests.ui.support import make_rig, settle, started

BRACKETED = ("x[/]", "[Q4]", "/models/foo[bar].gguf")
"""Model names that are also Textual and Rich markup: a stray closing tag, a tag, a path."""
OSC52 = "\x1b]52;c;aGVsbG8=\x07"
"""Writes "hello" to the clipboard."""


def toasts(app: NemoApp) -> str:
    """The text of every notification on screen."""
    return "\n".join(str(toast.render()) for toast in app.screen.query("Toast"))


def rendered(static: Static) -> str:
    """What a Static holding a Rich table draws, as plain text."""
    drawn = io.StringIO()
    Console(file=drawn, width=200, color_system=None).print(static.content)
    return drawn.getvalue()


def bracket_backend() -> ScriptedBackend:
    return ScriptedBackend(name="ollama", models=(*BRACKETED, "tinyllama"))


async def test_bracketed_model_names_show_literally_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(tmp_path, backend=bracket_backend())
    # The toasts stay up however slowly the machine runs.
    monkeypatch.setattr(rig.app, "NOTIFICATION_TIMEOUT", 60)
    async with rig.app.run_test(size=(160, 50), notifications=True) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        cached = rig.app.screen.query_one(CachedModelsPanel)
        for name in BRACKETED:
            pane.choose_model(name)
            await pilot.press("f4")
        await settle(pilot, lambda: {m.name for m in cached.models} >= set(BRACKETED))
        shown = str(cached.render())
        assert all(name in shown for name in BRACKETED)
        assert all(f"Preloading {name}…" in toasts(rig.app) for name in BRACKETED)

        picker = pane.query_one(ModelPicker)
        assert "/models/foo[bar].gguf" in str(picker.render())
        picker.focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(rig.app.screen, ModelMenu))
        menu = rig.app.screen.query_one(OptionList)
        labels = [str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count)]
        assert set(BRACKETED) <= set(labels)
        await pilot.press("escape")

        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(rig.app.screen, StatsScreen))
        tables = "".join(rendered(static) for static in rig.app.screen.query(Static))
        assert all(name in tables for name in BRACKETED)


async def test_a_bracketed_recommendation_and_its_reason_show_literally(tmp_path: Path) -> None:
    backend = ScriptedBackend(name="ollama", models=("[Q4]",))
    rig = make_rig(tmp_path, backend=backend)
    async with rig.app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(RecommendationPanel)
        await settle(pilot, lambda: "[Q4]" in str(panel.render()))
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press(*"hi")
        pane.refresh_plan()
        assert "[Q4] (auto)" in str(pane.query_one("#query-plan").render())


async def test_the_answer_is_drawn_without_control_sequences(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    tokens = ["Sure.", "\x1b", "]52;c;aGVsbG8=", "\x07 Title\x1b]0;pwned\x1b\\", " [Q4] x[/]"]
    rig.backend.script = Script(tokens=tokens)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press(*"hi")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        assert pane.answer == "".join(tokens)
        drawn = pane.query_one(Markdown).source
        assert drawn == "Sure. Title [Q4] x[/]"


async def test_a_server_error_with_markup_and_escapes_shows_literally(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    message = f"runner [Q4] died{OSC52} at x[/]"
    rig.backend.script = Script(tokens=[], error=BackendError(message, backend="ollama"))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        pane.choose_model("tinyllama")  # a hand pick has no fallback to hide the error
        await pilot.press(*"hi")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: pane.error_text != "")
        shown = str(pane.query_one("#query-error", Static).render())
        assert "runner [Q4] died at x[/]" in shown
        assert "\x1b" not in shown
