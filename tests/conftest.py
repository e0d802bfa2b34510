"""Shared fixtures: every test runs with its own config, data and cache directories."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point XDG dirs at a fresh folder and drop config and keys from the environment."""
    home = tmp_path_factory.mktemp("home")
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    for name in ("NEMO_TUI_CONFIG", "GEMINI_API_KEY", "OLLAMA_HOST", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return home
