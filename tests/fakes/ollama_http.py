"""The HTTP side of the fake Ollama server: routes, chunked NDJSON streaming, injected faults.

The state and the scheduling decisions live in `FakeOllama` (`ollama_server`); this module only
turns requests into calls on it and its answers into bytes on the socket, the way Go's net/http
does: HTTP/1.1 keep-alive, `Content-Length` on plain replies, chunked encoding on streams.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.fakes.ollama_wire import (
    ANSWER_WORDS,
    BUSY_MESSAGE,
    ERROR_500_MESSAGE,
    ERROR_LINE_MESSAGE,
    OOM_LINE_MESSAGE,
    FakeModel,
    Fault,
    HttpError,
    RecordedRequest,
    answer_chunk,
    final_fields,
    int_option,
    parse_keep_alive,
    prompt_tokens,
)

if TYPE_CHECKING:
    from tests.fakes.ollama_server import FakeOllama, PlannedFault, Runner

_HUNG_UP = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_GARBAGE = '{"model": "x", "message": {"content": "oops"'
_ENDLESS_PIECE_BYTES = 64 * 1024
_ENDLESS_LINE_BYTES = 256 * 1024 * 1024
"""Where the endless line gives up on a client that reads on and on."""


class OllamaHttpServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one `FakeOllama`.

    Args:
        address: Host and port to listen on; port 0 picks a free one.
        fake: The state every request reads and changes.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeOllama) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep unexpected handler exceptions for the test instead of printing them."""
        # A client hanging up is part of the tests; anything else is a bug in the fake.
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):
            self.fake.handler_errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Ollama (Go's net/http) sends with TCP_NODELAY; with Nagle on, the small writes of a stream
    # meet the client's delayed ACKs and stall 40 ms at a time.
    disable_nagle_algorithm = True
    server: OllamaHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output is no place for access logs."""

    def setup(self) -> None:
        super().setup()
        self.server.fake.connection_opened(self.connection)

    def finish(self) -> None:
        self.server.fake.connection_closed(self.connection)
        try:
            super().finish()
        except OSError:
            return

    # -- routes ------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        fake = self.server.fake
        fake.record(RecordedRequest(self.command, self.path, None))
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
        except HttpError as error:
            self._send(error.status, {"error": error.message})
        except _HUNG_UP:
            self.close_connection = True

    # -- chat and generate ----------------------------------------------------------------------

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
        model = fake.find_model(body.get("model"))
        fault = fake.take_fault()
        if fault is not None and fault.kind is Fault.BUSY:
            raise HttpError(503, fault.message or BUSY_MESSAGE)
        if fault is not None and fault.kind is Fault.ERROR_500:
            raise HttpError(500, fault.message or ERROR_500_MESSAGE)
        if not messages and keep_alive == 0:
            fake.unload(model)
            self._reply(model, stream, chat, {"done": True, "done_reason": "unload"})
            return
        runner, cold = fake.acquire(model, options, keep_alive)
        try:
            if cold:
                fake.pause(fake.cold_load_s)
            load_s = time.perf_counter() - started
            if not messages:
                # Ollama's load reply carries no timings, not even load_duration.
                self._reply(model, stream, chat, {"done": True, "done_reason": "load"})
                return
            self._answer(runner, messages, options, stream, chat, fault, started, load_s)
        finally:
            fake.release(runner)

    def _answer(
        self,
        runner: Runner,
        messages: list[dict[str, Any]],
        options: dict[str, Any],
        stream: bool,
        chat: bool,
        fault: PlannedFault | None,
        started: float,
        load_s: float,
    ) -> None:
        fake = self.server.fake
        # Ollama cuts an over-long prompt from the front to fit num_ctx and says nothing.
        kept_prompt = min(prompt_tokens(messages), runner.num_ctx)
        num_predict = int_option(options, "num_predict", -1)
        script = fake.next_answers.pop(0) if fake.next_answers else fake.answer
        if script is None:
            words = [ANSWER_WORDS[i % len(ANSWER_WORDS)] for i in range(fake.answer_tokens)]
            script = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
        limit, done_reason = len(script), "stop"
        if num_predict is not None and 0 <= num_predict < limit:
            limit, done_reason = num_predict, "length"
        pieces = list(script[:limit])
        name = runner.model.name
        prompt_done = time.perf_counter()
        if not stream:
            self._pace(len(pieces))
            final = final_fields(done_reason, started, load_s, kept_prompt, prompt_done, limit)
            self._send(200, answer_chunk(name, chat, "".join(pieces)) | final)
            return
        self._start_stream()
        if fault is not None and fault.kind is Fault.STALL:
            fake.pause(fault.seconds)
        try:
            for index, piece in enumerate(pieces):
                if fault is not None and index == fault.after_tokens and self._inject(fault):
                    return
                self._pace(1)
                self._chunk(answer_chunk(name, chat, piece))
            if fault is not None and fault.after_tokens >= len(pieces) and self._inject(fault):
                return
            final = final_fields(done_reason, started, load_s, kept_prompt, prompt_done, limit)
            self._chunk(answer_chunk(name, chat, "") | final)
            self._end_stream()
        except _HUNG_UP:
            fake.connection_closed(self.connection, mid_stream=True)
            self.close_connection = True

    def _inject(self, fault: PlannedFault) -> bool:
        """Send a mid-stream failure; True when the stream is over."""
        if fault.kind is Fault.STALL_MID:
            self.server.fake.pause(fault.seconds)
            return False
        if fault.kind is Fault.ENDLESS_LINE:
            self._endless_line()
            return True
        if fault.kind is Fault.ERROR_LINE:
            self._chunk({"error": fault.message or ERROR_LINE_MESSAGE})
        elif fault.kind is Fault.OOM_LINE:
            self._chunk({"error": fault.message or OOM_LINE_MESSAGE})
        elif fault.kind is Fault.GARBAGE_LINE:
            self._chunk(fault.message or _GARBAGE)
        elif fault.kind is Fault.DROP:
            # No terminating chunk: the client sees the body end mid-message.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return True
        else:
            return False
        self._end_stream()
        return True

    def _endless_line(self) -> None:
        """Send one line that never ends, until the client hangs up or the server stops (either
        makes a write raise); a client that reads on and on gets `_ENDLESS_LINE_BYTES`, then a
        cut body."""
        piece = b"x" * _ENDLESS_PIECE_BYTES
        chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
        for _ in range(_ENDLESS_LINE_BYTES // _ENDLESS_PIECE_BYTES):
            self.wfile.write(chunk)
            self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _pace(self, tokens: int) -> None:
        rate = self.server.fake.tokens_per_s
        if rate > 0:
            self.server.fake.pause(tokens / rate)

    def _reply(self, model: FakeModel, stream: bool, chat: bool, final: dict[str, Any]) -> None:
        """A load or unload answer: one object, as a stream or a plain JSON reply."""
        payload = answer_chunk(model.name, chat, "") | final
        if not stream:
            self._send(200, payload)
            return
        self._start_stream()
        self._chunk(payload)
        self._end_stream()

    # -- bytes on the wire -----------------------------------------------------------------------

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        self.server.fake.record(RecordedRequest(self.command, self.path, body))
        if not raw:
            raise HttpError(400, "missing request body")
        if not isinstance(body, dict):
            raise HttpError(400, "invalid character in request body")
        return body

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

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
