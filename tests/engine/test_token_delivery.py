"""How answer text reaches readers: pieces that arrive before the reader runs come as one Token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nemo_tui.backends.base import (
    BackendNotice,
    ChatMessage,
    GenerationOptions,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.engine import Engine
from nemo_tui.events import FINAL_EVENTS, Done, EngineEvent, Notice, Query, Token
from tests.fakes import Script, ScriptedBackend


class BurstBackend(ScriptedBackend):
    """Streams a fixed list of events without ever waiting, as a fast server's buffered reads do."""

    def __init__(self, events: list[StreamEvent]) -> None:
        super().__init__()
        self.events = events

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        for event in self.events:
            yield event


async def started(backend: ScriptedBackend) -> Engine:
    engine = Engine(
        Config(), sampler=SimulatedSampler(16 * 1024), backends=[backend], monitor=False
    )
    await engine.start()
    return engine


def answer_events(events: list[EngineEvent]) -> list[tuple[str, str]]:
    """Tokens and notices, in order, as (kind, text)."""
    shown: list[tuple[str, str]] = []
    for event in events:
        if isinstance(event, Token):
            shown.append(("token", event.text))
        elif isinstance(event, Notice):
            shown.append(("notice", event.message))
    return shown


async def test_text_that_arrives_before_the_reader_runs_comes_as_one_token() -> None:
    engine = await started(ScriptedBackend())  # three pieces, no wait between them
    try:
        handle = engine.submit(Query("hi"))
        events = [event async for event in handle.events()]
    finally:
        await engine.aclose()
    assert answer_events(events) == [("token", "Hello there.")]
    done = events[-1]
    assert isinstance(done, Done) and done.text == "Hello there." and done.tokens_out == 3


async def test_a_reader_that_keeps_up_gets_one_token_per_piece() -> None:
    backend = ScriptedBackend()
    backend.script = Script(tokens=["a", "b", "c", "d"], delay_s=0.001)
    engine = await started(backend)
    try:
        events = [event async for event in engine.submit(Query("hi")).events()]
    finally:
        await engine.aclose()
    assert answer_events(events) == [("token", t) for t in "abcd"]


async def test_text_is_never_joined_across_another_event() -> None:
    backend = BurstBackend(
        [
            TokenChunk("a"),
            TokenChunk("b"),
            BackendNotice("model replaced"),
            TokenChunk("c"),
            TokenChunk("d"),
            StreamEnd(completion_tokens=4),
        ]
    )
    engine = await started(backend)
    try:
        events = [event async for event in engine.submit(Query("hi")).events()]
    finally:
        await engine.aclose()
    assert answer_events(events) == [
        ("token", "ab"),
        ("notice", "model replaced"),
        ("token", "cd"),
    ]


async def test_a_subscriber_read_late_gets_each_querys_text_apart() -> None:
    backend = ScriptedBackend()
    engine = await started(backend)
    events = engine.subscribe()
    try:
        first = await engine.submit(Query("one")).result()
        backend.script = Script(tokens=["x", "y"])
        second = await engine.submit(Query("two")).result()
        seen: list[EngineEvent] = []
        async for event in events:
            seen.append(event)
            if isinstance(event, FINAL_EVENTS) and event.query_id == second.query_id:
                break
    finally:
        await engine.aclose()
    tokens = [(e.query_id, e.text) for e in seen if isinstance(e, Token)]
    assert tokens == [(first.query_id, "Hello there."), (second.query_id, "xy")]


class ChunkyBackend(ScriptedBackend):
    """Streams `count` pieces, letting the event loop run after every `every` of them."""

    def __init__(self, count: int, every: int) -> None:
        super().__init__()
        self.pieces = [f"t{i} " for i in range(count)]
        self.every = every

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        for index, piece in enumerate(self.pieces):
            if index % self.every == 0:
                await asyncio.sleep(0)
            yield TokenChunk(piece)
        yield StreamEnd(completion_tokens=len(self.pieces))


async def test_text_read_while_more_arrives_is_neither_lost_nor_repeated() -> None:
    backend = ChunkyBackend(500, every=7)
    engine = await started(backend)
    try:
        handle = engine.submit(Query("a long story"))
        texts: list[str] = []
        async for event in handle.events():
            if isinstance(event, Token):
                texts.append(event.text)
                for _ in range(len(texts) % 3):  # a reader that is sometimes slower
                    await asyncio.sleep(0)
        done = await handle.result()
    finally:
        await engine.aclose()
    assert isinstance(done, Done)
    assert "".join(texts) == done.text == "".join(backend.pieces)
    assert 1 < len(texts) < len(backend.pieces)
