"""The OpenAI-compatible backend against a real llama.cpp llama-server running SmolLM2-135M.

The server is xllamacpp's llama-server in a process of its own on a loopback port, so a test can
kill it the way a crash or the out-of-memory killer would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nemo_tui.backends.base import (
    BackendUnavailable,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    ModelNotFound,
    StreamBroken,
    StreamEnd,
    TokenChunk,
)
from nemo_tui.backends.embedded import DEFAULT_MODEL_NAME, EmbeddedBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.engine import Engine
from nemo_tui.events import Done, Failed, Fallback, Query, Token
from tests.fakes import ScriptedBackend

from .support import (
    SERVER_CONTEXT,
    SERVER_KEY,
    LlamaServer,
    close_stream,
    free_port,
    start_llama_server,
)

# `integration` goes on each test that talks to llama-server; finding that nothing listens
# talks to nothing (see tests/conftest.py).

QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]
SHORT = GenerationOptions(num_ctx=SERVER_CONTEXT, max_tokens=16, temperature=0.0)
STORY = [ChatMessage("user", "Write a long story about a dragon who learns to bake bread.")]


def client_for(server: LlamaServer, key: str = SERVER_KEY) -> OpenAICompatBackend:
    return OpenAICompatBackend(server.base_url, api_key=key, name="llama-server")


@pytest.fixture
async def server(llama_server: LlamaServer) -> AsyncIterator[OpenAICompatBackend]:
    backend = client_for(llama_server)
    yield backend
    await backend.aclose()


async def served_model(backend: OpenAICompatBackend) -> str:
    [installed] = await backend.list_installed()
    return installed.name


@pytest.mark.integration
async def test_health_says_the_server_is_up_and_names_its_model(
    server: OpenAICompatBackend, smollm2_path: Path
) -> None:
    health = await server.health()

    assert health.up
    assert smollm2_path.name in health.detail


@pytest.mark.integration
async def test_a_wrong_key_is_reported_as_refused(llama_server: LlamaServer) -> None:
    backend = client_for(llama_server, key="not-the-key")
    try:
        health = await backend.health()
    finally:
        await backend.aclose()

    assert not health.up
    assert "API key was refused" in health.detail
    assert "not-the-key" not in health.detail


@pytest.mark.integration
async def test_the_served_model_is_loaded_with_the_context_from_props(
    server: OpenAICompatBackend, smollm2_path: Path
) -> None:
    model = await served_model(server)

    [loaded] = await server.list_loaded()
    [installed] = await server.list_installed()

    assert loaded.name == model
    assert loaded.context_length == SERVER_CONTEXT
    assert installed.parameter_size == "135M"
    assert loaded.size_mb == pytest.approx(smollm2_path.stat().st_size / 2**20, rel=0.1)
    await server.preload(model, SHORT)


@pytest.mark.integration
async def test_streams_an_answer_with_the_servers_own_counts(server: OpenAICompatBackend) -> None:
    model = await served_model(server)
    question_tokens = await server.tokenize(model, QUESTION[0].content)
    text: list[str] = []
    ends: list[StreamEnd] = []

    async for event in server.stream_chat(model, QUESTION, SHORT):
        if isinstance(event, TokenChunk):
            text.append(event.text)
        elif isinstance(event, StreamEnd):
            ends.append(event)

    [end] = ends
    assert "".join(text).strip()
    assert end.finish_reason in ("stop", "length")
    assert question_tokens is not None
    # The chat template wraps the question in role markers, so the prompt is longer.
    assert end.prompt_tokens is not None and end.prompt_tokens > len(question_tokens)
    assert end.completion_tokens is not None and 0 < end.completion_tokens <= 16
    assert end.prompt_eval_s is not None and end.eval_s is not None


@pytest.mark.integration
async def test_the_limit_on_generated_tokens_is_exact(server: OpenAICompatBackend) -> None:
    model = await served_model(server)

    events = [e async for e in server.stream_chat(model, STORY, GenerationOptions(max_tokens=8))]

    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert (end.finish_reason, end.completion_tokens) == ("length", 8)


@pytest.mark.integration
async def test_a_closed_stream_leaves_the_server_ready_for_the_next_request(
    server: OpenAICompatBackend,
) -> None:
    model = await served_model(server)
    stream = server.stream_chat(model, STORY, GenerationOptions(max_tokens=200))
    async for event in stream:
        if isinstance(event, TokenChunk):
            break
    await close_stream(stream)

    events = [e async for e in server.stream_chat(model, QUESTION, SHORT)]

    assert isinstance(events[-1], StreamEnd)


@pytest.mark.integration
async def test_a_counted_prompt_longer_than_the_context_is_refused_before_it_is_sent(
    server: OpenAICompatBackend,
) -> None:
    model = await served_model(server)
    text = "word " * (SERVER_CONTEXT + 200)
    counted = await server.tokenize(model, text)
    received: list[object] = []

    with pytest.raises(ContextExceeded) as caught:
        async for event in server.stream_chat(model, [ChatMessage("user", text)], SHORT):
            received.append(event)

    assert counted is not None and len(counted) > SERVER_CONTEXT
    assert received == []
    assert f"context of {SERVER_CONTEXT:,} tokens (its /props), so it was not sent" in str(
        caught.value.message
    )
    assert caught.value.fix


@pytest.mark.integration
async def test_an_uncounted_prompt_longer_than_the_context_is_refused_by_the_server(
    server: OpenAICompatBackend,
) -> None:
    model = await served_model(server)
    too_long = [ChatMessage("user", "more words " * SERVER_CONTEXT)]

    with pytest.raises(ContextExceeded) as caught:
        async for _ in server.stream_chat(model, too_long, SHORT):
            pass

    assert "exceeds the available context size" in caught.value.message
    events = [e async for e in server.stream_chat(model, QUESTION, SHORT)]
    assert isinstance(events[-1], StreamEnd)


@pytest.mark.integration
async def test_server_tokens_match_the_embedded_backends_tokens(
    server: OpenAICompatBackend, embedded: EmbeddedBackend
) -> None:
    model = await served_model(server)
    text = "Memory is carried in mebibytes throughout nemo-tui."
    await embedded.preload(DEFAULT_MODEL_NAME, GenerationOptions(num_ctx=512))

    remote = await server.tokenize(model, text)
    local = await embedded.tokenize(DEFAULT_MODEL_NAME, text)

    assert remote is not None and remote == local
    assert await server.tokenize(model, "Hello world") == [19556, 905]


@pytest.mark.integration
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


@pytest.mark.integration
async def test_a_server_killed_mid_answer_breaks_the_stream_after_the_text_so_far(
    own_llama_server: LlamaServer,
) -> None:
    backend = client_for(own_llama_server)
    received: list[str] = []
    try:
        model = await served_model(backend)
        with pytest.raises(StreamBroken):
            async for event in backend.stream_chat(model, STORY, GenerationOptions(max_tokens=400)):
                if isinstance(event, TokenChunk):
                    received.append(event.text)
                    if len(received) == 3:
                        await asyncio.to_thread(own_llama_server.kill)
        health = await backend.health()
    finally:
        await backend.aclose()

    assert len(received) >= 3
    assert not health.up and "connection refused" in health.detail


@pytest.mark.integration
async def test_an_asleep_server_is_up_with_no_model_in_memory(
    smollm2_path: Path, tmp_path: Path
) -> None:
    """llama-server's `--sleep-idle-seconds` frees the model while the server stays up; it is
    not counted as loaded until a request wakes it."""
    asleep = start_llama_server(smollm2_path, tmp_path / "server.log", sleep_idle_s=1)
    backend = client_for(asleep)
    try:
        model = await served_model(backend)
        async with asyncio.timeout(20):
            while await backend.list_loaded():
                await asyncio.sleep(0.2)
        health = await backend.health()
        events = [e async for e in backend.stream_chat(model, QUESTION, SHORT)]
        awake = await backend.list_loaded()
    finally:
        await backend.aclose()
        asleep.stop()

    assert health.up
    assert isinstance(events[-1], StreamEnd)
    assert [m.name for m in awake] == [model]


@pytest.mark.integration
async def test_the_engine_keeps_the_partial_answer_and_falls_back_once_the_server_is_gone(
    own_llama_server: LlamaServer,
) -> None:
    fallback = ScriptedBackend("embedded", ("smollm2:135m",))
    engine = Engine(
        Config(),
        sampler=SimulatedSampler(16 * 1024, 12 * 1024),
        backends=[client_for(own_llama_server), fallback],
        monitor=False,
    )
    await engine.start()
    try:
        [served] = [m for m in engine.cached_models() if m.backend == "llama-server"]
        handle = engine.submit(Query(STORY[0].content, model=served.name, max_tokens=400))
        seen = 0
        async for event in handle.events():
            if isinstance(event, Token):
                seen += 1
                if seen == 3:
                    await asyncio.to_thread(own_llama_server.kill)
        broken = await handle.result()
        events = [e async for e in engine.submit(Query("hi", model=served.name)).events()]
    finally:
        await engine.aclose()

    assert isinstance(broken, Failed) and isinstance(broken.error, StreamBroken)
    assert len(broken.partial_text) > 0
    assert any(isinstance(e, Fallback) for e in events)
    done = events[-1]
    assert isinstance(done, Done) and done.backend == "embedded"
