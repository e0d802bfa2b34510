"""Shared fixtures: every test runs with its own config, data and cache directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The fuzzers run with a fixed budget and a fixed seed, so CI time is bounded and a failure found
# once is found again on the next run. `--hypothesis-profile=explore` searches wider, by hand.
settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    print_blob=True,
    # The autouse directory fixture only points XDG variables at a folder; sharing it across the
    # examples of one test is intended.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    parent=settings.get_profile("ci"),
    max_examples=5000,
    derandomize=False,
)
settings.load_profile("ci")


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
