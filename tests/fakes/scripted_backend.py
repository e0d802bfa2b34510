"""An in-process backend whose answers and failures a test scripts, for engine and UI tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nemo_tui.backends.base import (
    BackendError,
    BackendHealth,
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    ModelNotFound,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.core.models.catalog import ModelArchitecture


@dataclass
class Script:
    """How the next answers go: tokens, a delay between them, or an error at some point."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", "."])
    delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    error: BackendError | None = None
    error_after_tokens: int = 0
    prompt_tokens: int | None = None
    """What the fake server claims it evaluated; None reports the real count."""


class ScriptedBackend:
    """A `Backend` that serves named models from memory and follows a `Script`.

    Args:
        name: The backend name the catalog's models refer to (e.g. `ollama` or `embedded`).
        models: Installed model names.
        local: Whether it counts as local.
        sizes_mb: Resident size reported once a model is loaded; None reports none, as vLLM
            does.
    """

    def __init__(
        self,
        name: str = "embedded",
        models: tuple[str, ...] = ("smollm2:135m",),
        *,
        local: bool = True,
        sizes_mb: dict[str, float | None] | None = None,
        up: bool = True,
    ) -> None:
        self.name = name
        self.local = local
        self.models = models
        self.sizes_mb = sizes_mb or {}
        self.up = up
        self.script = Script()
        self.scripts: dict[str, Script] = {}
        """Per-model scripts; a model without one follows `script`."""
        self.loaded: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.prompts: list[str] = []
        self.closed_streams = 0

    async def health(self) -> BackendHealth:
        return BackendHealth(
            self.name,
            "memory://scripted",
            self.up,
            "1.0" if self.up else None,
            "" if self.up else "connection refused",
        )

    async def list_installed(self) -> list[InstalledModel]:
        return [InstalledModel(m, self.name) for m in self.models]

    async def list_loaded(self) -> list[LoadedModel]:
        return [
            LoadedModel(m, self.name, self.sizes_mb.get(m, 100.0), context_length=ctx)
            for m, ctx in self.loaded.items()
        ]

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        return None

    async def preload(self, model: str, options: GenerationOptions) -> bool:
        self.calls.append(("preload", model))
        self._check(model)
        cold = self.loaded.get(model) != options.num_ctx
        self.loaded[model] = options.num_ctx
        return cold

    async def unload(self, model: str) -> float | None:
        self.calls.append(("unload", model))
        self.loaded.pop(model, None)
        return self.sizes_mb.get(model)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append(("chat", model))
        self.prompts.append(messages[-1].content)
        script = self.scripts.get(model, self.script)
        # Like a real server, one that serves a model it did not hold had to load it first.
        cold_start = model not in self.loaded if self.local else None
        try:
            self._check(model)
            if script.error is not None and script.error_after_tokens == 0:
                raise script.error
            if script.first_token_delay_s:
                await asyncio.sleep(script.first_token_delay_s)
            for index, token in enumerate(script.tokens):
                if script.error is not None and index == script.error_after_tokens:
                    raise script.error
                if script.delay_s:
                    await asyncio.sleep(script.delay_s)
                yield TokenChunk(token)
            yield StreamEnd(
                prompt_tokens=script.prompt_tokens,
                completion_tokens=len(script.tokens),
                finish_reason="stop",
                model=model,
                cold_start=cold_start,
            )
        finally:
            self.closed_streams += 1

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        return None

    async def aclose(self) -> None:
        return None

    def _check(self, model: str) -> None:
        if not self.up:
            raise BackendUnavailable("connection refused", backend=self.name)
        if model not in self.models:
            raise ModelNotFound(f"model '{model}' not found", backend=self.name)
