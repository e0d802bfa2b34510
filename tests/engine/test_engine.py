"""The engine with scripted in-process backends: pipeline, ordering, cancel, fallback, cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from nemo_tui.backends.base import (
    BackendError,
    ChatMessage,
    GenerationOptions,
    OutOfMemory,
    StreamBroken,
    StreamEnd,
    StreamEvent,
)
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import MemoryProfile, PressureLevel, SimulatedSampler
from nemo_tui.core.models.catalog import Catalog, ModelSpec, Tier
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import RecommendationRequest, ResidentModel, recommend
from nemo_tui.engine import Engine
from nemo_tui.events import (
    BackendsChanged,
    Cancelled,
    Done,
    EngineEvent,
    Evicting,
    Failed,
    Fallback,
    Loading,
    Notice,
    PressureChanged,
    PromptOptimized,
    Query,
    Queued,
    Recommended,
    Token,
)
from tests.fakes import Script, ScriptedBackend


def config_with(**sections: dict[str, object]) -> Config:
    config = Config()
    for name, values in sections.items():
        section = getattr(config, name)
        config = msgspec.structs.replace(
            config, **{name: msgspec.structs.replace(section, **values)}
        )
    return config


class ChangingSampler:
    """A machine whose memory a test can change between samples."""

    def __init__(self, total_gb: float = 16, available_gb: float = 12) -> None:
        self.profile = SimulatedSampler(total_gb * 1024, available_gb * 1024).sample()

    def sample(self) -> MemoryProfile:
        return self.profile

    def set_available(self, available_gb: float) -> None:
        self.profile = self.profile.with_available(available_gb * 1024)


async def started(
    backends: list[ScriptedBackend],
    *,
    config: Config | None = None,
    sampler: ChangingSampler | None = None,
    monitor: bool = False,
    history: Path | None = None,
) -> Engine:
    engine = Engine(
        config or Config(),
        sampler=sampler or ChangingSampler(),
        backends=backends,
        monitor=monitor,
        history_path=history,
    )
    await engine.start()
    return engine


async def collect(engine: Engine, query: Query) -> list[EngineEvent]:
    handle = engine.submit(query)
    return [event async for event in handle.events()]


async def test_query_streams_through_the_pipeline_in_order() -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        events = await collect(engine, Query("What is the capital of France?"))
    finally:
        await engine.aclose()
    kinds = [type(e) for e in events]
    assert kinds[:4] == [Queued, Recommended, PromptOptimized, Loading]
    assert kinds[-1] is Done
    done = events[-1]
    assert isinstance(done, Done)
    assert done.text == "Hello there."
    # The three pieces came before the reader ran, so they come joined (test_token_delivery).
    assert [e.text for e in events if isinstance(e, Token)] == ["Hello there."]
    assert done.model == "smollm2:135m"
    assert done.cache_hit is False
    assert done.tokens_out == 3


async def test_second_query_is_a_cache_hit_and_counts_in_metrics() -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        await collect(engine, Query("hi"))
        events = await collect(engine, Query("hello again"))
    finally:
        await engine.aclose()
    done = events[-1]
    assert isinstance(done, Done) and done.cache_hit is True
    assert not any(isinstance(e, Loading) for e in events)
    assert backend.calls.count(("preload", "smollm2:135m")) == 1
    assert engine.metrics.cache_hit_rate == pytest.approx(0.5)


class SilentBackend(ScriptedBackend):
    """A server that never says whether it had to load a model."""

    async def preload(self, model: str, options: GenerationOptions) -> bool | None:
        await super().preload(model, options)
        return None

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        async for event in super().stream_chat(model, messages, options):
            yield replace(event, cold_start=None) if isinstance(event, StreamEnd) else event


async def test_when_the_server_does_not_say_the_cache_hit_is_unknown_not_guessed() -> None:
    engine = await started([SilentBackend()])
    try:
        answers = [(await collect(engine, Query(text)))[-1] for text in ("hi", "hello again")]
    finally:
        await engine.aclose()
    assert [a.cache_hit for a in answers if isinstance(a, Done)] == [None, None]
    assert engine.metrics.cache_hit_rate is None


async def test_hundred_queries_complete_in_submission_order() -> None:
    backend = ScriptedBackend()
    backend.script = Script(tokens=["a", "b"], delay_s=0.001)
    engine = await started([backend])
    try:
        handles = [engine.submit(Query(f"question {i}")) for i in range(100)]
        results = await asyncio.gather(*(h.result() for h in handles))
    finally:
        await engine.aclose()
    for handle, result in zip(handles, results, strict=True):
        assert isinstance(result, Done)
        assert result.query_id == handle.query.id
        assert result.text == "ab"
    assert backend.prompts == [f"question {i}" for i in range(100)]


async def test_cancel_stops_the_stream_keeps_the_partial_answer_and_backend_stays_usable() -> None:
    backend = ScriptedBackend()
    backend.script = Script(tokens=[f"t{i} " for i in range(200)], delay_s=0.01)
    engine = await started([backend])
    try:
        handle = engine.submit(Query("tell me a long story"))
        async for event in handle.events():
            if isinstance(event, Token) and event.text == "t2 ":
                handle.cancel()
        result = await handle.result()
        assert isinstance(result, Cancelled)
        assert result.partial_text.startswith("t0 t1 t2 ")
        assert len(result.partial_text.split()) < 20
        assert backend.closed_streams == 1
        backend.script = Script(tokens=["ok"])
        after = await engine.submit(Query("and now?")).result()
    finally:
        await engine.aclose()
    assert isinstance(after, Done) and after.text == "ok"


async def test_cancelling_a_queued_query_means_it_never_runs() -> None:
    backend = ScriptedBackend()
    backend.script = Script(tokens=["x"] * 20, delay_s=0.005)
    engine = await started([backend])
    try:
        first = engine.submit(Query("first"))
        second = engine.submit(Query("second"))
        second.cancel()
        assert isinstance(await second.result(), Cancelled)
        assert isinstance(await first.result(), Done)
    finally:
        await engine.aclose()
    assert backend.prompts == ["first"]


async def test_out_of_memory_falls_back_to_the_next_smaller_model() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama", "phi3:mini"))
    ollama.scripts["phi3:mini"] = Script(
        error=OutOfMemory(
            "model requires more system memory (3.9 GiB) than is available (1.2 GiB)",
            backend="ollama",
        )
    )
    engine = await started([ollama])
    try:
        events = await collect(engine, Query("Explain how vaccines train the immune system."))
    finally:
        await engine.aclose()
    fallback = next(e for e in events if isinstance(e, Fallback))
    assert (fallback.from_model, fallback.to_model) == ("phi3:mini", "tinyllama")
    assert "requires more system memory" in fallback.why
    done = events[-1]
    assert isinstance(done, Done)
    assert done.model == "tinyllama" and done.fallbacks == ("phi3:mini",)
    assert engine.metrics.fallback_rate == 1.0


async def test_no_first_token_within_max_wait_moves_to_the_next_model() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama",))
    ollama.script = Script(first_token_delay_s=5)
    embedded = ScriptedBackend("embedded", ("smollm2:135m",))
    config = config_with(preferences={"max_wait_time_ms": 100})
    engine = await started([ollama, embedded], config=config)
    try:
        events = await collect(engine, Query("hi", model="tinyllama"))
    finally:
        await engine.aclose()
    fallback = next(e for e in events if isinstance(e, Fallback))
    assert "no answer within 100 ms" in fallback.why
    done = events[-1]
    assert isinstance(done, Done) and done.backend == "embedded"


async def test_broken_stream_keeps_the_partial_answer_and_serves_the_next_query() -> None:
    backend = ScriptedBackend()
    backend.script = Script(
        tokens=["one ", "two ", "three "],
        error=StreamBroken("the connection closed mid-answer", backend="embedded"),
        error_after_tokens=2,
    )
    engine = await started([backend])
    try:
        failed = await engine.submit(Query("count")).result()
        backend.script = Script(tokens=["fine"])
        after = await engine.submit(Query("again")).result()
    finally:
        await engine.aclose()
    assert isinstance(failed, Failed)
    assert failed.partial_text == "one two "
    assert failed.error.title == "Stream broken"
    assert isinstance(after, Done) and after.text == "fine"


async def test_a_down_backend_is_skipped_and_used_again_when_it_comes_back() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama",), up=False)
    embedded = ScriptedBackend("embedded", ("smollm2:135m",))
    config = config_with(monitor={"gauge_interval_s": 0.02, "refresh_interval_s": 0.05})
    engine = await started([ollama, embedded], config=config, monitor=True)
    events = engine.subscribe()
    try:
        first = await engine.submit(Query("hi", model="tinyllama")).result()
        assert isinstance(first, Done) and first.backend == "embedded"
        ollama.up = True
        async for event in events:
            if isinstance(event, BackendsChanged):
                assert {h.backend: h.up for h in event.healths}["ollama"]
                break
        second = await engine.submit(Query("hi", model="tinyllama")).result()
    finally:
        await engine.aclose()
    assert isinstance(second, Done) and second.backend == "ollama"


async def test_every_model_failing_ends_with_a_clear_error() -> None:
    backend = ScriptedBackend()
    backend.script = Script(error=BackendError("boom", backend="embedded", fix="restart it"))
    engine = await started([backend])
    try:
        result = await engine.submit(Query("hi")).result()
    finally:
        await engine.aclose()
    assert isinstance(result, Failed)
    assert result.error.message == "boom" and result.error.fix == "restart it"


async def test_hand_picked_model_that_does_not_fit_is_allowed_with_a_warning() -> None:
    ollama = ScriptedBackend("ollama", ("biomistral:7b", "tinyllama"))
    engine = await started([ollama], sampler=ChangingSampler(8, 3))
    try:
        events = await collect(engine, Query("hi", model="biomistral:7b"))
    finally:
        await engine.aclose()
    recommended = next(e for e in events if isinstance(e, Recommended))
    assert recommended.override
    assert "may not fit" in recommended.warning
    assert isinstance(events[-1], Done) and events[-1].model == "biomistral:7b"


async def test_with_model_caching_off_the_model_is_unloaded_after_each_answer() -> None:
    backend = ScriptedBackend()
    engine = await started(
        [backend], config=config_with(optimization={"enable_model_caching": False})
    )
    try:
        events = await collect(engine, Query("hi"))
    finally:
        await engine.aclose()
    evicting = [e for e in events if isinstance(e, Evicting)]
    assert [e.reason for e in evicting] == ["model caching is off"]
    assert backend.loaded == {}
    assert engine.cached_models() == []


async def test_server_side_prompt_cut_is_reported_not_hidden() -> None:
    backend = ScriptedBackend()
    backend.script = Script(tokens=["ok"], prompt_tokens=10)
    engine = await started(
        [backend], config=config_with(optimization={"context_truncation": False})
    )
    long_question = "Summarize this report. " + "The committee met and discussed budgets. " * 300
    try:
        events = await collect(engine, Query(long_question))
    finally:
        await engine.aclose()
    warnings = [e for e in events if isinstance(e, Notice) and e.warning]
    assert warnings and "cut the start of the prompt" in warnings[0].message
    assert engine.metrics.server_truncations == 1


async def test_long_prompt_is_optimized_to_the_model_budget() -> None:
    backend = ScriptedBackend()
    engine = await started([backend], sampler=ChangingSampler(1, 0.55))
    document = "\n\n".join(
        f"Paragraph {i}: the quarterly logistics review covered shipping lanes and staffing."
        for i in range(800)
    )
    try:
        events = await collect(engine, Query(document + "\n\nWhat did paragraph 5 cover?"))
    finally:
        await engine.aclose()
    optimized = next(e for e in events if isinstance(e, PromptOptimized))
    assert optimized.result.truncated
    assert optimized.result.optimized_tokens <= optimized.budget_tokens
    assert backend.prompts[0].endswith("What did paragraph 5 cover?")


async def test_preload_evicts_least_recently_used_and_refuses_what_cannot_fit() -> None:
    ollama = ScriptedBackend(
        "ollama",
        ("tinyllama", "phi3:mini", "biomistral:7b"),
        sizes_mb={"tinyllama": 900, "phi3:mini": 3900},
    )
    sampler = ChangingSampler(8, 4)
    engine = await started([ollama], sampler=sampler)
    try:
        loaded = await engine.preload("tinyllama")
        assert loaded.ok and "Loaded tinyllama" in loaded.message
        refused = await engine.preload("biomistral:7b")
        assert not refused.ok
        assert "Not loading biomistral:7b" in refused.message
        assert ("preload", "biomistral:7b") not in ollama.calls
        sampler.set_available(5)
        swapped = await engine.preload("phi3:mini")
        assert swapped.ok, swapped.message
        assert swapped.evicted == ("tinyllama",)
        cleared = await engine.clear_cache()
        assert cleared.ok and cleared.evicted == ("phi3:mini",)
    finally:
        await engine.aclose()
    assert ollama.loaded == {}


async def monitored(ollama: ScriptedBackend) -> tuple[Engine, ChangingSampler]:
    """An engine whose monitor samples a 16 GB machine every 20 ms."""
    sampler = ChangingSampler(16, 12)
    config = config_with(monitor={"gauge_interval_s": 0.02, "refresh_interval_s": 60})
    return await started([ollama], sampler=sampler, config=config, monitor=True), sampler


async def next_event(
    events: AsyncIterator[EngineEvent], wanted: Callable[[EngineEvent], bool]
) -> EngineEvent:
    """The next event `wanted` accepts (bounded, so a missing one fails the test)."""
    async with asyncio.timeout(5):
        async for event in events:
            if wanted(event):
                return event
    raise AssertionError("the event stream ended")


async def test_critical_pressure_evicts_all_but_the_model_in_use() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama", "phi3:mini"))
    engine, sampler = await monitored(ollama)
    events = engine.subscribe()
    try:
        assert (await engine.preload("tinyllama")).ok
        assert (await engine.preload("phi3:mini")).ok
        sampler.set_available(0.5)
        event = await next_event(events, lambda e: isinstance(e, PressureChanged))
    finally:
        await engine.aclose()
    assert isinstance(event, PressureChanged)
    assert event.change.current is PressureLevel.CRITICAL
    assert "tinyllama" in event.action and "phi3:mini" in event.action
    assert ollama.loaded == {}


async def test_stats_report_the_documented_sections() -> None:
    engine = await started([ScriptedBackend()])
    try:
        await collect(engine, Query("hi"))
        stats = engine.stats()
    finally:
        await engine.aclose()
    assert set(stats) == {"system", "models", "optimization", "metrics", "backends"}
    assert stats["metrics"]["queries"] == 1  # type: ignore[index]
    assert stats["models"]["resident"][0]["name"] == "smollm2:135m"  # type: ignore[index]


async def test_metrics_history_survives_a_restart(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    engine = await started([ScriptedBackend()], history=history)
    try:
        await collect(engine, Query("What is the secret plan?"))
    finally:
        await engine.aclose()
    assert "secret plan" not in history.read_text()
    again = await started([ScriptedBackend()], history=history)
    await again.aclose()
    assert again.metrics.queries == 1


async def test_a_model_that_ran_out_of_memory_is_passed_over_next_time() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama", "phi3:mini"))
    ollama.scripts["phi3:mini"] = Script(
        error=OutOfMemory("model requires more system memory", backend="ollama")
    )
    engine = await started([ollama])
    try:
        await collect(engine, Query("Explain how vaccines train the immune system."))
        events = await collect(engine, Query("Explain how antibiotics stop bacteria."))
    finally:
        await engine.aclose()
    recommended = next(e for e in events if isinstance(e, Recommended))
    assert recommended.recommendation.model == "tinyllama"
    assert not any(isinstance(e, Fallback) for e in events)
    assert ollama.calls.count(("chat", "phi3:mini")) == 1


async def test_idle_engine_preloads_the_model_most_used_lately() -> None:
    backend = ScriptedBackend()
    config = config_with(monitor={"gauge_interval_s": 0.02, "refresh_interval_s": 0.05})
    engine = await started([backend], config=config, monitor=True)
    events = engine.subscribe()
    try:
        await collect(engine, Query("hi"))
        await engine.clear_cache()
        async for event in events:
            if isinstance(event, Loading) and event.query_id == 0:
                break
    finally:
        await engine.aclose()
    assert event.model == "smollm2:135m"
    assert backend.calls.count(("preload", "smollm2:135m")) == 2


async def test_predictive_preloading_can_be_turned_off() -> None:
    backend = ScriptedBackend()
    config = config_with(
        monitor={"gauge_interval_s": 0.02, "refresh_interval_s": 0.05},
        optimization={"predictive_preloading": False},
    )
    engine = await started([backend], config=config, monitor=True)
    try:
        await collect(engine, Query("hi"))
        await engine.clear_cache()
        await asyncio.sleep(0.3)
    finally:
        await engine.aclose()
    assert backend.calls.count(("preload", "smollm2:135m")) == 1


async def test_a_dead_server_is_skipped_for_the_rest_of_the_chain() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama", "phi3:mini"))
    embedded = ScriptedBackend("embedded", ("smollm2:135m",))
    engine = await started([ollama, embedded])
    try:
        ollama.up = False
        events = await collect(engine, Query("Explain how vaccines train the immune system."))
    finally:
        await engine.aclose()
    fallbacks = [(e.from_model, e.to_model) for e in events if isinstance(e, Fallback)]
    assert fallbacks == [("phi3:mini", "tinyllama"), ("tinyllama", "smollm2:135m")]
    assert ollama.calls == [("preload", "phi3:mini")]  # tinyllama was not tried on a dead server
    assert isinstance(events[-1], Done) and events[-1].backend == "embedded"


async def test_pressure_that_stays_critical_keeps_relieving() -> None:
    ollama = ScriptedBackend("ollama", ("tinyllama", "phi3:mini"))
    engine, sampler = await monitored(ollama)
    events = engine.subscribe()
    try:
        assert (await engine.preload("tinyllama")).ok
        sampler.set_available(0.5)
        await next_event(events, lambda e: isinstance(e, PressureChanged))
        # Another client of the server loads a model while the machine is still short.
        await ollama.preload("phi3:mini", GenerationOptions())
        await engine.refresh()
        event = await next_event(
            events, lambda e: isinstance(e, Evicting) and e.model == "phi3:mini"
        )
    finally:
        await engine.aclose()
    assert isinstance(event, Evicting) and "critical" in event.reason
    assert ollama.loaded == {}


async def test_closing_the_engine_ends_running_and_queued_queries_as_cancelled() -> None:
    backend = ScriptedBackend()
    backend.script = Script(tokens=[f"t{i} " for i in range(500)], delay_s=0.01)
    engine = await started([backend])
    running = engine.submit(Query("a long story"))
    queued = engine.submit(Query("and another"))
    async for event in running.events():
        if isinstance(event, Token) and event.text == "t2 ":
            break

    await engine.aclose()

    async with asyncio.timeout(5):
        first, second = await running.result(), await queued.result()
    assert isinstance(first, Cancelled) and first.partial_text.startswith("t0 t1 t2 ")
    assert isinstance(second, Cancelled) and second.partial_text == ""
    assert backend.prompts == ["a long story"]


class ClosingBackend(ScriptedBackend):
    """Remembers that it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_closing_after_the_worker_died_still_ends_queries_and_closes_backends() -> None:
    backend = ClosingBackend()
    engine = await started([backend])
    engine._queue.put_nowait(object())  # type: ignore[arg-type]  # a bug kills the worker
    await asyncio.sleep(0.05)
    stranded = engine.submit(Query("anyone?"))

    await engine.aclose()

    async with asyncio.timeout(5):
        assert isinstance(await stranded.result(), Cancelled)
    assert backend.closed


class SlowPreloadBackend(ScriptedBackend):
    """Holds a preload until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def preload(self, model: str, options: GenerationOptions) -> None:
        await self.release.wait()
        await super().preload(model, options)


async def test_a_query_cancelled_while_a_preload_holds_the_engine_never_runs() -> None:
    backend = SlowPreloadBackend()
    engine = await started([backend])
    try:
        preload = asyncio.ensure_future(engine.preload("smollm2:135m"))
        await asyncio.sleep(0.05)
        handle = engine.submit(Query("never mind"))
        await asyncio.sleep(0.05)
        handle.cancel()
        backend.release.set()
        async with asyncio.timeout(5):
            result = await handle.result()
        await preload
    finally:
        await engine.aclose()
    assert isinstance(result, Cancelled)
    assert backend.prompts == []


# A simulated machine fills up as models load.

TWO_AND_A_HALF_GB = 2560.0


def writers() -> Catalog:
    """Two local models of 2.5 GB each, whatever their context."""
    return Catalog(
        ModelSpec(
            name,
            Tier.LOW,
            "ollama",
            "a 2.5 GB writer",
            min_memory_mb=TWO_AND_A_HALF_GB,
            max_memory_mb=TWO_AND_A_HALF_GB,
        )
        for name in ("writer-a", "writer-b")
    )


async def on_a_4gb_machine(
    sizes_mb: dict[str, float | None],
) -> tuple[Engine, ScriptedBackend]:
    """An engine on a simulated 4 GB machine where other programs use 600 MB."""
    ollama = ScriptedBackend("ollama", ("writer-a", "writer-b"), sizes_mb=sizes_mb)
    engine = Engine(
        Config(),
        sampler=SimulatedSampler(4096, 4096 - 600),
        backends=[ollama],
        catalog=writers(),
        monitor=False,
    )
    await engine.start()
    return engine, ollama


async def test_a_model_loaded_on_a_simulated_machine_counts_in_its_memory() -> None:
    size = {"writer-a": TWO_AND_A_HALF_GB, "writer-b": TWO_AND_A_HALF_GB}
    engine, ollama = await on_a_4gb_machine(size)
    try:
        empty = engine.sample()
        assert (await engine.preload("writer-a")).ok
        loaded = engine.sample()
        # The recommender, asked for the other model, now needs writer-a's room.
        other = engine.catalog.get("writer-b")
        assert other is not None
        resident = {
            m.name: ResidentModel(m.name, m.size_mb, m.context_length)
            for m in engine.cached_models()
        }
        request = RecommendationRequest(Complexity.LOW, Catalog([other]), loaded=resident)
        second = recommend(loaded, request, engine.config)
        swapped = await engine.preload("writer-b")
        system = engine.stats()["system"]
    finally:
        await engine.aclose()
    assert loaded.used_mb - empty.used_mb == TWO_AND_A_HALF_GB
    assert engine.pressure(empty) is PressureLevel.NORMAL
    assert engine.pressure(loaded) is PressureLevel.ELEVATED
    assert (second.model, second.fits, second.evict) == ("writer-b", True, ("writer-a",))
    assert swapped.ok and swapped.evicted == ("writer-a",)
    assert set(ollama.loaded) == {"writer-b"}
    assert isinstance(system, dict) and system["used_mb"] == 600 + TWO_AND_A_HALF_GB


async def test_a_loaded_model_of_unknown_size_counts_its_catalog_estimate() -> None:
    engine, _ = await on_a_4gb_machine({"writer-a": None})
    try:
        assert (await engine.preload("writer-a")).ok
        assert engine.cached_models()[0].size_mb is None
        used = engine.sample().used_mb
    finally:
        await engine.aclose()
    assert used == 600 + TWO_AND_A_HALF_GB


async def test_previews_a_run_and_its_fallback_read_an_attached_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "scores.csv"
    data.write_text("name,score\nada,90\nbob,70\n", encoding="utf-8")
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == data:
            opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    ollama = ScriptedBackend("ollama", ("tinyllama", "phi3:mini"))
    ollama.scripts["phi3:mini"] = Script(
        error=OutOfMemory("model requires more system memory", backend="ollama")
    )
    engine = await started([ollama])
    query = Query("Explain how vaccines train the immune system.", data_file=data)
    try:
        # The dashboard previews the plan each time typing pauses.
        previews = [engine.plan_query(query) for _ in range(3)]
        events = await collect(engine, query)
    finally:
        await engine.aclose()
    done = events[-1]
    assert isinstance(done, Done) and done.fallbacks == ("phi3:mini",)
    assert all("Data file: scores.csv (CSV, 2 rows" in plan.prompt for plan in previews)
    assert len(ollama.prompts) == 2
    assert all("Data file: scores.csv (CSV, 2 rows" in prompt for prompt in ollama.prompts)
    assert len(opened) == 1


async def test_a_long_session_keeps_a_bounded_record_of_recent_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Predictive preloading's record of answers does not grow with every query forever."""
    from nemo_tui.engine import pipeline

    monkeypatch.setattr(pipeline, "USAGE_RECORDS_KEPT", 3)
    engine = await started([ScriptedBackend()])
    try:
        for n in range(6):
            await collect(engine, Query(f"question {n}"))
        kept = list(engine._env.usage)
    finally:
        await engine.aclose()

    assert len(kept) == 3
    assert kept == sorted(kept, key=lambda record: record.at)
