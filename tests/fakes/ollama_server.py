"""A fake Ollama server that speaks the native wire format over a real loopback socket.

It follows the reference (llm-backends.md §1) closely enough for nemo-tui's Ollama client to be
tested end to end, without a model or a GPU:

- `GET|HEAD /`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/chat`, `/api/generate`;
- NDJSON streaming with chunked transfer encoding, one word per token, taken from a fixed text so
  every run streams the same answer (`ANSWER_WORDS`);
- `keep_alive` parsed like Go's `api.Duration` (§1.7), idle expiry measured from the end of the
  last request, preload (`done_reason: "load"`) and unload (`done_reason: "unload"`);
- a reload whenever a load option (`num_ctx`, `num_batch`, `use_mmap`, `num_thread`) changes;
- memory accounting: a loaded model takes its weights plus an f16 KV cache for its `num_ctx`,
  computed from the same architecture figures `/api/show` reports, and a model that does not fit
  next to the others under `memory_limit_mb` is refused with Ollama's exact 500 message (§1.10);
- silent prompt truncation to `num_ctx`, as Ollama does by default;
- fault injection (`fail_next`) and `stop()`/`start()` on the same port.

This module holds the server's state and scheduling; `ollama_http` speaks HTTP, `ollama_wire`
holds the formats. The clock is the server's own (`advance_clock`), so expiry can be tested
without sleeping.

Usage, from pytest or a bench script::

    with FakeOllama(memory_limit_mb=4096) as server:
        client = OllamaBackend(server.url)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.ollama_http import OllamaHttpServer
from tests.fakes.ollama_wire import (
    DEFAULT_MODELS,
    MIB,
    FakeModel,
    Fault,
    HttpError,
    RecordedRequest,
    human_bytes2,
    int_option,
)

SETTLE_S = 2.0
"""Longest `advance_clock` waits for requests in flight to end."""


@dataclass
class Runner:
    """A loaded model: what it was loaded with and when it goes away."""

    model: FakeModel
    load_key: tuple[Any, ...]
    num_ctx: int
    size_mb: float
    keep_alive_s: float
    in_flight: int = 0
    deadline: float | None = None
    """Server-clock time the idle timer fires; None while a request uses it."""
    last_used: float = 0.0


@dataclass(frozen=True)
class PlannedFault:
    """A failure waiting for the next chat or generate request."""

    kind: Fault
    seconds: float
    after_tokens: int
    message: str | None


class FakeOllama:
    """An Ollama-API server on a loopback port, in a background thread.

    Args:
        models: What `/api/tags` lists and the server can load.
        memory_limit_mb: Memory all loaded models may use together; None means unlimited.
        tokens_per_s: Streaming rate; 0 streams as fast as possible.
        cold_load_s: How long a cold load or a reload really takes (and is reported). Under
            `ollama.WARM_LOAD_MAX_S` (0.15 s) nemo-tui's client takes it for a model found in
            memory, as a real Ollama never loads that fast; tests of cache hits use a longer one.
        default_keep_alive_s: Used on first load when a request has no `keep_alive` (5m).
        default_num_ctx: `num_ctx` when a request gives none.
        answer_tokens: Length of an answer when `num_predict` does not cut it short.
        answer: The tokens of every answer, sent exactly as given, instead of `answer_tokens`
            words of the fixed text.
        evict_to_fit: Evict idle models, least recently used first, to make room, as the real
            scheduler does; off by default so a refusal is easy to provoke.
        version: What `/api/version` reports.
    """

    def __init__(
        self,
        models: Sequence[FakeModel] = DEFAULT_MODELS,
        *,
        memory_limit_mb: float | None = None,
        tokens_per_s: float = 0.0,
        cold_load_s: float = 0.05,
        default_keep_alive_s: float = 300.0,
        default_num_ctx: int = 4096,
        answer_tokens: int = 24,
        answer: Sequence[str] | None = None,
        evict_to_fit: bool = False,
        version: str = "0.12.3",
    ) -> None:
        self.models = {m.name: m for m in models}
        self.memory_limit_mb = memory_limit_mb
        self.tokens_per_s = tokens_per_s
        self.cold_load_s = cold_load_s
        self.default_keep_alive_s = default_keep_alive_s
        self.default_num_ctx = default_num_ctx
        self.answer_tokens = answer_tokens
        self.answer = answer
        self.next_answers: list[Sequence[str]] = []
        """Answers for the next streamed requests, one each, before `answer` applies again."""
        self.evict_to_fit = evict_to_fit
        self.version = version
        self.requests: list[RecordedRequest] = []
        """Every request received, in order."""
        self.loads = 0
        """Cold loads, reloads included."""
        self.reloads = 0
        """Loads that replaced the same model loaded with other load options."""
        self.disconnects = 0
        """Streams the client closed before the end."""
        self.connections_opened = 0
        """Client connections accepted (a client that reuses connections opens few)."""
        self.handler_errors: list[BaseException] = []
        """Unexpected exceptions inside the fake itself (a test can assert there are none)."""
        self.port = 0
        self._lock = threading.Lock()
        self._runners: dict[str, Runner] = {}
        self._faults: list[PlannedFault] = []
        self._clock_offset = 0.0
        self._server: OllamaHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the same port; the first start picks a free one."""
        if self._server is not None:
            return
        server = OllamaHttpServer(("127.0.0.1", self.port), self)
        self.port = server.server_address[1]
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Go down like a killed daemon: close the listener and every open connection.

        Loaded models are forgotten, as they would be after a restart.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
            self._runners.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        # Wake paused handlers only once their sockets are cut: a killed daemon never sends the
        # rest of an answer it was pacing or stalling.
        self._stopping.set()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs and probes for tests ------------------------------------------------------------

    def fail_next(
        self,
        kind: Fault | str,
        *,
        seconds: float = 2.0,
        after_tokens: int = 3,
        message: str | None = None,
    ) -> None:
        """Make the next chat or generate request fail in the given way.

        Mid-stream kinds apply to streamed answers; a preload or a non-streamed request just
        uses the fault up.

        Args:
            kind: Which failure (see `Fault`).
            seconds: How long a `stall` or `stall_mid` lasts before tokens flow.
            after_tokens: Tokens sent before a mid-stream failure.
            message: Replaces the default error text.
        """
        with self._lock:
            self._faults.append(PlannedFault(Fault(kind), seconds, after_tokens, message))

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward, so keep_alive timers fire without waiting.

        A model's idle timer starts when its request ends, just after the final message is sent,
        so a client can act on a reply before it starts. The clock moves once no request is in
        flight (or after `SETTLE_S`), as it would for a client that waited a moment.
        """
        deadline = time.monotonic() + SETTLE_S
        while True:
            with self._lock:
                busy = any(r.in_flight for r in self._runners.values())
                if not busy or time.monotonic() > deadline:
                    self._clock_offset += seconds
                    return
            time.sleep(0.002)

    def loaded(self) -> dict[str, float]:
        """Loaded model names and their memory in MB, after expiring idle ones."""
        with self._lock:
            self._expire()
            return {name: r.size_mb for name, r in self._runners.items()}

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests for one path, e.g. `/api/chat`."""
        return [r for r in self.requests if r.path == path]

    # -- used by the HTTP handler ------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        """Keep a received request for the test to inspect."""
        self.requests.append(request)

    def connection_opened(self, connection: socket.socket) -> None:
        """Track a client connection so `stop()` can cut it."""
        with self._lock:
            self._connections.add(connection)
            self.connections_opened += 1

    def connection_closed(self, connection: socket.socket, *, mid_stream: bool = False) -> None:
        """Forget a client connection; `mid_stream` counts a client that hung up early."""
        with self._lock:
            self._connections.discard(connection)
            if mid_stream:
                self.disconnects += 1

    def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def find_model(self, name: Any) -> FakeModel:
        """The model a request names.

        Raises:
            HttpError: 400 without a name, 404 for a model the server does not have.
        """
        if not name:
            raise HttpError(400, "model is required")
        model = self.models.get(str(name))
        if model is None:
            raise HttpError(404, f"model '{name}' not found")
        return model

    def take_fault(self) -> PlannedFault | None:
        """The next planned failure, if any."""
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def acquire(
        self, model: FakeModel, options: dict[str, Any], keep_alive: float | None
    ) -> tuple[Runner, bool]:
        """The runner for a request, loading or reloading it; True when a load happened.

        Raises:
            HttpError: 500 when the model does not fit, or an option has the wrong type.
        """
        requested_ctx = int_option(options, "num_ctx", self.default_num_ctx) or 0
        num_ctx = max(4, min(requested_ctx, model.context_length))
        use_mmap = options.get("use_mmap")
        if use_mmap is not None and not isinstance(use_mmap, bool):
            raise HttpError(500, 'option "use_mmap" must be of type boolean')
        load_key = (
            num_ctx,
            int_option(options, "num_batch", 512),
            use_mmap,
            int_option(options, "num_thread", 0),
        )
        with self._lock:
            self._expire()
            current = self._runners.get(model.name)
            if current is not None and current.load_key == load_key:
                if keep_alive is not None:
                    current.keep_alive_s = keep_alive
                current.in_flight += 1
                current.deadline = None
                return current, False
            if current is not None:
                del self._runners[model.name]
                self.reloads += 1
            size_mb = model.memory_mb(num_ctx)
            self._make_room(size_mb)
            runner = Runner(
                model=model,
                load_key=load_key,
                num_ctx=num_ctx,
                size_mb=size_mb,
                keep_alive_s=self.default_keep_alive_s if keep_alive is None else keep_alive,
                in_flight=1,
            )
            self._runners[model.name] = runner
            self.loads += 1
            return runner, True

    def release(self, runner: Runner) -> None:
        """A request finished: start the idle timer, or unload at once for keep_alive 0."""
        with self._lock:
            runner.in_flight -= 1
            runner.last_used = self._now()
            if runner.in_flight > 0 or self._runners.get(runner.model.name) is not runner:
                return
            if runner.keep_alive_s == 0:
                del self._runners[runner.model.name]
            else:
                runner.deadline = self._now() + runner.keep_alive_s

    def unload(self, model: FakeModel) -> None:
        """keep_alive 0 with no messages: unload now, or when the running request ends."""
        with self._lock:
            self._expire()
            runner = self._runners.get(model.name)
            if runner is None:
                return
            runner.keep_alive_s = 0
            if runner.in_flight == 0:
                del self._runners[model.name]

    def tags(self) -> dict[str, Any]:
        """The body of `GET /api/tags`."""
        return {
            "models": [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": "2025-06-02T10:14:03.551201+02:00",
                    "size": int(m.weights_mb * MIB),
                    "digest": m.digest,
                    "details": m.details(),
                }
                for m in self.models.values()
            ]
        }

    def ps(self) -> dict[str, Any]:
        """The body of `GET /api/ps`, longest remaining lifetime first."""
        with self._lock:
            self._expire()
            now = self._now()
            entries = [
                (r.keep_alive_s if r.deadline is None else r.deadline - now, r)
                for r in self._runners.values()
            ]
        entries.sort(key=lambda pair: pair[0], reverse=True)
        return {
            "models": [
                {
                    "name": r.model.name,
                    "model": r.model.name,
                    "size": int(r.size_mb * MIB),
                    "size_vram": 0,
                    "digest": r.model.digest,
                    "details": r.model.details(),
                    "expires_at": self._wall(remaining),
                    "context_length": r.num_ctx,
                }
                for remaining, r in entries
            ]
        }

    def show(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body of `POST /api/show`."""
        model = self.find_model(body.get("model") or body.get("name"))
        return {
            "license": "",
            "modelfile": f"FROM {model.name}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": model.details(),
            "model_info": model.model_info(),
            "capabilities": ["completion"],
            "modified_at": "2025-06-02T10:14:03.551201+02:00",
        }

    # -- internals (called with self._lock held) -----------------------------------------------

    def _now(self) -> float:
        return time.monotonic() + self._clock_offset

    def _wall(self, seconds_from_now: float) -> str:
        moment = datetime.now(UTC) + timedelta(seconds=self._clock_offset + seconds_from_now)
        return moment.isoformat().replace("+00:00", "Z")

    def _expire(self) -> None:
        now = self._now()
        expired = [
            name
            for name, r in self._runners.items()
            if r.deadline is not None and r.deadline <= now
        ]
        for name in expired:
            del self._runners[name]

    def _make_room(self, size_mb: float) -> None:
        if self.memory_limit_mb is None:
            return
        if self.evict_to_fit:
            idle = sorted(
                (r for r in self._runners.values() if r.in_flight == 0),
                key=lambda r: r.last_used,
            )
            while idle and self._used_mb() + size_mb > self.memory_limit_mb:
                del self._runners[idle.pop(0).model.name]
        available = self.memory_limit_mb - self._used_mb()
        if size_mb > available:
            raise HttpError(
                500,
                f"model requires more system memory ({human_bytes2(size_mb * MIB)}) than is"
                f" available ({human_bytes2(max(available, 0.0) * MIB)})",
            )

    def _used_mb(self) -> float:
        return sum(r.size_mb for r in self._runners.values())
