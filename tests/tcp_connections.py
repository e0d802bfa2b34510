"""Which tests hold a TCP conversation, so the `integration` marker can be checked, not trusted.

`integration` means "talks to a real server or model over a real socket" (pyproject.toml). The
part of that a test run can see is a TCP connection established in the test process: as a
client (an httpx client reaching the fake Ollama or a llama-server) or as a server (the fake
Ollama accepting the CLI's connection). A connection refused because nothing listens is not a
conversation and is not counted, so a test of "the server is down" stays a unit test.

Not seen, so marked by hand: connections a subprocess makes to a server outside this process
(the tmux test's dashboard talking to its own llama.cpp worker), and tests that run the real
model without connecting to it (starting and stopping llama.cpp workers).
"""

from __future__ import annotations

import errno
import socket
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_PENDING_ERRNOS = {errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK, errno.EAGAIN}


class ConnectionLog:
    """The TCP connections established while this log is the current one."""

    def __init__(self) -> None:
        self.connections: list[str] = []
        self._lock = threading.Lock()

    def add(self, what: str) -> None:
        """Record one connection; servers accept on their own threads."""
        with self._lock:
            self.connections.append(what)


_current: ConnectionLog | None = None
_dialing: weakref.WeakKeyDictionary[socket.socket, Any] = weakref.WeakKeyDictionary()
"""Non-blocking connects in progress, by socket: the address each one dials."""
_dialing_lock = threading.Lock()


def _is_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM


def _record(what: str) -> None:
    log = _current
    if log is not None:
        log.add(what)


def _start_dialing(sock: socket.socket, address: Any) -> None:
    with _dialing_lock:
        _dialing[sock] = address


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getsockopt = socket.socket.getsockopt
_real_accept = socket.socket.accept


def _connect(self: socket.socket, address: Any) -> None:
    if not _is_tcp(self):
        return _real_connect(self, address)
    try:
        _real_connect(self, address)
    except (BlockingIOError, InterruptedError):
        # asyncio's way: the outcome arrives later, through getsockopt(SO_ERROR).
        _start_dialing(self, address)
        raise
    _record(f"connected to {address}")


def _connect_ex(self: socket.socket, address: Any) -> int:
    result = _real_connect_ex(self, address)
    if _is_tcp(self):
        if result == 0:
            _record(f"connected to {address}")
        elif result in _PENDING_ERRNOS:
            _start_dialing(self, address)
    return result


def _getsockopt(self: socket.socket, level: int, option: int, *args: int) -> Any:
    result = _real_getsockopt(self, level, option, *args)
    if level == socket.SOL_SOCKET and option == socket.SO_ERROR and not args:
        with _dialing_lock:
            address = _dialing.pop(self, None)
        if address is not None and result == 0:
            _record(f"connected to {address}")
    return result


def _accept(self: socket.socket) -> tuple[socket.socket, Any]:
    accepted = _real_accept(self)
    if _is_tcp(self):
        _record(f"accepted {accepted[1]} on {self.getsockname()}")
    return accepted


def _install() -> None:
    """Route the socket calls that make a TCP connection through the recorders, once."""
    if socket.socket.connect is _connect:
        return
    socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
    socket.socket.getsockopt = _getsockopt  # type: ignore[method-assign,assignment]
    socket.socket.accept = _accept  # type: ignore[method-assign]


@contextmanager
def watching() -> Iterator[ConnectionLog]:
    """Record the TCP connections this process establishes until the block ends."""
    global _current
    _install()
    previous, _current = _current, ConnectionLog()
    try:
        yield _current
    finally:
        _current = previous


@pytest.fixture(autouse=True)
def only_integration_tests_talk_over_tcp(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that holds a TCP conversation without the `integration` marker.

    Autouse, so it is set up before and torn down after the test's other fixtures: the fake
    servers they start are inside the window.
    """
    with watching() as log:
        yield
    if log.connections and request.node.get_closest_marker("integration") is None:
        shown = ", ".join(log.connections[:3])
        more = f" and {len(log.connections) - 3} more" if len(log.connections) > 3 else ""
        pytest.fail(
            f"this test talks over TCP ({shown}{more}) but is not marked `integration`:"
            " add @pytest.mark.integration, or reach the server through httpx.MockTransport",
            pytrace=False,
        )
