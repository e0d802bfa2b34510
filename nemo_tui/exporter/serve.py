"""Serving the metrics over HTTP for Prometheus, or writing them for node_exporter.

`serve` starts prometheus_client's HTTP server in a thread of its own. The engine lives on an
asyncio event loop and is not thread-safe, so a scrape does not read it from the server's thread:
it asks the loop for a snapshot (`take_snapshot`) and waits for it, at most
`SNAPSHOT_TIMEOUT_S`. A loop too busy to answer in time gets the previous snapshot served again,
its `nemo_tui_snapshot_timestamp_seconds` showing its age, rather than a scrape that fails.

`write_textfile` writes one snapshot to a file atomically (a temporary file renamed over it), so
node_exporter's textfile collector never reads half a file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.exposition import write_to_textfile

from nemo_tui.errors import NemoError, UsageError
from nemo_tui.exporter.collector import HostStatuses, Snapshot, SnapshotCollector, take_snapshot
from nemo_tui.exporter.counters import HistoryCounters

if TYPE_CHECKING:
    from nemo_tui.engine import Engine

SNAPSHOT_TIMEOUT_S = 5.0
"""How long a scrape waits for the event loop; under Prometheus's default scrape timeout (10 s)."""
ALL_INTERFACES = "0.0.0.0"
"""What `:PORT` listens on."""
_LISTEN_FIX = "give ADDR:PORT, e.g. 127.0.0.1:9200, [::1]:9200, or :9200 for every interface"


def parse_listen_address(text: str) -> tuple[str, int]:
    """The address and port of `ADDR:PORT`, as Prometheus exporters take them.

    ADDR is an IPv4 address, a host name, an IPv6 address in brackets (`[::1]:9200`), or empty
    for every IPv4 interface (`:9200`). PORT is 0..65535; 0 picks a free one.

    Raises:
        UsageError: the text is not ADDR:PORT.
    """
    address, colon, port_text = text.strip().rpartition(":")
    if not colon:
        raise UsageError(f"'{text}' has no port", fix=_LISTEN_FIX)
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise UsageError(f"'{port_text}' is not a port (0 to 65535)", fix=_LISTEN_FIX)
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise UsageError(f"'{address}' is not an IPv6 address", fix=_LISTEN_FIX) from None
    elif ":" in address:
        raise UsageError(
            f"'{text}' is ambiguous: an IPv6 address goes in brackets",
            fix=f"write [{address}]:{port_text}",
        )
    elif any(c.isspace() or c in "[]/" for c in address):
        raise UsageError(f"'{address}' is not an address", fix=_LISTEN_FIX)
    return address or ALL_INTERFACES, int(port_text)


class MetricsEndpoint:
    """The metrics HTTP server `serve` started; `close()` stops it.

    Attributes:
        address: The address it listens on.
        port: The port it listens on (the one picked when 0 was asked for).
    """

    def __init__(self, server: WSGIServer, thread: threading.Thread, address: str) -> None:
        self._server = server
        self._thread = thread
        self.address = address
        self.port: int = server.server_address[1]

    @property
    def url(self) -> str:
        """Where Prometheus scrapes it: `http://127.0.0.1:9200/metrics`, IPv6 in brackets."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop listening; a scrape being answered is cut short."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _LoopSnapshots:
    """Snapshots taken on the engine's event loop, for the HTTP server's threads.

    Built on the loop, with a first snapshot taken at once: there is always one to serve.
    """

    def __init__(self, take: Callable[[], Snapshot]) -> None:
        self._loop = asyncio.get_running_loop()
        self._take = take
        self._last = take()

    async def _taken(self) -> Snapshot:
        return self._take()

    def __call__(self) -> Snapshot:
        """A snapshot taken now, or the previous one when the loop does not answer in time."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._taken(), self._loop)
        except RuntimeError:  # the loop is closed: nemo-tui is shutting down
            return self._last
        try:
            self._last = future.result(timeout=SNAPSHOT_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
        return self._last


def serve(
    engine: Engine,
    monitor: HostStatuses | None,
    address: str,
    port: int,
    *,
    history: Path | None,
) -> MetricsEndpoint:
    """Serve the metrics at `http://ADDRESS:PORT/metrics` until `close()`.

    Call it on the engine's event loop; it returns at once, the server running in a thread.
    Every scrape reads a fresh snapshot: the engine's figures, the monitor's last statuses and
    the history lines added since the last scrape. The endpoint also serves the `process_*`
    metrics of this process (its start time tells a restart from a counter reset).

    Args:
        engine: The engine whose figures are served.
        monitor: The host monitor (refreshed by the caller), or None for this machine only.
        address: The address to listen on: an IP address or a host name; `0.0.0.0` or `::`
            for every interface.
        port: The TCP port; 0 picks a free one (see `MetricsEndpoint.port`).
        history: The history file every nemo-tui process appends to, for the counters; None
            serves no counters.

    Raises:
        NemoError: the address cannot be listened on (a port in use, an unknown host name).
    """
    counters = HistoryCounters(history) if history is not None else None
    snapshots = _LoopSnapshots(lambda: take_snapshot(engine, hosts=monitor, counters=counters))
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(snapshots))
    ProcessCollector(registry=registry)
    shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise NemoError(
            f"cannot serve metrics on {shown}: {exc.strerror or exc}", fix=_bind_fix(exc)
        ) from exc
    return MetricsEndpoint(server, thread, address)


def _bind_fix(error: OSError) -> str:
    """What to do about an address that cannot be listened on."""
    if isinstance(error, socket.gaierror):
        return "give an IP address, or a host name this machine resolves"
    return {
        errno.EADDRINUSE: "choose another port, or stop what listens there",
        errno.EACCES: "choose a port above 1023 (lower ones need root)",
        errno.EADDRNOTAVAIL: "give an address of this machine, or 0.0.0.0 for all of them",
    }.get(error.errno or 0, "check the address and the port")


def write_textfile(path: Path, snapshot: Snapshot) -> None:
    """Write a snapshot's metrics to `path` for node_exporter's textfile collector, atomically.

    The file is written beside `path` and renamed over it; node_exporter reads only files
    ending in `.prom`, so it never sees the temporary one.

    Raises:
        NemoError: the file cannot be written.
    """
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot))
    try:
        write_to_textfile(str(path), registry)
    except OSError as exc:
        raise NemoError(
            f"cannot write metrics to {path}: {exc.strerror or exc}",
            fix="check that the directory exists and is writable",
        ) from exc
