"""HTTP plumbing the server backends share: client construction, error bodies, transport failures.

Every HTTP backend builds its `httpx.AsyncClient` here so the timeout policy is the same for all of
them: a short connect timeout, a bounded read timeout for the small JSON endpoints, and no read
timeout while an answer streams (the engine enforces its own waits, for the first token and then
between tokens). What is read from a server is bounded too: a streamed line (`MAX_LINE_BYTES`) and
a streamed error body (`ERROR_BODY_LIMIT_BYTES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from nemo_tui.backends.base import BackendError, BackendUnavailable, StreamBroken

SMALL_READ_TIMEOUT_S = 10.0
"""Read timeout for the small JSON endpoints (version, model lists, metadata)."""
_WRITE_POOL_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 1.0
"""How long to wait for the end of a streamed body once its last message has arrived."""
_DECODER = json.JSONDecoder()
_JSON_WHITESPACE = " \t\n\r"
_UNANSWERED = "without sending a response"
"""What httpcore says when a request's connection closes before any response."""
_UNDECODABLE_FIX = "check that the URL points at the right server, and any proxy in between"
_CLIPPED = "…"
"""Ends a message cut at its length limit."""
_SHORTEST_MASKED = 4
_MAX_MESSAGE_CHARS = 300
"""Raw error bodies (an HTML proxy page, a traceback) are cut to this length for display."""
_MAX_SERVER_MESSAGE_CHARS = 1000
"""A message a server wrote for people (the `error` of a JSON body) is kept longer than raw text,
but one that carries a whole log is still cut for display."""
ERROR_BODY_LIMIT_BYTES = 64 * 1024
"""Most of an error body that is read. Real error bodies are JSON objects or proxy pages of a
few KB; past this the body is cut (and shown clipped) instead of being read to its end, which a
misbehaving server or proxy may never reach."""
MAX_LINE_BYTES = 4 * 1024 * 1024
"""Longest line a streamed answer may have. Each line carries one JSON event, and the largest any
server sends (a final message with counts, usage and timings) is a few KB, so 4 MiB leaves room
for anything real while a server that never ends its line costs a bounded amount of memory."""


def make_client(
    base_url: str,
    *,
    connect_timeout_s: float,
    read_timeout_s: float = SMALL_READ_TIMEOUT_S,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """Build the client a backend uses for all its requests.

    Args:
        base_url: Prefix for relative request paths.
        connect_timeout_s: How long to wait for the TCP connection.
        read_timeout_s: Read timeout for non-streaming requests.
        transport: A transport to use instead of the network, e.g. `httpx.MockTransport` in tests.
        headers: Headers sent with every request (authorization goes here, never in the URL).
    """
    if transport is None:
        transport = httpx.AsyncHTTPTransport(verify=_tls_context_for(base_url))
    return httpx.AsyncClient(
        base_url=base_url,
        transport=StaleConnectionRetry(transport),
        headers=dict(headers or {}),
        timeout=request_timeout(connect_timeout_s, read_timeout_s),
    )


def _tls_context_for(base_url: str) -> ssl.SSLContext | bool:
    """Verify TLS with the system's trust store for https; for plain http, trust nothing.

    Loading the CA bundle costs about 3 MB of resident memory, and a client for a local
    `http://` server (Ollama, a llama.cpp worker) never makes a TLS connection: it gets a context
    with no trust anchors, so were it ever asked to, the handshake would fail rather than go
    unverified.
    """
    if uses_tls(base_url):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def uses_tls(url: str) -> bool:
    """Whether requests to `url` are encrypted (an `https://` address)."""
    return url.lower().startswith("https://")


class StaleConnectionRetry(httpx.AsyncBaseTransport):
    """Send a request once more when the kept-alive connection it went out on was already closed.

    A server may close an idle connection just as a request is sent on it (its keep-alive
    timeout), and llama.cpp's llama-server closes the connection after every streamed answer
    while advertising keep-alive. The request then fails before any response with "Server
    disconnected without sending a response": the server never read it, so it is sent again,
    once, on a new connection.

    Args:
        inner: The transport that sends requests.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`, and once more if its connection had been closed under it."""
        try:
            return await self._inner.handle_async_request(request)
        except httpx.RemoteProtocolError as exc:
            if _UNANSWERED not in str(exc):
                raise
            return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


def request_timeout(connect_timeout_s: float, read_timeout_s: float | None) -> httpx.Timeout:
    """Timeouts for one request; `read_timeout_s=None` means no read limit.

    Streamed answers use no read limit: a model can think for a long time before and between
    tokens, and the engine decides how long to wait for the first one and for each next one, and
    cancels the stream.
    """
    return httpx.Timeout(
        read_timeout_s,
        connect=connect_timeout_s,
        write=_WRITE_POOL_TIMEOUT_S,
        pool=_WRITE_POOL_TIMEOUT_S,
    )


@dataclass(frozen=True)
class ErrorBody:
    """What a server said in an error body, whatever shape it used.

    Attributes:
        message: The human-readable text; never empty.
        type: The error type (`invalid_request_error`, `exceed_context_size_error`, ...).
        code: The error code as text (`context_length_exceeded`, `400`), when given.
        status: The Google RPC status (`RESOURCE_EXHAUSTED`), when given.
        details: The Google RPC `details` list, when given.
    """

    message: str
    type: str | None = None
    code: str | None = None
    status: str | None = None
    details: tuple[Mapping[str, Any], ...] = ()


def parse_error_body(
    body: bytes | str | Mapping[str, Any], *, http_status: int | None = None
) -> ErrorBody:
    """Read an error body in any of the shapes the servers use.

    Handles `{"error": "text"}` (Ollama), `{"error": {"message", "type", "code", ...}}` (OpenAI,
    llama.cpp, vLLM, Google RPC), the flat `{"object": "error", "message": ...}` of older vLLM,
    FastAPI's `{"detail": ...}`, and plain text.

    Args:
        body: The raw body, or an already decoded JSON object (a mid-stream error event).
        http_status: Used for the message when the body is empty.
    """
    if isinstance(body, Mapping):
        data: Any = body
        text = ""
    else:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, str) and error:
            return ErrorBody(message=_clip(error, _MAX_SERVER_MESSAGE_CHARS))
        if isinstance(error, Mapping):
            return _from_error_object(error, http_status)
        if data.get("object") == "error" and data.get("message"):
            return _from_error_object(data, http_status)
        detail = data.get("detail")
        if isinstance(detail, str) and detail:
            return ErrorBody(message=_clip(detail, _MAX_SERVER_MESSAGE_CHARS))
        if detail:
            return ErrorBody(message=_clip(json.dumps(detail)))
    return ErrorBody(message=_clip(text.strip()) or _status_text(http_status))


def _from_error_object(error: Mapping[str, Any], http_status: int | None) -> ErrorBody:
    details = error.get("details")
    code = error.get("code")
    message = str(error.get("message") or "")
    return ErrorBody(
        message=_clip(message, _MAX_SERVER_MESSAGE_CHARS) or _status_text(http_status),
        type=_text_or_none(error.get("type")),
        code=None if code is None else str(code),
        status=_text_or_none(error.get("status")),
        details=tuple(d for d in details if isinstance(d, Mapping))
        if isinstance(details, list)
        else (),
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _clip(text: str, limit: int = _MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + _CLIPPED


def _status_text(status: int | None) -> str:
    if status is None:
        return "the server reported an error without a message"
    return f"HTTP {status} without a message"


async def read_error_body(response: httpx.Response) -> ErrorBody:
    """Read and parse the body of a failed response (streamed or not).

    At most `ERROR_BODY_LIMIT_BYTES` of a streamed body are read; a longer one is cut there,
    which leaves it unreadable as JSON, so it is shown as text, clipped.
    """
    try:
        body = response.content
    except httpx.ResponseNotRead:
        body = await _read_at_most(response, ERROR_BODY_LIMIT_BYTES)
    return parse_error_body(body[:ERROR_BODY_LIMIT_BYTES], http_status=response.status_code)


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The start of a streamed body, at least `limit` bytes of it when it is that long; the
    response is closed without reading the rest."""
    pieces: list[bytes] = []
    size = 0
    async for data in response.aiter_bytes():
        pieces.append(data)
        size += len(data)
        if size >= limit:
            break
    await response.aclose()
    return b"".join(pieces)


def decode_json(response: httpx.Response, backend: str) -> Any:
    """The JSON document of a successful response.

    Raises:
        BackendError: the body is not JSON (a proxy page, a different server on that port).
    """
    try:
        return response.json()
    except ValueError as exc:
        raise BackendError(
            f"{response.request.url.path} answered with something that is not JSON",
            backend=backend,
            status=response.status_code,
            fix="check that the URL points at the right server",
        ) from exc


def transport_error(
    exc: httpx.RequestError, *, backend: str, url: str, fix: str, streaming: bool
) -> BackendError:
    """Turn an httpx request failure into the typed error the engine acts on.

    Connection failures mean the backend is unavailable (the engine falls back). A read failure or
    dropped connection during a streamed answer means the answer is incomplete. A body that cannot
    be decoded (a wrong `Content-Encoding`, from the server or a proxy) is a broken response:
    a broken stream while answering, a backend error otherwise.

    Args:
        exc: What httpx raised.
        backend: The backend's name.
        url: The base URL, named in the message so the user sees where it tried.
        fix: How to get the server running (shown when it cannot be reached).
        streaming: True when the failure happened while an answer was being streamed.
    """
    problem = connection_problem(exc)
    if isinstance(exc, httpx.DecodingError) and not streaming:
        return BackendError(
            f"{url} answered with a body that cannot be decoded ({problem})",
            backend=backend,
            fix=_UNDECODABLE_FIX,
        )
    if streaming and isinstance(
        exc, httpx.ReadTimeout | httpx.RemoteProtocolError | httpx.ReadError | httpx.DecodingError
    ):
        return StreamBroken(
            f"the answer from {url} stopped before it was complete ({problem})", backend=backend
        )
    if isinstance(exc, httpx.ReadTimeout):
        return BackendUnavailable(
            f"{url} did not answer in time ({problem})",
            backend=backend,
            fix="the server may be busy loading a model; try again",
        )
    return BackendUnavailable(f"cannot connect to {url}: {problem}", backend=backend, fix=fix)


def secret_or_none(value: str | None) -> str | None:
    """An API key as it may be sent: without the whitespace or line end a `.env` file or a
    quoted YAML value leaves around it; None when nothing is left."""
    stripped = (value or "").strip()
    return stripped or None


def scrub(text: str, secret: str | None) -> str:
    """`text` with `secret` replaced by `***`, for anything a server or httpx might echo.

    A message clipped in the middle of an echoed key ends with the key's first characters and
    `…`; those are masked too, from four characters on (shorter starts, like `sk-` or `AIza`,
    are the same for every key of a kind and give nothing away).
    """
    if not secret:
        return text
    text = text.replace(secret, "***")
    if text.endswith(_CLIPPED):
        kept = text[: -len(_CLIPPED)]
        for length in range(min(len(secret) - 1, len(kept)), _SHORTEST_MASKED - 1, -1):
            if kept.endswith(secret[:length]):
                return kept[:-length] + "***" + _CLIPPED
    return text


def probe_failure(exc: httpx.RequestError, fix: str) -> str:
    """Why a health probe failed, with what to do: `fix` when the server could not be reached,
    a check of the address when something answered with a body that cannot be decoded."""
    if isinstance(exc, httpx.DecodingError):
        fix = _UNDECODABLE_FIX
    return f"{connection_problem(exc)} — {fix}"


def connection_problem(exc: httpx.RequestError) -> str:
    """A short reason for a request failure: `connection refused`, `connect timeout`, ..."""
    if isinstance(exc, httpx.LocalProtocolError):
        # Its text quotes the offending header, which may be an API key.
        return (
            "the request could not be sent: a header value (such as the API key) holds a"
            " character HTTP does not allow"
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return "read timeout"
    text = str(exc)
    if isinstance(exc, httpx.ConnectError):
        lowered = text.lower()
        # anyio reports a refused loopback connection as "All connection attempts failed".
        if "refused" in lowered or "all connection attempts failed" in lowered:
            return "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"connection dropped: {text}" if text else "connection dropped"
    if isinstance(exc, httpx.DecodingError):
        return f"undecodable body: {text}" if text else "undecodable body"
    return text or type(exc).__name__


async def iter_line_batches(
    response: httpx.Response, *, backend: str
) -> AsyncGenerator[list[bytes], None]:
    """The lines of a streamed body as bytes, one list per network read.

    Lines end at `\n`, `\r\n` or `\r`, and the last one needs no line end. Splitting bytes and
    handing over whole reads costs far less per line than `aiter_lines`, which decodes all the
    text and passes lines through two generators one by one. A `\r\n` split across two reads
    gives one extra blank line, which every caller skips.

    A line that spans reads is gathered in a buffer that only grows at its end, and split off
    once it ends, so the work stays linear in its length (re-splitting everything read so far
    at every read would make it quadratic); a line longer than `MAX_LINE_BYTES` ends the stream.

    Args:
        response: The streamed response.
        backend: The backend's name, for the error.

    Raises:
        StreamBroken: a line is longer than `MAX_LINE_BYTES`; the lines before it are yielded.
    """
    unfinished = bytearray()
    async for data in response.aiter_bytes():
        if b"\n" not in data and b"\r" not in data:
            unfinished += data
            if len(unfinished) > MAX_LINE_BYTES:
                raise _line_too_long(response, backend)
            continue
        if unfinished:
            unfinished += data
            data = bytes(unfinished)
            unfinished.clear()
        lines = data.splitlines()
        if len(data) > MAX_LINE_BYTES:
            too_long = next((i for i, line in enumerate(lines) if len(line) > MAX_LINE_BYTES), None)
            if too_long is not None:
                if too_long:
                    yield lines[:too_long]
                raise _line_too_long(response, backend)
        if not data.endswith((b"\n", b"\r")):
            unfinished += lines.pop()
        if lines:
            yield lines
    if unfinished:
        yield [bytes(unfinished)]


def _line_too_long(response: httpx.Response, backend: str) -> StreamBroken:
    url = response.request.url
    return StreamBroken(
        f"{url.scheme}://{url.netloc.decode()} sent a line longer than"
        f" {MAX_LINE_BYTES // (1024 * 1024)} MiB in its answer stream, so the rest of the answer"
        " was not read",
        backend=backend,
        fix="check that the URL points at a model server, and check that server's log",
    )


async def drain(rest: AsyncIterator[object]) -> None:
    """Read what is left of a streamed body so its connection carries the next request.

    Servers send their final message before the end of the body; a response closed there is
    incomplete, so httpx drops the connection and the next request pays for a new one. A server
    that does not end the body within `DRAIN_TIMEOUT_S` is hung up on, and a failure while
    draining (a dropped connection, a line past `MAX_LINE_BYTES`) is ignored: the answer is
    already complete.

    Args:
        rest: The iterator that was reading the body, positioned after the final message.
    """
    with contextlib.suppress(TimeoutError, httpx.RequestError, StreamBroken):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in rest:
                pass


async def iter_sse_data(response: httpx.Response, *, backend: str) -> AsyncGenerator[str, None]:
    """The payloads of the `data:` lines of a server-sent-events response.

    Blank separators, `: ping` comments and other fields are skipped. Every server nemo-tui talks
    to puts one JSON document on one `data:` line, so each line is yielded on its own.

    Args:
        response: The streamed response.
        backend: The backend's name, for the error.

    Raises:
        StreamBroken: a line is longer than `MAX_LINE_BYTES`.
    """
    async for lines in iter_line_batches(response, backend=backend):
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip().decode("utf-8", errors="replace")


def parse_stream_json(payload: str | bytes, *, backend: str) -> dict[str, Any]:
    """Decode one streamed JSON object.

    Raises:
        StreamBroken: the payload is not a JSON object.
    """
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    text = text.strip(_JSON_WHITESPACE)
    try:
        # `raw_decode` on stripped text skips the two whitespace regex matches `json.loads`
        # makes around the document: a third of the time a short streamed line takes.
        data, end = _DECODER.raw_decode(text)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except ValueError as exc:
        raise StreamBroken(
            f"unreadable line in the answer stream: {_shown(payload)!r}", backend=backend
        ) from exc
    if not isinstance(data, dict):
        raise StreamBroken(
            f"unexpected line in the answer stream: {_shown(payload)!r}", backend=backend
        )
    return data


def _shown(payload: str | bytes) -> str:
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    return _clip(text)
