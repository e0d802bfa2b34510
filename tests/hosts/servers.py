"""The servers the hosts tests talk to, each on loopback:

- a real Prometheus node_exporter reading this machine (`running_node_exporter`), the Debian
  package's binary started on a free port, with only its memory and pressure collectors;
- a server of fixed pages (`FixtureServer`): node_exporter-format text with the memory figures
  and PSI counters a test chooses (`node_page`), or an OpenAI-compatible server's JSON and
  `/metrics` (llama-server, vLLM, llama-swap);
- fake Ollamas holding models (`ollama_holding`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeModel, FakeOllama
from tests.integration.support import free_port, missing_requirement

GIB = 2**30
NODE_EXPORTER_BINARIES = ("prometheus-node-exporter", "node_exporter")
"""The Debian package's name for the binary, then upstream's."""
_START_DEADLINE_S = 20.0


def node_page(
    *,
    total: float,
    available: float | None,
    swap_total: float = 2 * GIB,
    swap_free: float = 2 * GIB,
    buffers: float = 0.25 * GIB,
    cached: float = 3 * GIB,
    waiting_s: float | None = 0.0,
    stalled_s: float | None = 0.0,
) -> str:
    """A node_exporter page, as its meminfo and pressure collectors write it (sizes in bytes,
    PSI counters in seconds); None leaves a metric out."""
    gauges = {
        "node_memory_MemTotal_bytes": total,
        "node_memory_MemAvailable_bytes": available,
        "node_memory_Buffers_bytes": buffers,
        "node_memory_Cached_bytes": cached,
        "node_memory_SwapTotal_bytes": swap_total,
        "node_memory_SwapFree_bytes": swap_free,
    }
    lines = [
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
        "# TYPE node_cpu_seconds_total counter",
        'node_cpu_seconds_total{cpu="0",mode="idle"} 91234.56',
        'node_cpu_seconds_total{cpu="0",mode="user"} 1234.5',
    ]
    for name, value in gauges.items():
        if value is not None:
            field = name.removeprefix("node_memory_").removesuffix("_bytes")
            lines += [
                f"# HELP {name} Memory information field {field}_bytes.",
                f"# TYPE {name} gauge",
                f"{name} {float(value)!r}",
            ]
    for name, value in (
        ("node_pressure_memory_waiting_seconds_total", waiting_s),
        ("node_pressure_memory_stalled_seconds_total", stalled_s),
    ):
        if value is not None:
            lines += [f"# HELP {name} Total time in seconds.", f"# TYPE {name} counter"]
            lines.append(f"{name} {value}")
    lines.append('node_scrape_collector_success{collector="meminfo"} 1')
    return "\n".join(lines) + "\n"


@dataclass
class Page:
    """What the fixture server answers on one path."""

    body: bytes
    status: int = 200
    content_type: str = "text/plain; version=0.0.4; charset=utf-8"


class FixtureServer:
    """An HTTP server on a free loopback port answering fixed pages, which a test may change.

    Paths without a page get a 404, as a server without that endpoint does. Every request is
    counted per path (`hits`).
    """

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        fixture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output free of access logs."""

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with fixture._lock:
                    fixture.hits[path] += 1
                    page = fixture.pages.get(path)
                if page is None:
                    page = Page(b'{"error": "Not Found"}', 404, "application/json")
                self.send_response(page.status)
                self.send_header("Content-Type", page.content_type)
                self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                self.wfile.write(page.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, path: str, body: str | bytes | Any, status: int = 200) -> None:
        """Answer `path` with `body`: text as Prometheus text, anything else as JSON."""
        if isinstance(body, str | bytes):
            data = body.encode() if isinstance(body, str) else body
            page = Page(data, status)
        else:
            page = Page(json.dumps(body).encode(), status, "application/json")
        with self._lock:
            self.pages[path] = page

    def close(self) -> None:
        """Stop answering and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def ollama_holding(*loaded: FakeModel, num_ctx: int = 2048) -> FakeOllama:
    """A started fake Ollama with `loaded` already in memory (and only those models)."""
    server = FakeOllama(loaded)
    server.start()
    for model in loaded:
        runner, _ = server.acquire(model, {"num_ctx": num_ctx}, None)
        server.release(runner)
    return server


def closed_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


def meminfo_kb(field: str) -> int:
    """A field of this machine's /proc/meminfo, in kB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0])
    raise AssertionError(f"/proc/meminfo has no {field}")


@contextmanager
def running_node_exporter(log: Path) -> Iterator[str]:
    """A real node_exporter serving this machine's memory; yields its `/metrics` URL.

    Only the meminfo and pressure collectors run: the others read disks, network and hardware,
    which take time and say nothing about memory. Skipped (failed in CI) when the binary is
    not installed.
    """
    binary = next(filter(None, map(shutil.which, NODE_EXPORTER_BINARIES)), None)
    if binary is None:
        missing_requirement(
            "prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)"
        )
    assert binary is not None
    process, url = _start_node_exporter(binary, log)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _start_node_exporter(binary: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the exporter on a free port, again on another one if that port was taken in
    between, and wait until it serves."""
    for _ in range(3):
        port = free_port()
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--collector.disable-defaults",
                    "--collector.meminfo",
                    "--collector.pressure",
                    "--web.disable-exporter-metrics",
                ],
                stdout=log_file,
                stderr=log_file,
            )
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + _START_DEADLINE_S
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return process, url
            except httpx.TransportError:
                time.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
            break
    pytest.fail(f"node_exporter did not start: {log.read_text(errors='replace')}")
