"""Fixtures for the hosts tests: a real node_exporter for this machine, servers of fixed pages
for the other hosts, and a port that never answers (the servers themselves are in `servers`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from .servers import FixtureServer, running_node_exporter


@pytest.fixture
def pages() -> Iterator[FixtureServer]:
    """A server of fixed pages on loopback."""
    server = FixtureServer()
    yield server
    server.close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL whose port completes connections (the kernel's backlog) but never
    answers, like a host whose server hangs."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(scope="session")
def real_node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real node_exporter serving this machine's memory, for the whole session."""
    log = tmp_path_factory.mktemp("node_exporter") / "node_exporter.log"
    with running_node_exporter(log) as url:
        yield url
