"""`nemo-tui hosts` and the `hosts` of `status --json`, run as the real command in a subprocess.

This machine is read by a real node_exporter; the other hosts are a node_exporter-format page
and a fake Ollama on loopback, a port that never answers and one nobody listens on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.test_cli import MEMORY_KEYS as STATUS_MEMORY_KEYS
from tests.cli.test_cli import isolated_env
from tests.fakes import FakeModel
from tests.hosts.servers import (
    GIB,
    FixtureServer,
    closed_url,
    meminfo_kb,
    node_page,
    ollama_holding,
    running_node_exporter,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_KEYS = {"name", "up", "reason", "memory", "models", "local", "latency_ms", "cache_limit"}
MEMORY_KEYS = {*STATUS_MEMORY_KEYS, "source"}
MODEL_KEYS = {"name", "server", "size_mb", "vram_mb", "expires_at"}
TINY = FakeModel("tinyllama", weights_mb=608.0)
TIMEOUT_S = 2.0
"""How long `hosts` waits for a host (HostMonitor's default)."""
STARTUP_SLACK_S = 6.0
"""Starting Python and importing httpx on a busy two-core machine, on top of the timeout."""


@dataclass
class Cli:
    """Runs `python -m nemo_tui` with its own XDG dirs and config."""

    home: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nemo_tui", *args, "--config", str(self.home / "config.yaml")],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def config(self, *hosts: dict[str, Any], **sections: Any) -> None:
        """Write the config: these hosts, no embedded model, and the given sections."""
        data: dict[str, Any] = {"backends": {"embedded": {"enabled": False}}, **sections}
        data["hosts"] = list(hosts)
        (self.home / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    env = isolated_env(tmp_path)
    env["OLLAMA_HOST"] = closed_url()
    cli = Cli(tmp_path, env)
    cli.config()
    return cli


@pytest.fixture(scope="module")
def real_node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real node_exporter serving this machine's memory."""
    with running_node_exporter(tmp_path_factory.mktemp("node_exporter") / "log") as url:
        yield url


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL whose port completes connections but never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def gpu_box(cli: Cli) -> Iterator[dict[str, Any]]:
    """A host whose node_exporter says 9 GB of 16 GB are free and whose Ollama holds
    tinyllama."""
    pages = FixtureServer()
    pages.serve("/metrics", node_page(total=16 * GIB, available=9 * GIB))
    with ollama_holding(TINY) as ollama:
        yield {
            "name": "gpu-box",
            "ollama_url": ollama.url,
            "node_exporter_url": f"{pages.url}/metrics",
            "cache_limit": 0.6,
        }
    pages.close()


def by_name(hosts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {host["name"]: host for host in hosts}


def test_help_lists_the_hosts_command(cli: Cli) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nemo_tui", "--help"],
        capture_output=True,
        text=True,
        env=cli.env,
        check=False,
    )
    assert "\n    hosts " in result.stdout


@pytest.mark.integration
def test_hosts_json_lists_this_machine_and_the_other_hosts(
    cli: Cli, gpu_box: dict[str, Any], real_node_exporter: str
) -> None:
    cli.config(
        gpu_box,
        {"name": "this-box", "node_exporter_url": real_node_exporter},
        local_host={"name": "workstation", "node_exporter_url": real_node_exporter},
        backends={"ollama": {"enabled": False}, "embedded": {"enabled": False}},
    )
    hosts = cli.json("hosts")
    assert [host["name"] for host in hosts] == ["workstation", "gpu-box", "this-box"]
    for host in hosts:
        assert set(host) == HOST_KEYS
        assert set(host["memory"]) >= MEMORY_KEYS
    found = by_name(hosts)

    local = found["workstation"]
    assert (local["local"], local["up"], local["reason"]) == (True, True, None)
    assert local["memory"]["source"] == "os"

    gpu = found["gpu-box"]
    assert (gpu["local"], gpu["up"], gpu["reason"], gpu["cache_limit"]) == (False, True, None, 0.6)
    memory = gpu["memory"]
    assert (memory["total_mb"], memory["available_mb"]) == (16 * GIB / 2**20, 9 * GIB / 2**20)
    assert memory["source"] == "node_exporter, ollama /api/ps"
    assert memory["pressure"] == "normal"
    [model] = gpu["models"]
    assert set(model) == MODEL_KEYS
    size = round(int(TINY.memory_mb(2048) * 2**20) / 2**20, 1)
    assert (model["name"], model["server"], model["size_mb"]) == ("tinyllama", "ollama", size)
    assert model["expires_at"] is not None

    this_box = found["this-box"]["memory"]
    assert this_box["source"] == "node_exporter"
    assert this_box["total_mb"] == round(meminfo_kb("MemTotal") / 1024, 1)


@pytest.mark.integration
def test_hosts_prints_one_line_per_host(cli: Cli, gpu_box: dict[str, Any]) -> None:
    cli.config(gpu_box, backends={"ollama": {"enabled": False}, "embedded": {"enabled": False}})
    result = cli.run("hosts")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("local    up    ")
    assert lines[1].startswith(
        "gpu-box  up    9.0 GB free of 16.0 GB (node_exporter)  pressure normal"
        "  models: tinyllama ("
    )
    assert lines[1].endswith(" ms")


@pytest.mark.integration
def test_simulated_memory_describes_this_machine_only(cli: Cli, gpu_box: dict[str, Any]) -> None:
    cli.config(gpu_box)
    found = by_name(cli.json("hosts", "--simulate-memory", "4GB:1.5GB"))
    local, gpu = found["local"]["memory"], found["gpu-box"]["memory"]
    assert (local["total_mb"], local["available_mb"], local["simulated"]) == (4096, 1536, True)
    assert local["source"] == "simulated"
    assert (gpu["total_mb"], gpu["simulated"]) == (16384, False)


@pytest.mark.integration
def test_status_json_lists_the_hosts(cli: Cli, gpu_box: dict[str, Any]) -> None:
    cli.config(gpu_box)
    data = cli.json("status")
    found = by_name(data["hosts"])
    assert list(found) == ["local", "gpu-box"]
    assert found["gpu-box"]["memory"]["total_mb"] == 16384
    # This machine's entry is the very sample `memory` reports.
    local_memory = found["local"]["memory"]
    assert {key: local_memory[key] for key in data["memory"]} == data["memory"]


@pytest.mark.integration
def test_status_without_hosts_asks_no_server(cli: Cli) -> None:
    with ollama_holding(TINY) as ollama:
        cli.env["OLLAMA_HOST"] = ollama.url
        data = cli.json("status")
    assert ollama.requests == []
    [local] = data["hosts"]
    assert set(local) == HOST_KEYS
    assert (local["name"], local["local"], local["up"], local["models"]) == (
        "local",
        True,
        True,
        [],
    )
    assert {key: local["memory"][key] for key in data["memory"]} == data["memory"]
    assert local["memory"]["source"] == "os"


@pytest.mark.integration
def test_a_down_host_is_listed_with_why_and_the_command_returns_promptly(
    cli: Cli, gpu_box: dict[str, Any], silent_url: str
) -> None:
    gone = closed_url()
    cli.config(
        {"name": "hung", "ollama_url": silent_url},
        {"name": "gone", "ollama_url": gone},
        gpu_box,
    )
    started = time.monotonic()
    found = by_name(cli.json("hosts"))
    assert time.monotonic() - started < TIMEOUT_S + STARTUP_SLACK_S
    assert (found["hung"]["up"], found["gone"]["up"], found["gpu-box"]["up"]) == (
        False,
        False,
        True,
    )
    assert found["hung"]["reason"] == f"no answer within 2.0 s at {silent_url}/api/ps"
    assert found["gone"]["reason"] == f"connection refused at {gone}/api/ps"
    assert found["hung"]["memory"] is None and found["hung"]["models"] == []
    # This machine's Ollama ($OLLAMA_HOST) is down too; the machine itself is up.
    assert found["local"]["up"] is True
    assert found["local"]["reason"] == f"connection refused at {cli.env['OLLAMA_HOST']}/api/ps"

    result = cli.run("hosts")
    assert result.returncode == 0, result.stderr
    [gone_line] = [line for line in result.stdout.splitlines() if line.startswith("gone")]
    assert gone_line == f"gone     down  connection refused at {gone}/api/ps"
