"""The engine end to end against the fake Ollama server over a real loopback socket.

Preloading, the model cache, eviction, fallback on out-of-memory, caching off, and the faults a
real Ollama shows (down, killed mid-stream, stalls, bad lines, HTTP errors, silent truncation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
import msgspec
import pytest

from nemo_tui.backends.base import Backend, BackendUnavailable, ServerBusy, StreamBroken
from nemo_tui.backends.ollama import WARM_LOAD_MAX_S, OllamaBackend
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import PressureLevel, SimulatedSampler
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.engine import Engine, StreamStalled
from nemo_tui.errors import UsageError
from nemo_tui.events import (
    Done,
    EngineEvent,
    Evicting,
    Failed,
    Fallback,
    Loading,
    Notice,
    Query,
    Token,
)
from tests.fakes import ANSWER_WORDS, DEFAULT_MODELS, FakeModel, FakeOllama, Fault, ScriptedBackend

from .support import free_port

# `integration` goes on each test that talks to the fake Ollama; Ollama being down is found
# without talking to anything (see tests/conftest.py).

TINY = FakeModel("tinyllama", weights_mb=608.0)
PHI = next(m for m in DEFAULT_MODELS if m.name == "phi3:mini")
BIO = FakeModel(
    "biomistral:7b",
    weights_mb=3900.0,
    parameter_size="7.2B",
    parameter_count=7_241_732_096,
    block_count=32,
    embedding_length=4096,
    head_count=32,
    head_count_kv=8,
)
ANSWER = " ".join(ANSWER_WORDS[:24])
"""What the fake streams for every question (24 tokens by default)."""
FIRST_THREE = " ".join(ANSWER_WORDS[:3])
COLD_LOAD_S = 2 * WARM_LOAD_MAX_S
"""A load as slow as a real Ollama's, so what the server reports tells a load from a warm start
(the fake's default load is quicker than any real one)."""
KEEP_ALIVE_S = 30 * 60
"""How long the engine asks Ollama to keep a model (`running` sets `30m`)."""
E = TypeVar("E")


def medium(text: str = "Compare the two approaches and explain the trade-offs.") -> Query:
    """A query the recommender serves with phi3:mini, falling back to tinyllama."""
    return Query(text, complexity=Complexity.MEDIUM)


def low(text: str = "hi") -> Query:
    """A query the recommender serves with tinyllama."""
    return Query(text, complexity=Complexity.LOW)


def config_with(**sections: dict[str, object]) -> Config:
    config = Config()
    for name, values in sections.items():
        section = msgspec.structs.replace(getattr(config, name), **values)
        config = msgspec.structs.replace(config, **{name: section})
    return config


def machine(total_mb: float, base_used_mb: float) -> SimulatedSampler:
    """A simulated machine where other programs use `base_used_mb`; the engine adds the models
    the server holds, as the figures of a real machine would include them."""
    return SimulatedSampler(total_mb, total_mb - base_used_mb)


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama([TINY, PHI]) as fake:
        yield fake
    assert fake.handler_errors == []


@pytest.fixture
def slow_loads() -> Iterator[FakeOllama]:
    """The fake with loads that take as long as a real Ollama's."""
    with FakeOllama([TINY, PHI], cold_load_s=COLD_LOAD_S) as fake:
        yield fake
    assert fake.handler_errors == []


class WallClock:
    """The engine's clock, moved by hand along with the fake server's."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def running(
    url: str,
    *,
    config: Config | None = None,
    sampler: SimulatedSampler | None = None,
    extra: tuple[Backend, ...] = (),
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Engine]:
    engine = Engine(
        config or Config(),
        sampler=sampler or SimulatedSampler(16 * 1024, 12 * 1024),
        backends=[OllamaBackend(url, keep_alive="30m"), *extra],
        monitor=False,
        clock=clock,
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.aclose()


async def ask(engine: Engine, query: Query) -> list[EngineEvent]:
    return [event async for event in engine.submit(query).events()]


def final(events: list[EngineEvent]) -> EngineEvent:
    return events[-1]


def of_type(events: list[EngineEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


async def wait_for(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    """Poll for something the server does on its own threads."""
    async with asyncio.timeout(deadline_s):
        while not condition():
            await asyncio.sleep(0.02)


async def load_behind_the_engines_back(server: FakeOllama, model: str) -> None:
    """Load a model the way another Ollama client would."""
    async with httpx.AsyncClient(base_url=server.url) as other_client:
        body = {"model": model, "messages": [], "stream": False, "keep_alive": "10m"}
        reply = await other_client.post("/api/chat", json=body)
    assert reply.status_code == 200, reply.text


# -- preload and cache -------------------------------------------------------------------------


@pytest.mark.integration
async def test_second_query_is_a_cache_hit_without_a_reload(slow_loads: FakeOllama) -> None:
    async with running(slow_loads.url) as engine:
        first = await ask(engine, low())
        second = await ask(engine, low("hello again"))
    assert of_type(first, Loading) and not of_type(second, Loading)
    done_first, done_second = final(first), final(second)
    assert isinstance(done_first, Done) and isinstance(done_second, Done)
    assert done_first.text == ANSWER and done_second.text == ANSWER
    assert (done_first.cache_hit, done_second.cache_hit) == (False, True)
    assert "tinyllama" in slow_loads.loaded()
    assert (slow_loads.loads, slow_loads.reloads) == (1, 0)


@pytest.mark.integration
async def test_a_model_ollama_let_expire_is_a_miss_and_the_hit_rate_does_not_rise(
    slow_loads: FakeOllama,
) -> None:
    async with running(slow_loads.url) as engine:
        assert (await engine.preload("tinyllama")).ok
        warm = final(await ask(engine, low()))
        slow_loads.advance_clock(KEEP_ALIVE_S + 60)
        assert slow_loads.loaded() == {}
        # Nobody told the engine: as far as it knows, the model is still loaded.
        assert [m.name for m in engine.cached_models()] == ["tinyllama"]
        cold = final(await ask(engine, low("hello again")))
        rate = engine.metrics.cache_hit_rate
    assert isinstance(warm, Done) and warm.cache_hit is True
    assert isinstance(cold, Done) and cold.cache_hit is False
    assert cold.load_s is not None and cold.load_s >= COLD_LOAD_S
    assert rate == pytest.approx(0.5)
    assert slow_loads.loads == 2


@pytest.mark.integration
async def test_a_model_the_server_evicted_for_another_clients_model_is_a_miss() -> None:
    # Room for one of the two: loading phi3:mini evicts an idle tinyllama, as Ollama does.
    with FakeOllama(
        [TINY, PHI], memory_limit_mb=4000, evict_to_fit=True, cold_load_s=COLD_LOAD_S
    ) as server:
        async with running(server.url) as engine:
            answers = [final(await ask(engine, low())), final(await ask(engine, low("again")))]
            await load_behind_the_engines_back(server, "phi3:mini")
            assert set(server.loaded()) == {"phi3:mini"}
            answers.append(final(await ask(engine, low("and again"))))
            rate = engine.metrics.cache_hit_rate
            cached = [m.name for m in engine.cached_models()]
        loaded = set(server.loaded())
    hits = [answer.cache_hit for answer in answers if isinstance(answer, Done)]
    assert hits == [False, True, False]
    assert rate == pytest.approx(1 / 3)
    assert loaded == set(cached) == {"tinyllama"}
    assert server.handler_errors == []


@pytest.mark.integration
async def test_preloading_a_model_another_client_loaded_says_it_was_already_loaded(
    slow_loads: FakeOllama,
) -> None:
    # Two nemo-tui on one server: the second started before the first loaded the model.
    async with running(slow_loads.url) as first, running(slow_loads.url) as second:
        assert (await first.preload("tinyllama")).message.startswith("Loaded tinyllama")
        result = await second.preload("tinyllama")
    assert result.ok
    assert result.message == "tinyllama was already loaded on ollama"
    assert slow_loads.loads == 1


@pytest.mark.integration
async def test_after_each_query_the_loaded_models_are_the_servers_for_one_api_ps(
    server: FakeOllama,
) -> None:
    async with running(server.url) as engine:
        await ask(engine, low())
        await load_behind_the_engines_back(server, "phi3:mini")
        asked_before = len(server.requests_to("/api/ps"))
        await ask(engine, low("again"))
        asked = len(server.requests_to("/api/ps")) - asked_before
        cached = {m.name: m for m in engine.cached_models()}
    reported = server.loaded()
    assert set(cached) == set(reported) == {"tinyllama", "phi3:mini"}
    assert cached["phi3:mini"].size_mb == pytest.approx(reported["phi3:mini"])
    assert asked == 1


@pytest.mark.integration
async def test_a_model_past_its_expiry_leaves_the_cached_models_without_asking_the_server(
    server: FakeOllama,
) -> None:
    clock = WallClock()
    async with running(server.url, clock=clock) as engine:
        assert (await engine.preload("tinyllama")).ok
        listed = [m.name for m in engine.cached_models()]
        with_model = engine.sample().used_mb
        requests = len(server.requests)
        server.advance_clock(KEEP_ALIVE_S + 1)
        clock.advance(KEEP_ALIVE_S + 1)
        after = engine.cached_models()
        without_model = engine.sample().used_mb
        asked = len(server.requests) - requests
    assert listed == ["tinyllama"]
    assert after == []
    assert asked == 0
    # The simulated machine gets the memory back too.
    assert with_model - without_model == pytest.approx(TINY.memory_mb(2048))


@pytest.mark.integration
async def test_preloaded_model_serves_queries_with_the_load_options_it_was_loaded_with(
    server: FakeOllama,
) -> None:
    async with running(server.url) as engine:
        preloaded = await engine.preload("phi3:mini")
        assert preloaded.ok, preloaded.message
        assert set(server.loaded()) == {"phi3:mini"}
        answers = [final(await ask(engine, medium())) for _ in range(3)]
    assert all(isinstance(a, Done) and a.model == "phi3:mini" and a.cache_hit for a in answers)
    assert (server.loads, server.reloads) == (1, 0)


@pytest.mark.integration
async def test_a_model_that_does_not_fit_next_to_two_others_evicts_the_least_recently_used() -> (
    None
):
    with FakeOllama([TINY, PHI, BIO]) as server:
        # 10 GB with 2 GB in use: phi3:mini and tinyllama fit together, a 7B beside both doesn't.
        ten_gb = machine(total_mb=10 * 1024, base_used_mb=2048)
        async with running(server.url, sampler=ten_gb) as engine:
            assert (await engine.preload("phi3:mini")).ok
            assert (await engine.preload("tinyllama")).ok
            assert set(server.loaded()) == {"phi3:mini", "tinyllama"}
            third = await engine.preload("biomistral:7b")
            resident = {m.name for m in engine.cached_models()}
        assert third.ok, third.message
        assert third.evicted == ("phi3:mini",)
        assert "unloaded phi3:mini" in third.message
        assert set(server.loaded()) == {"tinyllama", "biomistral:7b"}
        assert resident == {"tinyllama", "biomistral:7b"}
    assert server.handler_errors == []


@pytest.mark.integration
async def test_a_query_that_needs_room_unloads_the_least_recently_used_model_first() -> None:
    with FakeOllama([TINY, PHI, BIO], cold_load_s=COLD_LOAD_S) as server:
        # 20 GB, 7.8 GB in use by other programs: with phi3:mini and tinyllama loaded, 8.2 GB
        # are free (enough for the high tier) but only 4.2 GB fit under the 80% cache limit.
        twenty_gb = machine(total_mb=20 * 1024, base_used_mb=7800)
        async with running(server.url, sampler=twenty_gb) as engine:
            assert (await engine.preload("phi3:mini")).ok
            assert (await engine.preload("tinyllama")).ok
            events = await ask(engine, Query("Explain it.", complexity=Complexity.HIGH))
            loaded = set(server.loaded())
    evicting = of_type(events, Evicting)
    assert [e.model for e in evicting] == ["phi3:mini"]
    assert "least recently used" in evicting[0].reason
    assert evicting[0].freed_mb == pytest.approx(PHI.memory_mb(4096))
    done = final(events)
    assert isinstance(done, Done) and done.model == "biomistral:7b" and done.cache_hit is False
    assert loaded == {"tinyllama", "biomistral:7b"}
    assert server.handler_errors == []


@pytest.mark.integration
async def test_a_simulated_4gb_machine_fills_up_and_evicts_as_a_real_one_would(
    server: FakeOllama,
) -> None:
    # 4 GB with 600 MB in use by other programs: phi3:mini fits, and takes the machine past the
    # 75% pressure threshold; tinyllama beside it would pass the 80% cache limit.
    four_gb = machine(total_mb=4096, base_used_mb=600)
    async with running(server.url, sampler=four_gb) as engine:
        empty = engine.sample()
        assert (await engine.preload("phi3:mini")).ok
        with_phi = engine.sample()
        phi_mb = server.loaded()["phi3:mini"]
        swapped = await engine.preload("tinyllama")
        with_tiny = engine.sample()
        loaded = server.loaded()
    assert with_phi.used_mb - empty.used_mb == pytest.approx(phi_mb)
    assert engine.pressure(empty) is PressureLevel.NORMAL
    assert engine.pressure(with_phi) is PressureLevel.ELEVATED
    assert swapped.ok and swapped.evicted == ("phi3:mini",)
    assert set(loaded) == {"tinyllama"}
    assert with_tiny.used_mb == pytest.approx(600 + loaded["tinyllama"])
    assert engine.pressure(with_tiny) is PressureLevel.NORMAL


@pytest.mark.integration
async def test_out_of_memory_on_the_recommended_model_falls_back_to_a_smaller_one() -> None:
    with FakeOllama([TINY, PHI], memory_limit_mb=2000) as server:
        async with running(server.url) as engine:
            events = await ask(engine, medium())
        loaded = set(server.loaded())
    assert loaded == {"tinyllama"}
    fallback = of_type(events, Fallback)
    assert [(f.from_model, f.to_model) for f in fallback] == [("phi3:mini", "tinyllama")]
    assert "requires more system memory" in fallback[0].why
    done = final(events)
    assert isinstance(done, Done)
    assert done.model == "tinyllama" and done.fallbacks == ("phi3:mini",)
    assert done.text == ANSWER


@pytest.mark.integration
async def test_with_caching_off_keep_alive_zero_is_sent_and_the_model_leaves_memory(
    server: FakeOllama,
) -> None:
    config = config_with(optimization={"enable_model_caching": False})
    async with running(server.url, config=config) as engine:
        events = await ask(engine, low())
        cached = engine.cached_models()
    assert isinstance(final(events), Done)
    assert [e.reason for e in of_type(events, Evicting)] == ["model caching is off"]
    chats = [r.body for r in server.requests_to("/api/chat")]
    assert chats and all(body["keep_alive"] == 0 for body in chats)
    await wait_for(lambda: server.loaded() == {})
    assert cached == []


# -- faults --------------------------------------------------------------------------------------


async def test_ollama_down_at_start_fails_over_to_the_embedded_backend() -> None:
    embedded = ScriptedBackend("embedded", ("smollm2:135m",))
    async with running(f"http://127.0.0.1:{free_port()}", extra=(embedded,)) as engine:
        health = {h.backend: h for h in engine.healths()}
        events = await ask(engine, Query("What is the capital of France?"))
    assert not health["ollama"].up and "ollama serve" in health["ollama"].detail
    assert health["embedded"].up
    done = final(events)
    assert isinstance(done, Done)
    assert (done.model, done.backend, done.text) == ("smollm2:135m", "embedded", "Hello there.")


@pytest.mark.integration
async def test_dropped_stream_keeps_the_partial_answer_and_the_next_query_works(
    server: FakeOllama,
) -> None:
    async with running(server.url) as engine:
        assert (await engine.preload("tinyllama")).ok
        server.fail_next(Fault.DROP, after_tokens=3)
        broken = await ask(engine, low())
        after = final(await ask(engine, low("again")))
    failed = final(broken)
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, StreamBroken)
    assert failed.partial_text == FIRST_THREE
    assert failed.model == "tinyllama"
    assert not of_type(broken, Fallback)
    assert isinstance(after, Done) and after.text == ANSWER


@pytest.mark.integration
async def test_server_killed_mid_stream_fails_cleanly_and_works_after_a_restart(
    server: FakeOllama,
) -> None:
    async with running(server.url) as engine:
        assert (await engine.preload("tinyllama")).ok
        server.tokens_per_s = 50.0
        handle = engine.submit(low())
        seen = 0
        async for event in handle.events():
            if isinstance(event, Token):
                seen += 1
                if seen == 2:
                    await asyncio.to_thread(server.stop)
        failed = await handle.result()
        while_down = await engine.submit(low("anyone there?")).result()
        server.tokens_per_s = 0.0
        server.start()
        after = await engine.submit(low("are you back?")).result()
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, StreamBroken)
    assert failed.partial_text.startswith(" ".join(ANSWER_WORDS[:2]))
    assert failed.partial_text != ANSWER
    assert isinstance(while_down, Failed)
    assert isinstance(while_down.error, BackendUnavailable)
    assert "ollama serve" in while_down.error.fix
    assert isinstance(after, Done) and after.text == ANSWER


@pytest.mark.integration
async def test_no_first_token_within_max_wait_falls_back_to_the_next_model(
    server: FakeOllama,
) -> None:
    config = config_with(preferences={"max_wait_time_ms": 200})
    async with running(server.url, config=config) as engine:
        assert (await engine.preload("phi3:mini")).ok
        server.fail_next(Fault.STALL, seconds=1.0)
        events = await ask(engine, medium())
        after = final(await ask(engine, medium()))
    fallback = of_type(events, Fallback)
    assert [(f.from_model, f.to_model) for f in fallback] == [("phi3:mini", "tinyllama")]
    assert "no answer within 200 ms" in fallback[0].why
    done = final(events)
    assert isinstance(done, Done) and done.model == "tinyllama" and done.text == ANSWER
    assert isinstance(after, Done)


@pytest.mark.integration
async def test_garbage_line_mid_stream_is_a_broken_stream_with_the_partial_answer_kept(
    server: FakeOllama,
) -> None:
    async with running(server.url) as engine:
        assert (await engine.preload("tinyllama")).ok
        server.fail_next(Fault.GARBAGE_LINE, after_tokens=3)
        failed = await engine.submit(low()).result()
        after = await engine.submit(low("again")).result()
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, StreamBroken)
    assert failed.partial_text == FIRST_THREE
    assert isinstance(after, Done) and after.text == ANSWER


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fault", "words"),
    [(Fault.ERROR_500, "timed out waiting for llama runner"), (Fault.BUSY, "server busy")],
)
async def test_http_error_before_the_answer_falls_back_to_the_next_model(
    server: FakeOllama, fault: Fault, words: str
) -> None:
    async with running(server.url) as engine:
        assert (await engine.preload("phi3:mini")).ok
        server.fail_next(fault)
        events = await ask(engine, medium())
    fallback = of_type(events, Fallback)
    assert [(f.from_model, f.to_model) for f in fallback] == [("phi3:mini", "tinyllama")]
    assert words in fallback[0].why
    done = final(events)
    assert isinstance(done, Done) and done.model == "tinyllama" and done.text == ANSWER


@pytest.mark.integration
async def test_busy_server_with_no_model_left_to_try_is_a_typed_error(server: FakeOllama) -> None:
    async with running(server.url) as engine:
        assert (await engine.preload("tinyllama")).ok
        server.fail_next(Fault.BUSY)
        failed = await engine.submit(low()).result()
        after = await engine.submit(low("again")).result()
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, ServerBusy)
    assert "server busy" in failed.error.message
    assert failed.partial_text == ""
    assert isinstance(after, Done)


@pytest.mark.integration
async def test_hand_picked_model_the_server_does_not_have_falls_back_with_its_404(
    server: FakeOllama,
) -> None:
    async with running(server.url) as engine:
        events = await ask(engine, Query("hi", model="biomistral:7b"))
        after = final(await ask(engine, low("again")))
    fallback = of_type(events, Fallback)
    assert fallback and fallback[0].from_model == "biomistral:7b"
    assert "not found" in fallback[0].why
    done = final(events)
    assert isinstance(done, Done) and done.model in {"tinyllama", "phi3:mini"}
    assert isinstance(after, Done)


@pytest.mark.integration
async def test_hand_picked_model_nobody_knows_is_a_usage_error(server: FakeOllama) -> None:
    async with running(server.url) as engine:
        failed = await engine.submit(Query("hi", model="ghost:1b")).result()
        after = await engine.submit(low()).result()
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UsageError)
    assert "ghost:1b" in failed.error.message and "tinyllama" in failed.error.fix
    assert isinstance(after, Done)


@pytest.mark.integration
async def test_prompt_the_server_cut_silently_is_reported_as_a_warning(server: FakeOllama) -> None:
    config = config_with(optimization={"context_truncation": False})
    long_question = "Summarize this report. " + "The committee met and discussed budgets. " * 800
    async with running(server.url, config=config) as engine:
        events = await ask(engine, low(long_question))
        truncations = engine.metrics.server_truncations
    done = final(events)
    assert isinstance(done, Done)
    assert done.tokens_in == 2048  # what the fake evaluated after cutting to num_ctx
    warnings = [e for e in of_type(events, Notice) if e.warning]
    assert warnings and "cut the start of the prompt" in warnings[0].message
    assert truncations == 1


@pytest.mark.integration
async def test_a_second_probe_of_an_unchanged_server_reads_no_model_again() -> None:
    extra = [FakeModel(f"custom-{i}:1b", weights_mb=600.0) for i in range(5)]
    with FakeOllama([TINY, *extra]) as fake:
        async with running(fake.url) as engine:
            shows, tags = len(fake.requests_to("/api/show")), len(fake.requests_to("/api/tags"))
            await engine.probe()
            shows_again = len(fake.requests_to("/api/show")) - shows
            tags_again = len(fake.requests_to("/api/tags")) - tags
            spec = engine.catalog.get("custom-3:1b")
    assert shows == 5  # the first probe read each model not in the catalog once
    assert tags == 1  # and listed the models once, not once per model
    assert (shows_again, tags_again) == (0, 1)
    assert spec is not None and spec.architecture is not None


@pytest.mark.integration
async def test_an_answer_that_stalls_midway_ends_with_the_partial_answer_and_frees_the_engine(
    server: FakeOllama,
) -> None:
    config = config_with(preferences={"max_stall_time_ms": 300})
    async with running(server.url, config=config) as engine:
        assert (await engine.preload("tinyllama")).ok
        server.fail_next(Fault.STALL_MID, seconds=30.0, after_tokens=3)
        started = time.perf_counter()
        stalled = await engine.submit(low()).result()
        waited = time.perf_counter() - started
        after = await engine.submit(low("again")).result()
    assert isinstance(stalled, Failed)
    assert isinstance(stalled.error, StreamStalled)
    assert f"ollama at {server.url} stopped sending the answer" in stalled.error.message
    assert "no text for 300 ms" in stalled.error.message
    assert "max_stall_time_ms" in stalled.error.fix
    assert stalled.partial_text == FIRST_THREE
    assert waited < 5.0
    assert isinstance(after, Done) and after.text == ANSWER
