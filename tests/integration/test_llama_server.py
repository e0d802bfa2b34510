"""The OpenAI-compatible backend against a real llama-cpp-python server running SmolLM2-135M."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nemo_tui.backends.base import (
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    ModelNotFound,
    StreamBroken,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.backends.embedded import DEFAULT_MODEL_NAME, EmbeddedBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend

from .support import SERVER_CONTEXT, close_stream, free_port

pytestmark = pytest.mark.integration

QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]
SHORT = GenerationOptions(num_ctx=SERVER_CONTEXT, max_tokens=16, temperature=0.0)


@pytest.fixture
async def server(llama_server: str) -> AsyncIterator[OpenAICompatBackend]:
    backend = OpenAICompatBackend(llama_server, name="llama-cpp")
    yield backend
    await backend.aclose()


async def served_model(backend: OpenAICompatBackend) -> str:
    [installed] = await backend.list_installed()
    return installed.name


async def test_health_says_the_server_is_up_and_names_its_model(
    server: OpenAICompatBackend, smollm2_path: Path
) -> None:
    health = await server.health()

    assert health.up
    assert smollm2_path.name in health.detail


async def test_the_one_served_model_is_listed_as_loaded(server: OpenAICompatBackend) -> None:
    model = await served_model(server)

    loaded = await server.list_loaded()

    assert [m.name for m in loaded] == [model]
    await server.preload(model, SHORT)


async def test_streams_an_answer_that_ends_with_a_finish_reason(
    server: OpenAICompatBackend,
) -> None:
    model = await served_model(server)
    text: list[str] = []
    ends: list[StreamEnd] = []

    async for event in server.stream_chat(model, QUESTION, SHORT):
        if isinstance(event, TokenChunk):
            text.append(event.text)
        elif isinstance(event, StreamEnd):
            ends.append(event)

    assert "".join(text).strip()
    assert len(ends) == 1 and ends[0].finish_reason in ("stop", "length")


async def test_a_closed_stream_leaves_the_server_ready_for_the_next_request(
    server: OpenAICompatBackend,
) -> None:
    model = await served_model(server)
    story = [ChatMessage("user", "Write a long story about a dragon.")]
    stream = server.stream_chat(model, story, GenerationOptions(max_tokens=200))
    async for event in stream:
        if isinstance(event, TokenChunk):
            break
    await close_stream(stream)

    events = [e async for e in server.stream_chat(model, QUESTION, SHORT)]

    assert isinstance(events[-1], StreamEnd)


async def test_a_streamed_prompt_longer_than_the_context_fails_without_text(
    server: OpenAICompatBackend,
) -> None:
    """llama-cpp-python checks the context only after it has opened the stream (reference §3.4):
    the stream ends empty, so the caller gets StreamBroken and no text, not a silent success,
    and the fix names the context as the likely cause."""
    model = await served_model(server)
    too_long = [ChatMessage("user", "word " * (SERVER_CONTEXT + 200))]
    received: list[StreamEvent] = []

    with pytest.raises(StreamBroken, match="without sending anything") as caught:
        async for event in server.stream_chat(model, too_long, SHORT):
            received.append(event)

    assert received == []
    assert "--n_ctx" in caught.value.fix


async def test_server_tokens_match_the_in_process_tokenizer(
    server: OpenAICompatBackend, embedded: EmbeddedBackend
) -> None:
    model = await served_model(server)
    text = "Memory is carried in mebibytes throughout nemo-tui."

    remote = await server.tokenize(model, text)
    local = await embedded.tokenize(DEFAULT_MODEL_NAME, text)

    assert remote is not None and remote == local


async def test_a_model_the_server_does_not_serve_is_not_found(
    server: OpenAICompatBackend,
) -> None:
    with pytest.raises(ModelNotFound):
        await server.preload("llama3.1:8b", SHORT)


async def test_nothing_listening_is_unavailable() -> None:
    backend = OpenAICompatBackend(f"http://127.0.0.1:{free_port()}/v1")
    try:
        health = await backend.health()
        with pytest.raises(BackendUnavailable):
            async for _ in backend.stream_chat("m", QUESTION, SHORT):
                pass
    finally:
        await backend.aclose()

    assert not health.up
