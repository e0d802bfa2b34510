"""Start-up: the dashboard draws and takes keys before its engine exists, then picks it up."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from textual.widgets import Static

from nemo_tui.config import Config, parse_config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.engine import Engine
from nemo_tui.errors import NemoError
from nemo_tui.ui.app import create_app
from nemo_tui.ui.screens.help import HelpScreen
from nemo_tui.ui.screens.main import MainScreen
from nemo_tui.ui.screens.path_prompt import PathPrompt
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.memory_panel import MemoryFigures
from nemo_tui.ui.widgets.query_pane import ENGINE_STARTING
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel
from tests.ui.support import make_rig, settle, started

REPO = Path(__file__).resolve().parents[2]

EVERY_KEY_WITHOUT_A_DIALOG = (
    "ctrl+s",
    "escape",
    "f2",
    "f3",
    "f4",
    "f5",
    "f6",
    "f6",
    "f7",
    "f7",
    "f8",
    "f9",
    "ctrl+r",
    "ctrl+f",
    "ctrl+g",
    "ctrl+o",
    "ctrl+l",
    "f12",
)


async def test_every_key_works_or_says_why_while_the_engine_is_built(tmp_path: Path) -> None:
    gate = threading.Event()
    rig = make_rig(tmp_path, gate=gate)
    app = rig.app
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, MainScreen)
            assert app.engine is None
            assert "starting" in str(screen.sub_title)
            # The gauges do not wait for the engine: the first frame has a real sample.
            figures = screen.query_one(MemoryFigures)
            assert figures.readings["ram"].figures == "4.0 GB / 16.0 GB"
            panel = screen.query_one(RecommendationPanel)
            assert "starting the engine" in str(panel.render())
            assert "starting…" in str(screen.query_one(CachedModelsPanel).render())

            await pilot.press(*"How big is a KV cache?")
            for key in EVERY_KEY_WITHOUT_A_DIALOG:
                await pilot.press(key)
            assert isinstance(app.screen, MainScreen)
            assert "starting the engine" in str(screen.query_one("#query-plan", Static).render())
            starting = [note for note in rig.notes if note.endswith(ENGINE_STARTING)]
            # ctrl+s, f2, f5, f9 (a cache action) and ctrl+r each say so; none of them fails.
            assert len(starting) == 5
            assert f"Cache: {ENGINE_STARTING}" in starting

            await pilot.press("f1")
            await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await pilot.press("ctrl+t")
            await settle(pilot, lambda: isinstance(app.screen, PathPrompt))
            await pilot.press("escape")
            await settle(pilot, lambda: isinstance(app.screen, MainScreen))

            screen.toggle_setting("optimization.context_truncation")
            # Saved by a thread, so the dashboard never waits on the disk.
            await settle(
                pilot,
                lambda: (
                    rig.config_path.exists()
                    and "context_truncation: false" in rig.config_path.read_text()
                ),
            )

            gate.set()
            await started(pilot)
            assert app.engine is rig.engine
            assert rig.engine.config.optimization.context_truncation is False
            await settle(pilot, lambda: "tinyllama" in str(panel.render()))
    finally:
        gate.set()


async def test_an_engine_that_cannot_be_built_ends_the_app_with_the_reason(
    tmp_path: Path,
) -> None:
    def broken() -> Engine:
        raise NemoError("no backend is configured", title="No backends", fix="enable one")

    app = create_app(Config(), broken, config_path=tmp_path / "config.yaml")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1


async def test_a_bad_ollama_host_ends_the_app_with_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://user:hunter2@gpu-box")
    config = parse_config("backends:\n  embedded:\n    enabled: false\n")
    app = create_app(
        config,
        lambda: Engine(config, sampler=SimulatedSampler(8192.0), monitor=False),
        config_path=tmp_path / "config.yaml",
    )
    exit_messages: list[object] = []
    exit_app = app.exit

    def record_exit(result: None = None, return_code: int = 0, message: object = None) -> None:
        exit_messages.append(message)
        exit_app(result, return_code, message)  # type: ignore[arg-type]

    monkeypatch.setattr(app, "exit", record_exit)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
    [message] = exit_messages
    assert isinstance(message, str) and "\n" not in message
    assert "$OLLAMA_HOST: 'http://***@gpu-box' holds a user name or password" in message
    assert "hunter2" not in message


def test_the_first_frame_does_not_wait_for_the_engine_or_httpx() -> None:
    later = (
        "nemo_tui.engine",
        "nemo_tui.core.models.catalog",
        "httpx",
        "plotext",
        "markdown_it",
        "pygments",
        "prometheus_client",
    )
    probe = (
        "import sys, nemo_tui.cli.dashboard, nemo_tui.ui.app;"
        f"print(sorted(m for m in {later!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_engine_loads_the_http_backends_only_when_it_builds_them() -> None:
    probe = "import sys, nemo_tui.engine; print('httpx' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
