"""The `integration` marker is checked: a test that talks over TCP without it fails.

The check runs in a pytest of its own, in a subprocess, on a file of small tests that connect
in each way the check watches; this test only reads the outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECKED_TESTS = '''\
import asyncio
import socket

import pytest


def listener() -> socket.socket:
    """A loopback port that completes connections (the kernel's backlog) but never accepts."""
    return socket.create_server(("127.0.0.1", 0))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connecting_unmarked():
    with listener() as server, socket.create_connection(server.getsockname()):
        pass


def test_connecting_from_asyncio_unmarked():
    async def connect(address):
        _, writer = await asyncio.open_connection(*address)
        writer.close()
        await writer.wait_closed()

    with listener() as server:
        asyncio.run(connect(server.getsockname()))


def test_accepting_unmarked():
    import _socket  # the C socket: its connect is not the one the check watches

    client = _socket.socket()
    try:
        with listener() as server:
            client.connect(server.getsockname())
            server.accept()[0].close()
    finally:
        client.close()


@pytest.mark.integration
def test_connecting_marked():
    with listener() as server, socket.create_connection(server.getsockname()):
        pass


def test_finding_nothing_listening_unmarked():
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port))

    async def connect():
        await asyncio.open_connection("127.0.0.1", port)

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(connect())
'''


def test_only_tests_marked_integration_may_talk_over_tcp(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: talks\n")
    (tmp_path / "conftest.py").write_text(
        "from tests.tcp_connections import only_integration_tests_talk_over_tcp\n"
    )
    (tmp_path / "test_checked.py").write_text(CHECKED_TESTS)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_checked.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # The check fails a test at teardown: its body passed, then an ERROR line follows.
    outcomes = {
        (line.split()[0], line.split()[1].removeprefix("test_checked.py::"))
        for line in result.stdout.splitlines()
        if line.startswith(("PASSED ", "ERROR ", "FAILED "))
    }
    failed_by_the_check = {
        "test_connecting_unmarked",
        "test_connecting_from_asyncio_unmarked",
        "test_accepting_unmarked",
    }
    left_alone = {"test_connecting_marked", "test_finding_nothing_listening_unmarked"}
    assert outcomes == {("ERROR", name) for name in failed_by_the_check} | {
        ("PASSED", name) for name in failed_by_the_check | left_alone
    }, result.stdout + result.stderr
    assert "talks over TCP" in result.stdout and "is not marked `integration`" in result.stdout
