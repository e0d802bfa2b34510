"""A fake Ollama server that speaks the native wire format over a real loopback socket.

It follows the reference (llm-backends.md §1) closely enough for nemo-tui's Ollama client to be
tested end to end, without a model or a GPU:

- `GET|HEAD /`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/chat`, `/api/generate`;
- NDJSON streaming with chunked transfer encoding, one whitespace-separated word per token, taken
  from a fixed text so every run streams the same answer;
- `keep_alive` parsed like Go's `api.Duration` (§1.7), idle expiry measured from the end of the
  last request, preload (`done_reason: "load"`) and unload (`done_reason: "unload"`);
- a reload whenever a load option (`num_ctx`, `num_batch`, `use_mmap`, `num_thread`) changes;
- memory accounting: a loaded model takes its weights plus an f16 KV cache for its `num_ctx`,
  computed from the same architecture figures `/api/show` reports, and a model that does not fit
  next to the others under `memory_limit_mb` is refused with Ollama's exact 500 message (§1.10);
- silent prompt truncation to `num_ctx`, as Ollama does by default;
- fault injection (`fail_next`) and `stop()`/`start()` on the same port.

The clock is the server's own (`advance_clock`), so expiry can be tested without sleeping.

Usage, from pytest or a bench script::

    with FakeOllama(memory_limit_mb=4096) as server:
        client = OllamaBackend(server.url)
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
FOREVER_S = 292 * 365 * 24 * 3600.0
"""Go stores a negative keep_alive as the largest duration, about 292 years (§1.4)."""

ANSWER_TEXT = (
    "The quick brown fox jumps over the lazy dog while the patient model streams one word"
    " at a time, so every test sees the same answer in the same order and can count each"
    " token it was sent before the stream ends."
)
ANSWER_WORDS = tuple(ANSWER_TEXT.split(" "))
PROMPT_OVERHEAD_TOKENS = 4
"""Template tokens the fake counts per message on top of its words."""


class Fault(StrEnum):
    """A failure `FakeOllama.fail_next` injects into the next chat or generate request."""

    BUSY = "busy"
    """503 with the scheduler's queue-full message."""
    ERROR_500 = "error_500"
    """500 before any byte of the answer."""
    ERROR_LINE = "error_line"
    """200, a few tokens, then an `{"error": ...}` line."""
    GARBAGE_LINE = "garbage_line"
    """200, a few tokens, then a line that is not JSON."""
    STALL = "stall"
    """200 headers, then silence for `seconds` before the first token."""
    DROP = "drop"
    """200, a few tokens, then the socket is closed without ending the chunked body."""
    OOM_LINE = "oom_line"
    """200, a few tokens, then the runner-died line Ollama sends when it runs out of memory."""


BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
ERROR_500_MESSAGE = "timed out waiting for llama runner to start - progress 0.00 - "
ERROR_LINE_MESSAGE = "an error was encountered while running the model: unexpected EOF"
OOM_LINE_MESSAGE = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an"
    " internal error, check ollama server logs for details"
)


@dataclass(frozen=True)
class FakeModel:
    """A model the fake serves; its memory use follows from its architecture figures."""

    name: str
    weights_mb: float
    """Weights resident once loaded; also the on-disk size `/api/tags` reports."""
    family: str = "llama"
    parameter_size: str = "1.1B"
    parameter_count: int = 1_100_000_000
    quantization: str = "Q4_0"
    file_type: int = 2
    context_length: int = 2048
    """Trained context; a larger `num_ctx` is clamped to it (Ollama v0.9.3+)."""
    block_count: int = 22
    embedding_length: int = 2048
    head_count: int = 32
    head_count_kv: int = 4
    overhead_mb: float = 0.0
    """Compute buffers and other fixed costs added to every load."""

    def kv_mb(self, num_ctx: int) -> float:
        """The f16 KV cache for `num_ctx` tokens (reference §2.2)."""
        head_dim = self.embedding_length // self.head_count
        kv_bytes = 2 * self.block_count * num_ctx * self.head_count_kv * head_dim * 2
        return kv_bytes / MIB

    def memory_mb(self, num_ctx: int) -> float:
        """Everything the model holds once loaded with `num_ctx`."""
        return self.weights_mb + self.kv_mb(num_ctx) + self.overhead_mb

    def model_info(self) -> dict[str, Any]:
        """The GGUF key/values `/api/show` returns."""
        arch = self.family
        return {
            "general.architecture": arch,
            "general.file_type": self.file_type,
            "general.parameter_count": self.parameter_count,
            f"{arch}.block_count": self.block_count,
            f"{arch}.embedding_length": self.embedding_length,
            f"{arch}.attention.head_count": self.head_count,
            f"{arch}.attention.head_count_kv": self.head_count_kv,
            f"{arch}.context_length": self.context_length,
            "tokenizer.ggml.tokens": [],
        }

    def details(self) -> dict[str, Any]:
        """The `details` object shared by tags, ps and show."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    @property
    def digest(self) -> str:
        """A stable fake manifest digest."""
        return (self.name.encode().hex() * 64)[:64]


DEFAULT_MODELS: tuple[FakeModel, ...] = (
    FakeModel("tinyllama:1.1b", weights_mb=608.0),
    FakeModel(
        "phi3:mini",
        weights_mb=2100.0,
        family="phi3",
        parameter_size="3.8B",
        parameter_count=3_821_079_552,
        context_length=4096,
        block_count=32,
        embedding_length=3072,
        head_count=32,
        head_count_kv=32,
    ),
    FakeModel(
        "llama3.2:3b",
        weights_mb=1925.0,
        parameter_size="3.2B",
        parameter_count=3_212_749_888,
        quantization="Q4_K_M",
        file_type=15,
        context_length=131072,
        block_count=28,
        embedding_length=3072,
        head_count=24,
        head_count_kv=8,
    ),
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    body: Any
    """The parsed JSON body; None when there was none or it was not JSON."""


@dataclass
class _Runner:
    """A loaded model: what it was loaded with and when it goes away."""

    model: FakeModel
    load_key: tuple[Any, ...]
    num_ctx: int
    size_mb: float
    keep_alive_s: float
    in_flight: int = 0
    deadline: float | None = None
    """Server-clock time the idle timer fires; None while a request uses it."""


@dataclass
class _PlannedFault:
    kind: Fault
    seconds: float
    after_tokens: int
    message: str | None


class _HttpError(Exception):
    """Answer with this status and `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_SCALE = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (`"1h30m"`, `"300ms"`, `"-1m"`, `"0"`).

    Raises:
        ValueError: with Go's own message, e.g. `time: missing unit in duration "3600"`.
    """
    body = text
    sign = 1.0
    if body and body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            if re.fullmatch(r"\d+\.?\d*", body[position:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_SCALE[match.group(2)]
        position = match.end()
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """Seconds a `keep_alive` JSON value asks for; None when absent; FOREVER_S when negative.

    Raises:
        _HttpError: 400 for a string without unit, a bad duration, or a bool/object.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _HttpError(400, f"Unsupported type: '{_go_type(value)}'")
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise _HttpError(400, str(exc)) from exc
    else:
        seconds = float(value)
    return FOREVER_S if seconds < 0 else seconds


def _go_type(value: Any) -> str:
    return {bool: "bool", dict: "map", list: "slice"}.get(type(value), type(value).__name__)


def human_bytes2(size: float) -> str:
    """Ollama's `HumanBytes2`: one decimal and a binary unit (`2.1 GiB`)."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """How many prompt tokens the fake counts: words plus a few template tokens per message."""
    return sum(len(str(m.get("content", "")).split()) + PROMPT_OVERHEAD_TOKENS for m in messages)


def _int_option(options: dict[str, Any], name: str, default: int | None) -> int | None:
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _HttpError(500, f'option "{name}" must be of type integer')
    return int(value)


class FakeOllama:
    """An Ollama-API server on a loopback port, in a background thread.

    Args:
        models: What `/api/tags` lists and the server can load.
        memory_limit_mb: Memory all loaded models may use together; None means unlimited.
        tokens_per_s: Streaming rate; 0 streams as fast as possible.
        cold_load_s: How long a cold load or a reload really takes (and is reported).
        default_keep_alive_s: Used on first load when a request has no `keep_alive` (5m).
        default_num_ctx: `num_ctx` when a request gives none.
        answer_tokens: Length of an answer when `num_predict` does not cut it short.
        evict_to_fit: Evict idle models (least recently used first) to make room, as the
            real scheduler does; off by default so a refusal is easy to provoke.
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
        self.handler_errors: list[BaseException] = []
        """Unexpected exceptions inside the fake itself (a test can assert there are none)."""
        self.port = 0
        self._lock = threading.Lock()
        self._runners: dict[str, _Runner] = {}
        self._faults: list[_PlannedFault] = []
        self._clock_offset = 0.0
        self._server: ThreadingHTTPServer | None = None
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
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
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
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
            self._runners.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs for tests ---------------------------------------------------------------------

    def fail_next(
        self,
        kind: Fault | str,
        *,
        seconds: float = 2.0,
        after_tokens: int = 3,
        message: str | None = None,
    ) -> None:
        """Make the next chat or generate request fail in the given way.

        Args:
            kind: Which failure (see `Fault`).
            seconds: How long a `stall` lasts before tokens flow.
            after_tokens: Tokens sent before a mid-stream failure.
            message: Replaces the default error text.
        """
        with self._lock:
            self._faults.append(_PlannedFault(Fault(kind), seconds, after_tokens, message))

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward, so keep_alive timers fire without waiting."""
        with self._lock:
            self._clock_offset += seconds

    def loaded(self) -> dict[str, float]:
        """Loaded model names and their memory in MB, after expiring idle ones."""
        with self._lock:
            self._expire()
            return {name: r.size_mb for name, r in self._runners.items()}

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests for one path, e.g. `/api/chat`."""
        return [r for r in self.requests if r.path == path]

    # -- model scheduling (all called with self._lock held) ------------------------------------

    def _now(self) -> float:
        return time.monotonic() + self._clock_offset

    def _wall(self, seconds_from_now: float) -> str:
        moment = datetime.now(UTC) + timedelta(seconds=self._clock_offset + seconds_from_now)
        return moment.isoformat().replace("+00:00", "Z")

    def _expire(self) -> None:
        now = self._now()
        for name in [
            n for n, r in self._runners.items() if r.deadline is not None and r.deadline <= now
        ]:
            del self._runners[name]

    def _model(self, name: Any) -> FakeModel:
        if not name:
            raise _HttpError(400, "model is required")
        model = self.models.get(str(name))
        if model is None:
            raise _HttpError(404, f"model '{name}' not found")
        return model

    def _acquire(
        self, model: FakeModel, options: dict[str, Any], keep_alive: float | None
    ) -> tuple[_Runner, bool]:
        """The runner for a request, loading or reloading it; True when a load happened."""
        self._expire()
        requested_ctx = _int_option(options, "num_ctx", self.default_num_ctx) or 0
        num_ctx = max(4, min(requested_ctx, model.context_length))
        use_mmap = options.get("use_mmap")
        if use_mmap is not None and not isinstance(use_mmap, bool):
            raise _HttpError(500, 'option "use_mmap" must be of type boolean')
        load_key = (
            num_ctx,
            _int_option(options, "num_batch", 512),
            use_mmap,
            _int_option(options, "num_thread", 0),
        )
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
        runner = _Runner(
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

    def _make_room(self, size_mb: float) -> None:
        if self.memory_limit_mb is None:
            return
        if self.evict_to_fit:
            idle = sorted(
                (r for r in self._runners.values() if r.in_flight == 0),
                key=lambda r: r.deadline or 0.0,
            )
            while idle and self._used_mb() + size_mb > self.memory_limit_mb:
                del self._runners[idle.pop(0).model.name]
        available = self.memory_limit_mb - self._used_mb()
        if size_mb > available:
            raise _HttpError(
                500,
                f"model requires more system memory ({human_bytes2(size_mb * MIB)}) than is"
                f" available ({human_bytes2(max(available, 0.0) * MIB)})",
            )

    def _used_mb(self) -> float:
        return sum(r.size_mb for r in self._runners.values())

    def _release(self, runner: _Runner) -> None:
        runner.in_flight -= 1
        if runner.in_flight > 0 or self._runners.get(runner.model.name) is not runner:
            return
        if runner.keep_alive_s == 0:
            del self._runners[runner.model.name]
        else:
            runner.deadline = self._now() + runner.keep_alive_s

    def _unload(self, model: FakeModel) -> None:
        self._expire()
        runner = self._runners.get(model.name)
        if runner is None:
            return
        runner.keep_alive_s = 0
        if runner.in_flight == 0:
            del self._runners[model.name]

    def _take_fault(self) -> _PlannedFault | None:
        return self._faults.pop(0) if self._faults else None

    # -- endpoint bodies ---------------------------------------------------------------------

    def tags(self) -> dict[str, Any]:
        """`GET /api/tags`."""
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
        """`GET /api/ps`, longest remaining lifetime first."""
        with self._lock:
            self._expire()
            now = self._now()
            entries = []
            for runner in self._runners.values():
                if runner.deadline is None:
                    remaining = runner.keep_alive_s
                else:
                    remaining = runner.deadline - now
                entries.append((remaining, runner))
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
        """`POST /api/show`."""
        model = self._model(body.get("model") or body.get("name"))
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOllama

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-stream is part of the tests; anything else is a bug in the fake.
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError | OSError):
            self.fake.handler_errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output is no place for access logs."""

    def setup(self) -> None:
        super().setup()
        fake = self.server.fake
        with fake._lock:
            fake._connections.add(self.connection)

    def finish(self) -> None:
        fake = self.server.fake
        with fake._lock:
            fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # -- plumbing ----------------------------------------------------------------------------

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        self.server.fake.requests.append(RecordedRequest(self.command, self.path, body))
        if not raw:
            raise _HttpError(400, "missing request body")
        if not isinstance(body, dict):
            raise _HttpError(400, "invalid character in request body")
        return body

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, error: _HttpError) -> None:
        self._send(error.status, {"error": error.message})

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, payload: Any) -> None:
        line = (payload if isinstance(payload, str) else json.dumps(payload)) + "\n"
        data = line.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routes ------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        fake = self.server.fake
        fake.requests.append(RecordedRequest(self.command, self.path, None))
        if self.path == "/":
            self._send(200, "Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/version":
            self._send(200, {"version": fake.version})
        elif self.path == "/api/tags":
            self._send(200, fake.tags())
        elif self.path == "/api/ps":
            self._send(200, fake.ps())
        else:
            self._send(404, "404 page not found", "text/plain")

    def do_POST(self) -> None:
        try:
            body = self._read_json()
            if self.path == "/api/show":
                self._send(200, self.server.fake.show(body))
            elif self.path in ("/api/chat", "/api/generate"):
                self._generate(body, chat=self.path == "/api/chat")
            else:
                self._send(404, "404 page not found", "text/plain")
        except _HttpError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def _generate(self, body: dict[str, Any], *, chat: bool) -> None:
        fake = self.server.fake
        started = time.perf_counter()
        stream = body.get("stream", True) is not False
        options = body.get("options") or {}
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        if chat:
            messages = body.get("messages") or []
        else:
            prompt = body.get("prompt") or ""
            messages = [{"role": "user", "content": prompt}] if prompt else []
        with fake._lock:
            model = fake._model(body.get("model"))
            fault = fake._take_fault()
        if fault is not None and fault.kind is Fault.BUSY:
            raise _HttpError(503, fault.message or BUSY_MESSAGE)
        if fault is not None and fault.kind is Fault.ERROR_500:
            raise _HttpError(500, fault.message or ERROR_500_MESSAGE)
        if not messages and keep_alive == 0:
            with fake._lock:
                fake._unload(model)
            self._reply(model, stream, chat, [], {"done": True, "done_reason": "unload"})
            return
        with fake._lock:
            runner, cold = fake._acquire(model, options, keep_alive)
        try:
            if cold and fake.cold_load_s > 0:
                fake._stopping.wait(fake.cold_load_s)
            load_s = time.perf_counter() - started
            if not messages:
                final = {"done": True, "done_reason": "load", "load_duration": _ns(load_s)}
                self._reply(model, stream, chat, [], final)
                return
            self._answer(runner, messages, options, stream, chat, fault, started, load_s)
        finally:
            with fake._lock:
                fake._release(runner)

    def _answer(
        self,
        runner: _Runner,
        messages: list[dict[str, Any]],
        options: dict[str, Any],
        stream: bool,
        chat: bool,
        fault: _PlannedFault | None,
        started: float,
        load_s: float,
    ) -> None:
        fake = self.server.fake
        # Ollama cuts an over-long prompt from the front to fit num_ctx and says nothing.
        kept_prompt = min(prompt_tokens(messages), runner.num_ctx)
        num_predict = _int_option(options, "num_predict", -1)
        limit = fake.answer_tokens
        done_reason = "stop"
        if num_predict is not None and 0 <= num_predict < limit:
            limit, done_reason = num_predict, "length"
        words = [ANSWER_WORDS[i % len(ANSWER_WORDS)] for i in range(limit)]
        pieces = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
        prompt_done = time.perf_counter()
        if not stream:
            self._sleep_tokens(len(pieces))
            self._reply(
                runner.model,
                False,
                chat,
                pieces,
                _final(done_reason, started, load_s, kept_prompt, prompt_done, len(pieces)),
            )
            return
        self._start_stream()
        if fault is not None and fault.kind is Fault.STALL:
            fake._stopping.wait(fault.seconds)
        try:
            for index, piece in enumerate(pieces):
                if fault is not None and index == fault.after_tokens and self._inject(fault):
                    return
                self._sleep_tokens(1)
                self._chunk(_chunk(runner.model.name, chat, piece))
            if fault is not None and fault.after_tokens >= len(pieces) and self._inject(fault):
                return
            final = _final(done_reason, started, load_s, kept_prompt, prompt_done, len(pieces))
            self._chunk(_chunk(runner.model.name, chat, "") | final)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            with fake._lock:
                fake.disconnects += 1
            self.close_connection = True

    def _inject(self, fault: _PlannedFault) -> bool:
        """Send a mid-stream failure; True when the stream is over."""
        if fault.kind is Fault.ERROR_LINE:
            self._chunk({"error": fault.message or ERROR_LINE_MESSAGE})
        elif fault.kind is Fault.OOM_LINE:
            self._chunk({"error": fault.message or OOM_LINE_MESSAGE})
        elif fault.kind is Fault.GARBAGE_LINE:
            self._chunk(fault.message or '{"model": "x", "message": {"content": "oops"')
        elif fault.kind is Fault.DROP:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return True
        else:
            return False
        self._end_stream()
        return True

    def _sleep_tokens(self, count: int) -> None:
        rate = self.server.fake.tokens_per_s
        if rate > 0:
            self.server.fake._stopping.wait(count / rate)

    def _reply(
        self,
        model: FakeModel,
        stream: bool,
        chat: bool,
        pieces: list[str],
        final: dict[str, Any],
    ) -> None:
        """One object: the whole answer (non-streaming) or a done-only stream."""
        payload = _chunk(model.name, chat, "".join(pieces)) | final
        if not stream:
            self._send(200, payload)
            return
        self._start_stream()
        self._chunk(payload)
        self._end_stream()


def _ns(seconds: float) -> int:
    return max(1, int(seconds * 1e9))


def _chunk(model: str, chat: bool, text: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if chat:
        payload["message"] = {"role": "assistant", "content": text}
    else:
        payload["response"] = text
    payload["done"] = False
    return payload


def _final(
    done_reason: str,
    started: float,
    load_s: float,
    prompt_count: int,
    prompt_done: float,
    eval_count: int,
) -> dict[str, Any]:
    now = time.perf_counter()
    return {
        "done": True,
        "done_reason": done_reason,
        "total_duration": _ns(now - started),
        "load_duration": _ns(load_s),
        "prompt_eval_count": prompt_count,
        "prompt_eval_duration": _ns(prompt_done - started - load_s),
        "eval_count": eval_count,
        "eval_duration": _ns(now - prompt_done),
    }
