"""The one small interface every model backend implements, its value types and its error family.

A backend is a model server (Ollama, an OpenAI-compatible server, Gemini) or llama.cpp running
in-process. The engine talks to all of them through `Backend`; nothing above this layer knows
which wire format is underneath.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nemo_tui.errors import NemoError

if TYPE_CHECKING:
    from nemo_tui.core.models.catalog import ModelArchitecture


@dataclass(frozen=True)
class BackendHealth:
    """The result of probing a backend."""

    backend: str
    """The backend's name, e.g. `ollama`."""
    url: str
    """Where it was probed (a file path for the embedded backend)."""
    up: bool
    version: str | None = None
    detail: str = ""
    """Why it is down, or a note such as the model it serves."""
    latency_ms: float | None = None


@dataclass(frozen=True)
class InstalledModel:
    """A model the backend can serve without downloading anything."""

    name: str
    backend: str
    disk_bytes: int | None = None
    parameter_size: str | None = None
    """As the server prints it, e.g. `7.6B`."""
    quantization: str | None = None
    family: str | None = None
    digest: str | None = None
    """What the server says identifies this exact build of the model (Ollama's digest), so
    figures read for it can be kept until it changes."""


@dataclass(frozen=True)
class LoadedModel:
    """A model resident in memory, as the backend reports it."""

    name: str
    backend: str
    size_mb: float | None
    """Total memory the model uses, RAM and VRAM together; None when the backend does not say
    (vLLM, a llama-server without `meta.size`), which is not the same as nothing."""
    vram_mb: float = 0.0
    context_length: int | None = None
    expires_at: datetime | None = None
    """When the backend will unload it; None means never or unknown."""


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation."""

    role: str
    """`system`, `user` or `assistant`."""
    content: str


@dataclass(frozen=True)
class GenerationOptions:
    """Load-time and run-time settings for one request.

    Load-time settings (`num_ctx`, `num_batch`, `use_mmap`, `num_thread`) make Ollama reload a model
    when they change, so callers keep them stable per model.
    """

    num_ctx: int = 2048
    num_batch: int = 512
    use_mmap: bool = True
    num_thread: int | None = None
    max_tokens: int | None = None
    """Largest number of tokens to generate; None lets the backend decide."""
    keep_alive: str | int | None = None
    """How long the backend keeps the model loaded afterwards; 0 unloads it at once."""
    temperature: float | None = None


@dataclass(frozen=True)
class TokenChunk:
    """A piece of the answer."""

    text: str


@dataclass(frozen=True)
class BackendNotice:
    """Something the user should know that does not stop the answer, e.g. a replaced model ID."""

    message: str


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a successful stream, with the counts and timings the backend reported."""

    prompt_tokens: int | None = None
    """Prompt tokens the server says it evaluated (`prompt_eval_count`, `usage.prompt_tokens`)."""
    completion_tokens: int | None = None
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    total_s: float | None = None
    finish_reason: str | None = None
    model: str | None = None
    """The model that actually answered, when the backend says (it may differ from the request)."""
    cold_start: bool | None = None
    """Whether the server had to load the model for this request (True) or served it from
    memory (False), as the server reports it; None when it does not say."""


StreamEvent = TokenChunk | BackendNotice | StreamEnd


@runtime_checkable
class Backend(Protocol):
    """What the engine needs from a model backend."""

    name: str
    """Short unique name: `ollama`, `openai`, `gemini`, `embedded`."""
    local: bool
    """True when the model runs on this machine and uses its memory."""

    async def health(self) -> BackendHealth:
        """Probe the backend quickly; never raises."""
        ...

    async def list_installed(self) -> list[InstalledModel]:
        """Models the backend can serve."""
        ...

    async def list_loaded(self) -> list[LoadedModel]:
        """Models resident in memory now."""
        ...

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        """Architecture figures for the memory estimator, or None when the backend has none."""
        ...

    async def preload(self, model: str, options: GenerationOptions) -> bool | None:
        """Load a model with the given load-time options so the next request starts fast.

        Returns:
            True when this call loaded the model, False when nothing had to be loaded (it was in
            memory already, or the server holds its model for its whole life), None when the
            server does not say.
        """
        ...

    async def unload(self, model: str) -> float | None:
        """Unload a model; returns the memory freed in MB where it can be measured."""
        ...

    def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer: TokenChunks (and notices), then exactly one StreamEnd.

        Closing the iterator early cancels the request and leaves the backend usable.
        """
        ...

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        """Exact tokens for `text`, or None when the backend cannot tokenize."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and loaded in-process models."""
        ...


class BackendError(NemoError):
    """A backend failed. Subclasses say how; the engine's fallback chain branches on them.

    Args:
        message: What the backend said, in plain words.
        backend: Which backend failed.
        status: The HTTP status, when there was one.
        fix: What the user can do.
    """

    title = "Backend error"

    def __init__(
        self, message: str, *, backend: str, status: int | None = None, fix: str = ""
    ) -> None:
        super().__init__(message, fix=fix)
        self.backend = backend
        self.status = status


class BackendUnavailable(BackendError):
    """The backend cannot be reached: connection refused, DNS failure, connect timeout."""

    title = "Backend unreachable"


class ModelNotFound(BackendError):
    """The backend does not have the model."""

    title = "Model not found"


class OutOfMemory(BackendError):
    """The model does not fit: system RAM, GPU memory, or the runner died for lack of it."""

    title = "Out of memory"

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        status: int | None = None,
        fix: str = "",
        required_mb: float | None = None,
        available_mb: float | None = None,
    ) -> None:
        super().__init__(message, backend=backend, status=status, fix=fix)
        self.required_mb = required_mb
        self.available_mb = available_mb


class ServerBusy(BackendError):
    """The server is overloaded or its queue is full; trying again later may work."""

    title = "Server busy"

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        status: int | None = None,
        fix: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, backend=backend, status=status, fix=fix)
        self.retry_after_s = retry_after_s


class RateLimited(ServerBusy):
    """A cloud quota or rate limit was hit."""

    title = "Rate limited"


class ContextExceeded(BackendError):
    """The prompt is longer than the context the server allows."""

    title = "Prompt too long"


class AuthError(BackendError):
    """The API key is missing, invalid or lacks permission."""

    title = "Authentication failed"


class StreamBroken(BackendError):
    """The answer stream ended early or carried something unreadable."""

    title = "Stream broken"


# Substrings Ollama's runner uses for out-of-memory (reference §1.10, `llm/status.go`), plus the
# system-RAM refusal, so every memory failure lands in one error type.
_OOM_MARKERS = (
    "out of memory",
    # Ollama v0.30+: "llama-server reported out-of-memory during startup: ..."
    "out-of-memory",
    "out of device memory",
    "cudamalloc failed",
    "hipmalloc failed",
    "failed to allocate",
    "allocation failed",
    "not enough memory",
    "insufficient memory",
    "vk_error_out_of_device_memory",
    "erroroutofmemory",
    "requires more system memory",
)
_SYSTEM_MEMORY = re.compile(
    r"model requires more system memory \(([\d.]+) ([KMGT]?i?B)\) than is available"
    r" \(([\d.]+) ([KMGT]?i?B)\)"
)
_MODEL_MISSING = re.compile(r"model ['\"]?.+?['\"]? not found")
_UNIT_MB = {
    "B": 1 / 2**20,
    "KB": 1 / 1024,
    "KIB": 1 / 1024,
    "MB": 1.0,
    "MIB": 1.0,
    "GB": 1024.0,
    "GIB": 1024.0,
    "TB": 2**20,
    "TIB": 2**20,
}


def is_out_of_memory_message(message: str) -> bool:
    """True when a server or runner message means the model did not fit in memory."""
    lowered = message.lower()
    return any(marker in lowered for marker in _OOM_MARKERS)


def classify_error(
    backend: str, status: int | None, message: str, *, model: str = ""
) -> BackendError:
    """Map a status and message from any local server to the typed error the engine acts on.

    The order matters: a 404 is a missing model even if the text mentions memory, and the
    system-memory message is parsed for its sizes before the generic out-of-memory markers.
    """
    lowered = message.lower()
    if status == 404 or _MODEL_MISSING.search(lowered):
        name = model or "the model"
        fix = (
            f"run `ollama pull {model}`"
            if backend == "ollama" and model
            else (f"check that {name} is installed on the {backend} server")
        )
        return ModelNotFound(message, backend=backend, status=status, fix=fix)
    if status == 503 or "maximum pending requests" in lowered or "server busy" in lowered:
        return ServerBusy(message, backend=backend, status=status, fix="wait a moment and retry")
    sizes = _SYSTEM_MEMORY.search(message)
    if sizes or is_out_of_memory_message(message):
        required = available = None
        if sizes:
            required = float(sizes.group(1)) * _UNIT_MB[sizes.group(2).upper()]
            available = float(sizes.group(3)) * _UNIT_MB[sizes.group(4).upper()]
        return OutOfMemory(
            message,
            backend=backend,
            status=status,
            fix="unload other models, use a smaller context or a smaller model",
            required_mb=required,
            available_mb=available,
        )
    if (
        "model runner has unexpectedly stopped" in lowered
        or "process has terminated" in lowered
        # The same runner death on servers before the message above existed.
        or "error was encountered while running the model: unexpected eof" in lowered
    ):
        return OutOfMemory(
            message,
            backend=backend,
            status=status,
            fix="the runner died, often for lack of memory: use a smaller context or model,"
            " and check the server logs",
        )
    if (
        "context length" in lowered
        or "context size" in lowered
        or "context window" in lowered
        or "context_length_exceeded" in lowered
    ):
        return ContextExceeded(
            message,
            backend=backend,
            status=status,
            fix="shorten the prompt, turn on context truncation, or use a larger context",
        )
    if status in (401, 403):
        return AuthError(message, backend=backend, status=status, fix="check the API key")
    return BackendError(message, backend=backend, status=status)
