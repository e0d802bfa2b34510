"""Routing across hosts from the command line: `recommend --json` and `ask --json` name the host,
`--host` pins one, and the cache commands act on the host where a model lives. The other host is
a fake Ollama with a node_exporter page on loopback; this machine is simulated and short."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.cli.test_cli import Cli, cli
from tests.fakes import FakeOllama
from tests.hosts.servers import GIB, FixtureServer, node_page
from tests.integration.test_routing_hosts import BIOMISTRAL, PHI3, TINYLLAMA

__all__ = ["cli"]  # fixture

HARD = "Compare these treatment protocols step by step and explain the statistics in depth"
SHORT_MACHINE = ("--simulate-memory", "4GB:1.2GB")


@pytest.fixture
def lab(cli: Cli) -> Iterator[tuple[FakeOllama, FakeOllama]]:
    pages = FixtureServer()
    pages.serve("/metrics", node_page(total=64 * GIB, available=50 * GIB))
    # Loads as slow as a real runner's, so the server's report says a preload was a load.
    with (
        FakeOllama([TINYLLAMA, PHI3]) as local,
        FakeOllama([PHI3, BIOMISTRAL], cold_load_s=0.3) as big,
    ):
        cli.env["OLLAMA_HOST"] = local.url
        cli.config(
            "backends:\n  embedded:\n    enabled: false\n  gemini:\n    enabled: false\n"
            f"hosts:\n  - name: big-box\n    ollama_url: {big.url}\n"
            f"    node_exporter_url: {pages.url}/metrics\n"
        )
        yield local, big
    pages.close()


def run(cli: Cli, *args: str) -> str:
    result = cli.run(*args, "--config", str(cli.home / "config.yaml"), *SHORT_MACHINE)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.integration
def test_recommend_names_the_host_with_room(cli: Cli, lab: tuple[FakeOllama, FakeOllama]) -> None:
    data = json.loads(run(cli, "recommend", HARD, "--complexity", "high", "--json"))
    assert (data["host"], data["model"]) == ("big-box", "biomistral:7b")
    assert data["reason"].startswith("biomistral:7b on big-box: ")
    low = json.loads(run(cli, "recommend", "hi", "--complexity", "low", "--json"))
    assert low["host"] == "local" and low["tier"] == "low"


@pytest.mark.integration
def test_ask_json_names_the_host_that_answered(
    cli: Cli, lab: tuple[FakeOllama, FakeOllama]
) -> None:
    local, big = lab
    events = [json.loads(line) for line in run(cli, "ask", HARD, "--json").splitlines()]
    recommended = next(e for e in events if e["event"] == "recommended")
    done = events[-1]
    assert recommended["host"] == done["host"] == "big-box"
    assert big.requests_to("/api/chat") and not local.requests_to("/api/chat")


@pytest.mark.integration
def test_a_pinned_host_answers(cli: Cli, lab: tuple[FakeOllama, FakeOllama]) -> None:
    local, big = lab
    events = [
        json.loads(line)
        for line in run(
            cli, "ask", "hi", "--host", "local", "--model", "tinyllama", "--json"
        ).splitlines()
    ]
    assert events[-1]["host"] == "local"
    assert local.requests_to("/api/chat") and not big.requests_to("/api/chat")


@pytest.mark.integration
def test_cache_commands_act_on_the_host_where_the_model_lives(
    cli: Cli, lab: tuple[FakeOllama, FakeOllama]
) -> None:
    local, big = lab
    assert "Loaded phi3:mini on big-box" in run(cli, "preload", "phi3:mini", "--host", "big-box")
    assert "phi3:mini" in big.loaded() and "phi3:mini" not in local.loaded()
    # Clearing this machine's cache leaves another host's models alone.
    assert run(cli, "clear-cache").strip() == "No models were loaded"
    assert "phi3:mini" in big.loaded()
    assert run(cli, "unload", "phi3:mini").startswith("Unloaded phi3:mini")
    assert "phi3:mini" not in big.loaded()
