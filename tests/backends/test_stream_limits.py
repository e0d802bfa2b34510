"""Bounded reads from misbehaving servers: a line that never ends, an endless or runaway error
body. Each backend gives up with a clear error after reading a bounded amount, and keeps the part
of the answer it already had."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from nemo_tui.backends.base import (
    BackendError,
    ChatMessage,
    GenerationOptions,
    StreamBroken,
    TokenChunk,
)
from nemo_tui.backends.gemini import GeminiBackend
from nemo_tui.backends.http import ERROR_BODY_LIMIT_BYTES, MAX_LINE_BYTES
from nemo_tui.backends.ollama import OllamaBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend

from .support import MockServer, ndjson, sse

QUESTION = [ChatMessage("user", "Why is the sky blue?")]
PIECE = 64 * 1024
"""The size of each read the fake body hands over, as a network read would."""
ENDLESS = 32 * 1024 * 1024
"""Where the 'endless' bodies stop, should a client read on and on."""


class CountingBody(httpx.AsyncByteStream):
    """A body that starts with `head`, then sends `filler` bytes without a line end until
    `total` bytes went out, counting what the client pulled."""

    def __init__(self, head: bytes, filler: bytes = b"x", total: int = ENDLESS) -> None:
        self.head = head
        self.piece = filler * (PIECE // len(filler))
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            self.sent += len(self.head)
            yield self.head
        while self.sent < self.total:
            self.sent += len(self.piece)
            yield self.piece


def ollama(server: MockServer) -> OllamaBackend:
    return OllamaBackend("http://127.0.0.1:11434", transport=server.transport())


def openai(server: MockServer) -> OpenAICompatBackend:
    return OpenAICompatBackend("http://127.0.0.1:8080/v1", transport=server.transport())


def gemini(server: MockServer) -> GeminiBackend:
    return GeminiBackend(
        "gemini-3.5-flash", api_key="AIzaSyD-not-a-real-key", transport=server.transport()
    )


def ollama_token(text: str) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": False}


def openai_token(text: str) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": {"content": text}}]}


def gemini_token(text: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}


Make = Callable[[MockServer], OllamaBackend | OpenAICompatBackend | GeminiBackend]
# Each backend: how to build it, the path it streams from, and two tokens in its wire format.
BACKENDS: dict[str, tuple[Make, str, bytes]] = {
    "ollama": (ollama, "/api/chat", ndjson(ollama_token("The sky"), ollama_token(" is"))),
    "openai": (
        openai,
        "/v1/chat/completions",
        sse(openai_token("The sky"), openai_token(" is")),
    ),
    "gemini": (
        gemini,
        "/v1beta/models/gemini-3.5-flash:streamGenerateContent",
        sse(gemini_token("The sky"), gemini_token(" is")),
    ),
}


async def partial_then_error(
    backend: OllamaBackend | OpenAICompatBackend | GeminiBackend, model: str
) -> tuple[str, BackendError]:
    text: list[str] = []
    with pytest.raises(BackendError) as caught:
        async for event in backend.stream_chat(model, QUESTION, GenerationOptions()):
            if isinstance(event, TokenChunk):
                text.append(event.text)
    return "".join(text), caught.value


@pytest.mark.parametrize("kind", list(BACKENDS))
async def test_a_line_that_never_ends_breaks_the_stream_after_a_bounded_read(kind: str) -> None:
    make, path, tokens = BACKENDS[kind]
    # The endless line starts like an event, so only its length gives it away.
    head = tokens + (b'{"message": {"content": "' if kind == "ollama" else b'data: {"text": "')
    body = CountingBody(head)
    server = MockServer({("POST", path): httpx.Response(200, stream=body)})
    started = time.perf_counter()
    text, error = await partial_then_error(make(server), "gemini-3.5-flash")
    assert isinstance(error, StreamBroken)
    assert "sent a line longer than 4 MiB" in error.message
    assert error.fix
    assert text == "The sky is"
    assert body.sent <= len(head) + MAX_LINE_BYTES + PIECE
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize("kind", list(BACKENDS))
async def test_an_endless_error_body_is_read_up_to_a_cap_and_shown_clipped(kind: str) -> None:
    make, path, _ = BACKENDS[kind]
    body = CountingBody(b"<html><body><h1>502 Bad Gateway</h1>", filler=b"<p>upstream</p>")
    server = MockServer({("POST", path): httpx.Response(502, stream=body)})
    _, error = await partial_then_error(make(server), "gemini-3.5-flash")
    assert error.message.startswith("<html><body><h1>502 Bad Gateway</h1>")
    assert error.message.endswith("…")
    assert len(error.message) <= 301
    assert body.sent <= ERROR_BODY_LIMIT_BYTES + PIECE


async def test_a_runaway_message_in_a_json_error_body_is_shown_clipped() -> None:
    # A whole log in the message: under the body cap, so it is read as JSON, but far too long.
    message = "an error was encountered while running the model: " + "goroutine 1\n" * 2000
    server = MockServer({("POST", "/api/chat"): (500, json.dumps({"error": message}))})
    _, error = await partial_then_error(ollama(server), "tinyllama")
    assert error.message.startswith("an error was encountered while running the model:")
    assert error.message.endswith("…")
    assert len(error.message) <= 1001
