"""Helpers shared by the backend unit tests: a routing mock server and stream builders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx

from nemo_tui.backends.base import StreamEvent

Reply = httpx.Response | tuple[int, Any] | Callable[[httpx.Request], httpx.Response]


class MockServer:
    """Answers requests by `(method, path)` and records every request it received.

    A route's reply is a `(status, body)` pair (a dict/list is sent as JSON, bytes/str as is),
    a ready `httpx.Response`, or a callable taking the request. A list of replies is used in
    order, one per request, the last one repeating.
    """

    def __init__(self, routes: dict[tuple[str, str], Reply | list[Reply]] | None = None) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []
        for key, reply in (routes or {}).items():
            self.routes[key] = list(reply) if isinstance(reply, list) else [reply]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies of the requests sent to `path`."""
        return [json.loads(r.content) for r in self.requests if r.url.path == path]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        replies = self.routes.get((request.method, request.url.path))
        if replies is None:
            return httpx.Response(404, text="404 page not found")
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        if isinstance(reply, httpx.Response):
            return reply
        status, body = reply
        if isinstance(body, bytes | str):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)


def refuse(request: httpx.Request) -> httpx.Response:
    """What httpx raises when nothing listens on the port."""
    raise httpx.ConnectError("All connection attempts failed", request=request)


def connect_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("timed out", request=request)


def ndjson(*objects: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def sse(*events: dict[str, Any] | str, newline: str = "\n") -> bytes:
    """Server-sent events: each a `data:` line and a blank line; strings are sent raw."""
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append(f"data: {data}{newline}{newline}")
    return "".join(out).encode()


class TrackedStream(httpx.AsyncByteStream):
    """A response body sent in pieces, remembering whether the client closed it.

    Args:
        chunks: The pieces.
        then_raise: Raised after the last piece, like a connection dropped mid-answer.
    """

    def __init__(self, chunks: Iterable[bytes], then_raise: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.then_raise = then_raise
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk
        if self.then_raise is not None:
            raise self.then_raise

    async def aclose(self) -> None:
        self.closed = True


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]
