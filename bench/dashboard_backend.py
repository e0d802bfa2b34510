"""An in-process fake backend for the dashboard benchmark: one model, a fixed token rate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nemo_tui.backends.base import (
    BackendHealth,
    ChatMessage,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.core.models.catalog import ModelArchitecture

STREAM_RATE = 2000
TICK_S = 0.01
"""The fake stream sends STREAM_RATE * TICK_S tokens every TICK_S."""


class StreamingBackend:
    """An in-process `Backend` serving one model that answers at a fixed token rate."""

    name = "ollama"
    local = True

    def __init__(self, tokens: list[str] | None = None) -> None:
        self.tokens = tokens or ["Ready."]
        self.loaded: set[str] = set()

    async def health(self) -> BackendHealth:
        return BackendHealth(self.name, "memory://bench", True, "bench")

    async def list_installed(self) -> list[InstalledModel]:
        return [InstalledModel("tinyllama", self.name)]

    async def list_loaded(self) -> list[LoadedModel]:
        return [LoadedModel(m, self.name, 700.0, context_length=2048) for m in self.loaded]

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        return None

    async def preload(self, model: str, options: GenerationOptions) -> None:
        self.loaded.add(model)

    async def unload(self, model: str) -> float | None:
        self.loaded.discard(model)
        return 700.0

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        per_tick = max(1, int(STREAM_RATE * TICK_S))
        for start in range(0, len(self.tokens), per_tick):
            await asyncio.sleep(TICK_S)
            for token in self.tokens[start : start + per_tick]:
                yield TokenChunk(token)
        yield StreamEnd(completion_tokens=len(self.tokens), model=model)

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        return None

    async def aclose(self) -> None:
        return None


def stream_tokens(count: int) -> list[str]:
    """Markdown-ish tokens: words, bold, and a paragraph break every 200 tokens."""
    tokens = []
    for i in range(count):
        if i % 200 == 199:
            tokens.append("\n\n")
        elif i % 50 == 0:
            tokens.append(f"**w{i}** ")
        else:
            tokens.append(f"w{i} ")
    return tokens
