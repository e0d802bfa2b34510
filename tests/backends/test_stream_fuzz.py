"""Fuzzing the answer-stream parsers: NDJSON (Ollama) and server-sent events (OpenAI-compatible
servers; Gemini reads its events with the same parser).

However a body is cut into network reads, the answer is the same; garbage and lines past the
length cap end in a typed backend error, never in another exception.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_tui.backends.base import (
    BackendError,
    ChatMessage,
    GenerationOptions,
    StreamBroken,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.backends.http import MAX_LINE_BYTES, iter_line_batches, iter_sse_data
from nemo_tui.backends.ollama import OllamaBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend

from .support import MockServer

QUESTION = [ChatMessage("user", "Why is the sky blue?")]
LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
Outcome = tuple[list[Any], str | None]
"""What a stream gave before it ended, and the error it ended with (None for a clean end)."""


class Pieces(httpx.AsyncByteStream):
    """A body handed over in the given pieces, one network read each."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces = list(pieces)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


@st.composite
def cut(draw: st.DrawFn, body: bytes, max_cuts: int = 40) -> list[bytes]:
    """`body` cut at random places (empty pieces included) into network reads."""
    places = draw(st.lists(st.integers(0, len(body)), max_size=max_cuts))
    bounds = [0, *sorted(places), len(body)]
    return [body[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def response_of(pieces: list[bytes]) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:11434/api/chat")
    return httpx.Response(200, stream=Pieces(pieces), request=request)


def lines_of(pieces: list[bytes]) -> Outcome:
    """The non-empty lines the line reader gives (a `\\r\\n` cut in two adds an empty one)."""

    async def read() -> Outcome:
        lines: list[bytes] = []
        try:
            async for batch in iter_line_batches(response_of(pieces), backend="test"):
                lines.extend(line for line in batch if line)
        except StreamBroken as error:
            return lines, error.message
        return lines, None

    return asyncio.run(read())


def sse_payloads_of(pieces: list[bytes]) -> Outcome:
    async def read() -> Outcome:
        payloads: list[str] = []
        try:
            async for payload in iter_sse_data(response_of(pieces), backend="test"):
                payloads.append(payload)
        except StreamBroken as error:
            return payloads, error.message
        return payloads, None

    return asyncio.run(read())


def streaming(path: str, pieces: list[bytes]) -> MockServer:
    """A server answering `path` with a 200 whose body comes in `pieces`."""

    def reply(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Pieces(pieces))

    return MockServer({("POST", path): reply})


def ollama_events(pieces: list[bytes]) -> Outcome:
    server = streaming("/api/chat", pieces)
    backend = OllamaBackend("http://127.0.0.1:11434", transport=server.transport())
    return asyncio.run(_events(backend.stream_chat("tinyllama", QUESTION, GenerationOptions())))


def openai_events(pieces: list[bytes]) -> Outcome:
    server = streaming("/v1/chat/completions", pieces)
    backend = OpenAICompatBackend("http://127.0.0.1:8080/v1", transport=server.transport())
    return asyncio.run(_events(backend.stream_chat("m", QUESTION, GenerationOptions())))


async def _events(stream: AsyncIterator[StreamEvent]) -> Outcome:
    """The events, tokens merged (how text is cut into tokens is the server's business)."""
    events: list[Any] = []
    text = ""
    try:
        async for event in stream:
            if isinstance(event, TokenChunk):
                text += event.text
            else:
                events.append(event)
    except BackendError as error:
        return [text, *events], f"{type(error).__name__}: {error.message}"
    return [text, *events], None


def ollama_line(text: str, *, done: bool = False) -> bytes:
    chunk: dict[str, Any] = {"model": "m", "message": {"role": "assistant", "content": text}}
    chunk["done"] = done
    if done:
        chunk |= {"done_reason": "stop", "prompt_eval_count": 12, "eval_count": 3}
    return json.dumps(chunk).encode()


def openai_line(text: str | None, *, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    chunk = {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode()


TOKENS = st.lists(st.text(max_size=12), max_size=12)
GARBAGE_LINES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b": ping", b"data:", b"data: [DONE]", b"{", b"[]", b"null"]),
    st.builds(lambda t: ollama_line(t), st.text(max_size=8)),
    st.builds(lambda t: openai_line(t), st.text(max_size=8)),
    st.just(b'{"error": "model runner has unexpectedly stopped"}'),
    st.just(b'data: {"error": {"message": "boom", "code": 500}}'),
)


@given(lines=st.lists(st.binary(max_size=30), max_size=20), end=LINE_ENDS, data=st.data())
def test_the_line_reader_gives_the_same_lines_however_the_body_is_cut(
    lines: list[bytes], end: bytes, data: st.DataObject
) -> None:
    body = end.join(lines)
    assert lines_of(data.draw(cut(body))) == lines_of([body])


@given(body=st.binary(max_size=400), data=st.data())
def test_sse_payloads_do_not_depend_on_how_the_body_is_cut(
    body: bytes, data: st.DataObject
) -> None:
    assert sse_payloads_of(data.draw(cut(body))) == sse_payloads_of([body])


@given(tokens=TOKENS, end=LINE_ENDS, data=st.data())
def test_an_ollama_answer_cut_anywhere_is_the_whole_answer(
    tokens: list[str], end: bytes, data: st.DataObject
) -> None:
    body = b"".join(ollama_line(t) + end for t in tokens) + ollama_line("", done=True) + end
    events, error = ollama_events(data.draw(cut(body)))
    assert error is None
    assert events[0] == "".join(tokens)
    assert events == ollama_events([body])[0]


@given(tokens=TOKENS, end=st.sampled_from(["\n", "\r\n"]), data=st.data())
def test_an_sse_answer_cut_anywhere_is_the_whole_answer(
    tokens: list[str], end: str, data: st.DataObject
) -> None:
    separator = end.encode() * 2
    events = [openai_line(t) for t in tokens] + [openai_line(None, finish="stop"), b"data: [DONE]"]
    body = b": ping" + separator + separator.join(events) + separator
    outcome = openai_events(data.draw(cut(body)))
    assert outcome[1] is None
    assert outcome[0][0] == "".join(tokens)
    assert outcome == openai_events([body])


@given(lines=st.lists(GARBAGE_LINES, max_size=12), end=LINE_ENDS, data=st.data())
def test_garbage_in_an_ollama_stream_is_a_backend_error_wherever_it_is_cut(
    lines: list[bytes], end: bytes, data: st.DataObject
) -> None:
    body = end.join(lines)
    assert ollama_events(data.draw(cut(body))) == ollama_events([body])


@given(lines=st.lists(GARBAGE_LINES, max_size=12), end=LINE_ENDS, data=st.data())
def test_garbage_in_an_sse_stream_is_a_backend_error_wherever_it_is_cut(
    lines: list[bytes], end: bytes, data: st.DataObject
) -> None:
    body = end.join(lines)
    assert openai_events(data.draw(cut(body))) == openai_events([body])


# Each example moves 4 MiB, so fewer of them.
@settings(max_examples=25)
@given(
    before=st.lists(st.text(max_size=8), max_size=4),
    over=st.integers(-2, 2),
    ended=st.booleans(),
    data=st.data(),
)
def test_a_line_at_the_length_cap_is_read_and_one_past_it_ends_the_stream(
    before: list[str], over: int, ended: bool, data: st.DataObject
) -> None:
    huge = ollama_line("x" * MAX_LINE_BYTES)[: MAX_LINE_BYTES + over]
    body = b"".join(ollama_line(t) + b"\n" for t in before) + huge + (b"\n" if ended else b"")
    events, error = ollama_events(data.draw(cut(body, max_cuts=6)))
    assert events == ["".join(before)]
    assert error is not None
    if over > 0:
        assert "sent a line longer than 4 MiB" in error
    else:
        assert error.startswith("StreamBroken: unreadable line in the answer stream")
