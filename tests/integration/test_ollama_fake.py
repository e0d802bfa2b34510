"""The Ollama backend against the fake Ollama server over a real loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from nemo_tui.backends.base import (
    BackendError,
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    ModelNotFound,
    OutOfMemory,
    ServerBusy,
    StreamBroken,
    StreamEnd,
    TokenChunk,
)
from nemo_tui.backends.ollama import OllamaBackend
from tests.fakes import ANSWER_WORDS, DEFAULT_MODELS, FakeOllama, Fault

from .support import close_stream

pytestmark = pytest.mark.integration

TINY = "tinyllama:1.1b"
PHI = "phi3:mini"
QUESTION = [ChatMessage("user", "Why is the sky blue?")]
OPTIONS = GenerationOptions(num_ctx=2048)


@pytest.fixture
async def ollama(fake_ollama: FakeOllama) -> AsyncIterator[OllamaBackend]:
    backend = OllamaBackend(fake_ollama.url, keep_alive="30m")
    yield backend
    await backend.aclose()


async def answer(
    backend: OllamaBackend,
    options: GenerationOptions = OPTIONS,
    model: str = TINY,
    messages: list[ChatMessage] = QUESTION,
) -> tuple[str, StreamEnd]:
    """The whole answer and its StreamEnd."""
    text: list[str] = []
    end: StreamEnd | None = None
    async for event in backend.stream_chat(model, messages, options):
        if isinstance(event, TokenChunk):
            text.append(event.text)
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None
    return "".join(text), end


async def partial_then_error(backend: OllamaBackend) -> tuple[str, BackendError]:
    """The text received before the stream failed, and the error it failed with."""
    text: list[str] = []
    with pytest.raises(BackendError) as caught:
        async for event in backend.stream_chat(TINY, QUESTION, OPTIONS):
            if isinstance(event, TokenChunk):
                text.append(event.text)
    return "".join(text), caught.value


async def wait_for(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    """Poll for something the server does on its own thread."""
    async with asyncio.timeout(deadline_s):
        while not condition():
            await asyncio.sleep(0.02)


def load_options_sent(server: FakeOllama) -> list[dict[str, object]]:
    """The load-time options of every chat request the server received."""
    keys = ("num_ctx", "num_batch", "use_mmap", "num_thread")
    return [
        {k: v for k, v in (r.body.get("options") or {}).items() if k in keys}
        for r in server.requests_to("/api/chat")
    ]


async def test_health_reports_the_version(ollama: OllamaBackend) -> None:
    health = await ollama.health()

    assert health.up and health.version == "0.12.3"


async def test_installed_models_come_from_tags(ollama: OllamaBackend) -> None:
    installed = {m.name: m for m in await ollama.list_installed()}

    assert list(installed) == [m.name for m in DEFAULT_MODELS]
    assert installed[PHI].parameter_size == "3.8B"
    assert installed[TINY].quantization == "Q4_0"


async def test_metadata_comes_from_show(ollama: OllamaBackend) -> None:
    arch = await ollama.model_metadata(TINY)

    assert arch is not None
    assert (arch.layers, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        22,
        2048,
        32,
        4,
    )


async def test_preload_loads_with_the_requested_context(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, OPTIONS)

    [loaded] = await ollama.list_loaded()

    tiny = fake_ollama.models[TINY]
    assert loaded.name == TINY and loaded.context_length == 2048
    assert loaded.size_mb == pytest.approx(tiny.memory_mb(2048), abs=0.01)
    assert loaded.expires_at is not None
    assert loaded.expires_at - datetime.now(UTC) > timedelta(minutes=29)


async def test_a_preloaded_model_is_not_reloaded_by_the_next_question(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, OPTIONS)

    text, end = await answer(ollama)

    assert text.split() == list(ANSWER_WORDS[: fake_ollama.answer_tokens])
    assert fake_ollama.reloads == 0 and fake_ollama.loads == 1
    first, second = load_options_sent(fake_ollama)
    assert first == second
    assert end.completion_tokens == fake_ollama.answer_tokens
    assert end.finish_reason == "stop"


async def test_another_context_size_reloads_the_model(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    _, warm = await answer(ollama)
    await answer(ollama)
    _, bigger = await answer(ollama, GenerationOptions(num_ctx=1024))

    assert fake_ollama.reloads == 1
    assert (warm.load_s or 0) >= fake_ollama.cold_load_s
    assert (bigger.load_s or 0) >= fake_ollama.cold_load_s
    assert [m.context_length for m in await ollama.list_loaded()] == [1024]


async def test_max_tokens_cuts_the_answer(ollama: OllamaBackend) -> None:
    text, end = await answer(ollama, GenerationOptions(num_ctx=2048, max_tokens=5))

    assert len(text.split()) == 5
    assert end.finish_reason == "length" and end.completion_tokens == 5


async def test_a_prompt_longer_than_the_context_is_cut_silently(ollama: OllamaBackend) -> None:
    long_prompt = [ChatMessage("user", "word " * 3000)]

    _, end = await answer(ollama, messages=long_prompt)

    assert end.prompt_tokens == 2048


async def test_unload_frees_the_model_and_reports_its_size(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, OPTIONS)

    freed = await ollama.unload(TINY)

    assert freed == pytest.approx(fake_ollama.models[TINY].memory_mb(2048), abs=0.01)
    assert await ollama.list_loaded() == []
    assert fake_ollama.requests_to("/api/chat")[-1].body["keep_alive"] == 0


async def test_an_idle_model_expires_after_its_keep_alive(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, GenerationOptions(num_ctx=2048, keep_alive="1m"))
    fake_ollama.advance_clock(30)
    still_loaded = await ollama.list_loaded()

    fake_ollama.advance_clock(31)

    assert [m.name for m in still_loaded] == [TINY]
    assert await ollama.list_loaded() == []


async def test_a_negative_keep_alive_keeps_the_model_forever(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, GenerationOptions(num_ctx=2048, keep_alive=-1))
    fake_ollama.advance_clock(365 * 24 * 3600)

    [loaded] = await ollama.list_loaded()

    assert loaded.expires_at is None


async def test_keep_alive_seconds_written_as_text_are_sent_as_a_number(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, GenerationOptions(num_ctx=2048, keep_alive="3600"))

    [loaded] = await ollama.list_loaded()

    assert fake_ollama.requests_to("/api/chat")[-1].body["keep_alive"] == 3600
    assert loaded.expires_at is not None
    assert timedelta(minutes=59) < loaded.expires_at - datetime.now(UTC) <= timedelta(hours=1)


async def test_a_model_that_does_not_fit_is_out_of_memory_with_sizes() -> None:
    with FakeOllama(memory_limit_mb=3000) as server:
        backend = OllamaBackend(server.url)
        try:
            await backend.preload(TINY, OPTIONS)
            with pytest.raises(OutOfMemory) as caught:
                await backend.preload(PHI, GenerationOptions(num_ctx=4096))
        finally:
            await backend.aclose()

    required = server.models[PHI].memory_mb(4096)
    available = 3000 - server.models[TINY].memory_mb(2048)
    # Ollama prints sizes with one decimal of a GiB.
    assert caught.value.required_mb == pytest.approx(required, abs=52)
    assert caught.value.available_mb == pytest.approx(available, abs=52)
    assert caught.value.status == 500


async def test_an_unknown_model_is_not_found(ollama: OllamaBackend) -> None:
    with pytest.raises(ModelNotFound):
        await answer(ollama, model="nope:7b")


async def test_a_full_queue_is_server_busy(ollama: OllamaBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.fail_next(Fault.BUSY)

    text, error = await partial_then_error(ollama)

    assert isinstance(error, ServerBusy) and error.status == 503
    assert text == ""


async def test_a_500_before_the_answer_is_a_backend_error(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.ERROR_500)

    text, error = await partial_then_error(ollama)

    assert error.status == 500 and "llama runner" in error.message
    assert not isinstance(error, OutOfMemory | ServerBusy | StreamBroken)
    assert text == ""


async def test_an_error_line_mid_stream_keeps_the_partial_text(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.ERROR_LINE, after_tokens=3)

    text, error = await partial_then_error(ollama)

    assert text.split() == list(ANSWER_WORDS[:3])
    assert "unexpected EOF" in error.message


async def test_a_runner_dying_mid_stream_is_out_of_memory(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.OOM_LINE, after_tokens=2)

    text, error = await partial_then_error(ollama)

    assert isinstance(error, OutOfMemory)
    assert text.split() == list(ANSWER_WORDS[:2])


async def test_an_unreadable_line_breaks_the_stream(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.GARBAGE_LINE, after_tokens=4)

    text, error = await partial_then_error(ollama)

    assert isinstance(error, StreamBroken)
    assert text.split() == list(ANSWER_WORDS[:4])


async def test_a_dropped_connection_breaks_the_stream(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.DROP, after_tokens=3)

    text, error = await partial_then_error(ollama)

    assert isinstance(error, StreamBroken)
    assert text.split() == list(ANSWER_WORDS[:3])
    _, end = await answer(ollama)
    assert end.finish_reason == "stop"


async def test_a_stalled_answer_can_be_abandoned_and_the_next_one_works(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.STALL, seconds=5.0)
    stream = ollama.stream_chat(TINY, QUESTION, OPTIONS)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await stream.__anext__()
    await close_stream(stream)

    text, _ = await answer(ollama)
    assert text


async def test_closing_the_stream_hangs_up_on_the_server() -> None:
    with FakeOllama(tokens_per_s=50) as server:
        backend = OllamaBackend(server.url)
        try:
            stream = backend.stream_chat(TINY, QUESTION, OPTIONS)
            await stream.__anext__()
            await close_stream(stream)
            await wait_for(lambda: server.disconnects == 1)
            _, end = await answer(backend)
        finally:
            await backend.aclose()

    assert end.finish_reason == "stop"


async def test_a_stopped_server_is_unavailable_until_it_comes_back(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    await ollama.preload(TINY, OPTIONS)
    fake_ollama.stop()

    health = await ollama.health()
    with pytest.raises(BackendUnavailable):
        await answer(ollama)
    fake_ollama.start()

    assert not health.up
    assert (await ollama.health()).up
    assert await ollama.list_loaded() == []  # a restarted server has nothing loaded
    text, _ = await answer(ollama)
    assert text


async def test_the_fake_rejects_keep_alive_text_without_a_unit(fake_ollama: FakeOllama) -> None:
    async with httpx.AsyncClient(base_url=fake_ollama.url) as client:
        bare = await client.post(
            "/api/chat", json={"model": TINY, "messages": [], "keep_alive": "3600"}
        )
        flag = await client.post(
            "/api/chat", json={"model": TINY, "messages": [], "keep_alive": True}
        )

    assert bare.status_code == 400
    assert bare.json() == {"error": 'time: missing unit in duration "3600"'}
    assert flag.status_code == 400


async def test_the_fake_serves_the_generate_form_and_liveness(fake_ollama: FakeOllama) -> None:
    async with httpx.AsyncClient(base_url=fake_ollama.url) as client:
        alive = await client.head("/")
        preload = await client.post("/api/generate", json={"model": TINY, "stream": False})
        generated = await client.post(
            "/api/generate", json={"model": TINY, "prompt": "Hi", "stream": False}
        )

    assert alive.status_code == 200
    assert preload.json()["done_reason"] == "load"
    assert generated.json()["response"].split() == list(ANSWER_WORDS[: fake_ollama.answer_tokens])


async def test_a_scheduler_that_evicts_makes_room_for_a_bigger_model() -> None:
    with FakeOllama(memory_limit_mb=4000, evict_to_fit=True) as server:
        backend = OllamaBackend(server.url)
        try:
            await backend.preload(TINY, OPTIONS)
            await backend.preload(PHI, GenerationOptions(num_ctx=4096))
            loaded = [m.name for m in await backend.list_loaded()]
        finally:
            await backend.aclose()

    assert loaded == [PHI]


async def test_one_connection_serves_several_questions(
    fake_ollama: FakeOllama, ollama: OllamaBackend
) -> None:
    for _ in range(5):
        await answer(ollama)
    assert fake_ollama.connections_opened == 1


async def test_a_line_that_never_ends_breaks_the_stream_soon_and_the_next_answer_works(
    ollama: OllamaBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_next(Fault.ENDLESS_LINE, after_tokens=2)

    async with asyncio.timeout(5.0):
        text, error = await partial_then_error(ollama)

    assert isinstance(error, StreamBroken)
    assert f"{fake_ollama.url} sent a line longer than 4 MiB" in error.message
    assert text.split() == list(ANSWER_WORDS[:2])
    await wait_for(lambda: fake_ollama.disconnects == 1)
    _, end = await answer(ollama)
    assert end.finish_reason == "stop"
