"""Shared fixtures: every test runs with its own config, data and cache directories.

Markers: `integration` marks exactly the tests that talk to a real server or model over a real
socket: a TCP connection to the fake Ollama, a llama-server or another loopback server (also
when the CLI under test makes it from a subprocess), or llama.cpp workers running SmolLM2. A test
that only reads the model file, checks a config, or finds that nothing listens on a port is not
one, wherever it lives. `only_integration_tests_talk_over_tcp` fails an unmarked test that
holds a TCP conversation in this process (see `tests/tcp_connections.py` for what it cannot see).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.tcp_connections import only_integration_tests_talk_over_tcp

__all__ = ["only_integration_tests_talk_over_tcp"]  # a fixture: pytest finds it by this name

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
