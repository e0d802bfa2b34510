"""The Ollama backend: Ollama's native HTTP API (`/api/*`).

It owns reading `OLLAMA_HOST`, the NDJSON answer stream, preload/unload through `keep_alive`,
and the mapping of Ollama's error bodies and mid-stream error lines to the typed errors in `base`.

Load-time options (`num_ctx`, `num_batch`, `use_mmap`, `num_thread`) make Ollama unload and reload
a model whenever they differ from the loaded runner's. This backend sends exactly what the caller
passes and adds no per-request variation of its own; the engine keeps these options stable per
model so consecutive requests never reload.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from nemo_tui.backends.base import (
    BackendError,
    BackendHealth,
    ChatMessage,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    StreamBroken,
    StreamEnd,
    StreamEvent,
    TokenChunk,
    classify_error,
)
from nemo_tui.backends.http import (
    SMALL_READ_TIMEOUT_S,
    decode_json,
    drain,
    iter_line_batches,
    make_client,
    parse_error_body,
    parse_stream_json,
    probe_failure,
    read_error_body,
    request_timeout,
    transport_error,
)
from nemo_tui.core.models.backend_names import backend_host
from nemo_tui.core.models.catalog import ModelArchitecture, architecture_from_ollama_show
from nemo_tui.errors import ConfigError, NemoError
from nemo_tui.ollama_host import ADDRESS_FORMS, InvalidOllamaHost, ollama_base_url
from nemo_tui.units import bytes_to_mb

_START_FIX = "start Ollama with `ollama serve`"
_LOAD_READ_TIMEOUT_S = 330.0
"""Loading a large model takes minutes and Ollama gives up after 5 (`OLLAMA_LOAD_TIMEOUT`);
hanging up earlier would abort the load."""
_FOREVER = timedelta(days=365 * 100)
"""A negative keep_alive is stored as Go's largest duration (~292 years): treat it as never."""
_BARE_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_NS = 1e9
WARM_LOAD_MAX_S = 0.15
"""The longest load a request may report and still count as served from memory.

Finding a runner that is already loaded takes Ollama a few milliseconds (tens on a busy server).
A load starts a runner process and waits until it reports ready, checking every 250 ms (Ollama's
runner wait loop), so even the smallest model's load reports hundreds of milliseconds: 150 ms
leaves room on both sides."""


def _keep_alive_value(keep_alive: str | int) -> str | int | float:
    """Ollama rejects a duration string without a unit (`"3600"`) with a 400; send it as seconds."""
    if isinstance(keep_alive, str) and _BARE_NUMBER.fullmatch(keep_alive.strip()):
        number = float(keep_alive)
        return int(number) if number.is_integer() else number
    return keep_alive


def load_options(options: GenerationOptions) -> dict[str, Any]:
    """The load-time options sent with every request for a model.

    Preload and chat use this one function so the loaded runner and the next request always
    agree and Ollama does not reload the model. `num_thread` is left out when unset so Ollama
    keeps choosing the thread count itself.
    """
    sent: dict[str, Any] = {
        "num_ctx": options.num_ctx,
        "num_batch": options.num_batch,
        "use_mmap": options.use_mmap,
    }
    if options.num_thread is not None:
        sent["num_thread"] = options.num_thread
    return sent


class OllamaBackend:
    """An Ollama server reached over its native API.

    Args:
        base_url: Where Ollama listens; None reads `$OLLAMA_HOST`, else `http://127.0.0.1:11434`.
            Either is parsed with `ollama_base_url`.
        keep_alive: How long Ollama keeps a model loaded after a request, when the request's
            options do not say (Go duration such as `"30m"`, or seconds; negative means forever).
        connect_timeout_s: Connect timeout for every request.
        transport: Used instead of the network (tests pass `httpx.MockTransport`).
        name: The backend's name: `ollama` on this machine, `ollama@HOST` on another host.

    Raises:
        ConfigError: `$OLLAMA_HOST` names no usable address.
        InvalidOllamaHost: `base_url` names no usable address (a config file's is checked when
            the file is loaded).
    """

    local = True

    def __init__(
        self,
        base_url: str | None = None,
        *,
        keep_alive: str | int = "30m",
        connect_timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "ollama",
    ) -> None:
        self.name = name
        if base_url is not None:
            self.url = ollama_base_url(base_url)
        else:
            environment_value = os.environ.get("OLLAMA_HOST")
            try:
                self.url = ollama_base_url(environment_value)
            except InvalidOllamaHost as exc:
                raise ConfigError(
                    str(exc), env_var="OLLAMA_HOST", fix=f"set it to {ADDRESS_FORMS}, or unset it"
                ) from exc
        self.keep_alive = keep_alive
        self._connect_timeout_s = connect_timeout_s
        self._client = make_client(
            self.url, connect_timeout_s=connect_timeout_s, transport=transport
        )
        self._disk_bytes: dict[str, int | None] = {}
        """Each model's blob size from the last `/api/tags`."""

    def __repr__(self) -> str:
        return f"OllamaBackend(url={self.url!r})"

    def _unreachable_fix(self) -> str:
        host = backend_host(self.name)
        if host is not None:
            return f"start Ollama on {host}, or correct its ollama_url under hosts:"
        return f"{_START_FIX}, or point OLLAMA_HOST / backends.ollama.url at it"

    def _start_fix(self) -> str:
        """How to get this server up: on this machine, or on the other host it runs on."""
        host = backend_host(self.name)
        return "start it with `ollama serve`" if host is None else f"start Ollama on {host}"

    async def health(self) -> BackendHealth:
        """Ask for `/api/version`; never raises.

        Returns:
            `up` with the server version, or `down` with the reason and how to start Ollama.
        """
        started = time.perf_counter()
        try:
            response = await self._client.get("/api/version")
        except httpx.RequestError as exc:
            return self._down(probe_failure(exc, self._start_fix()))
        if response.status_code >= 400:
            error = parse_error_body(response.content, http_status=response.status_code)
            return self._down(f"HTTP {response.status_code}: {error.message}")
        try:
            data = response.json()
        except ValueError:
            return self._down("the server on this address is not Ollama (no JSON version)")
        version = data.get("version") if isinstance(data, Mapping) else None
        return BackendHealth(
            self.name,
            self.url,
            up=True,
            version=version if isinstance(version, str) else None,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def list_installed(self) -> list[InstalledModel]:
        """Models on disk (`/api/tags`)."""
        data = await self._get_json("/api/tags")
        models: list[InstalledModel] = []
        for entry in _entries(data):
            name = entry.get("model") or entry.get("name")
            if not isinstance(name, str):
                continue
            details = entry.get("details")
            details = details if isinstance(details, Mapping) else {}
            size = entry.get("size")
            models.append(
                InstalledModel(
                    name=name,
                    backend=self.name,
                    disk_bytes=size if isinstance(size, int) else None,
                    parameter_size=_text(details.get("parameter_size")),
                    quantization=_text(details.get("quantization_level")),
                    family=_text(details.get("family")),
                    digest=_text(entry.get("digest")),
                )
            )
        self._disk_bytes = {_full_name(m.name): m.disk_bytes for m in models}
        return models

    async def list_loaded(self) -> list[LoadedModel]:
        """Models in memory (`/api/ps`) with their RAM+VRAM size, context and unload time.

        `context_length` is None on servers older than v0.9.7, which do not report it; `size_mb`
        is None when Ollama reports no size.
        """
        data = await self._get_json("/api/ps")
        now = datetime.now(UTC)
        loaded: list[LoadedModel] = []
        for entry in _entries(data):
            name = entry.get("model") or entry.get("name")
            if not isinstance(name, str):
                continue
            size = entry.get("size")
            vram = entry.get("size_vram")
            context = entry.get("context_length")
            loaded.append(
                LoadedModel(
                    name=name,
                    backend=self.name,
                    # A loaded model holds memory: a size of 0 means Ollama did not measure it.
                    size_mb=bytes_to_mb(size) if isinstance(size, int) and size > 0 else None,
                    vram_mb=bytes_to_mb(vram) if isinstance(vram, int) else 0.0,
                    context_length=context if isinstance(context, int) and context > 0 else None,
                    expires_at=_expiry(entry.get("expires_at"), now),
                )
            )
        return loaded

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        """Architecture figures from `/api/show`, with the blob size from `/api/tags` as weights
        (from the last model list, so a probe does not ask `/api/tags` again per model).

        Returns:
            The figures, or None when Ollama's reply lacks the layer or parameter counts (very
            old servers, unusual models); the estimator then falls back to the catalog.

        Raises:
            ModelNotFound: Ollama does not have the model.
        """
        show = await self._post_json("/api/show", {"model": model}, model=model)
        if not isinstance(show, Mapping):
            return None
        wanted = _full_name(model)
        if wanted not in self._disk_bytes:
            await self.list_installed()
        weights = self._disk_bytes.get(wanted)
        try:
            return architecture_from_ollama_show(show, weights_bytes=weights)
        except NemoError:
            return None

    async def preload(self, model: str, options: GenerationOptions) -> bool:
        """Load a model with an empty chat request carrying the same load options as a real one.

        Returns:
            Whether Ollama had to load it: its reply's `load_duration` when there is one, else
            (Ollama's load reply carries no timings) the request's own time, above
            `WARM_LOAD_MAX_S`.

        Raises:
            ModelNotFound: Ollama does not have the model.
            OutOfMemory: it does not fit.
        """
        body = {
            "model": model,
            "messages": [],
            "stream": False,
            "keep_alive": self._keep_alive(options),
            "options": load_options(options),
        }
        started = time.perf_counter()
        reply = await self._post_json(
            "/api/chat", body, model=model, read_timeout_s=_LOAD_READ_TIMEOUT_S
        )
        reported_s = _seconds(reply.get("load_duration")) if isinstance(reply, Mapping) else None
        took_s = reported_s if reported_s is not None else time.perf_counter() - started
        return took_s > WARM_LOAD_MAX_S

    async def unload(self, model: str) -> float | None:
        """Ask Ollama to unload a model now (`keep_alive: 0`).

        Returns:
            The memory `/api/ps` reported for it just before, in MB, or None when it was not
            loaded or had no size. Ollama frees it once in-flight requests finish.
        """
        wanted = _full_name(model)
        freed = next(
            (m.size_mb for m in await self.list_loaded() if _full_name(m.name) == wanted), None
        )
        body = {"model": model, "messages": [], "stream": False, "keep_alive": 0}
        await self._post_json("/api/chat", body, model=model)
        return freed

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer from `/api/chat`.

        Ollama's default prompt truncation stays on; the engine spots a silently truncated prompt
        by comparing `StreamEnd.prompt_tokens` with its own count. A thinking model's reasoning
        (`message.thinking`) is not part of the answer and is skipped.

        Raises:
            BackendUnavailable: Ollama cannot be reached.
            ModelNotFound, OutOfMemory, ServerBusy, ContextExceeded: what Ollama reported, before
                or during the stream.
            StreamBroken: the stream ended without its final object or carried an unreadable line.
        """
        run_options = load_options(options)
        if options.max_tokens is not None:
            run_options["num_predict"] = options.max_tokens
        if options.temperature is not None:
            run_options["temperature"] = options.temperature
        body = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "keep_alive": self._keep_alive(options),
            "options": run_options,
        }
        try:
            timeout = request_timeout(self._connect_timeout_s, None)
            async with self._client.stream(
                "POST", "/api/chat", json=body, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    error = await read_error_body(response)
                    raise classify_error(
                        self.name, response.status_code, error.message, model=model
                    )
                async with aclosing(iter_line_batches(response, backend=self.name)) as batches:
                    async for lines in batches:
                        for line in lines:
                            if not line.strip():
                                continue
                            chunk = parse_stream_json(line, backend=self.name)
                            if chunk.get("error") is not None:
                                # A failure once streaming started keeps HTTP 200: it is a line.
                                text = parse_error_body(chunk).message
                                raise classify_error(self.name, None, text, model=model)
                            message = chunk.get("message")
                            content = message.get("content") if isinstance(message, dict) else None
                            if isinstance(content, str) and content:
                                yield TokenChunk(content)
                            if chunk.get("done") is True:
                                # Read the end of the body first, so the connection is reused
                                # even by a caller that stops at the final message.
                                await drain(batches)
                                yield _stream_end(chunk)
                                return
        except httpx.RequestError as exc:
            raise self._transport_error(exc, streaming=True) from exc
        raise StreamBroken(
            "Ollama's answer stream ended before its final message",
            backend=self.name,
            fix="check the Ollama server log; the runner may have crashed",
        )

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        """Ollama has no tokenize endpoint, so this is always None."""
        return None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    def _down(self, detail: str) -> BackendHealth:
        return BackendHealth(self.name, self.url, up=False, detail=detail)

    def _keep_alive(self, options: GenerationOptions) -> str | int | float:
        chosen = options.keep_alive if options.keep_alive is not None else self.keep_alive
        return _keep_alive_value(chosen)

    async def _get_json(self, path: str) -> Any:
        try:
            response = await self._client.get(path)
        except httpx.RequestError as exc:
            raise self._transport_error(exc, streaming=False) from exc
        if response.status_code >= 400:
            error = await read_error_body(response)
            raise classify_error(self.name, response.status_code, error.message)
        return decode_json(response, self.name)

    async def _post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        model: str,
        read_timeout_s: float = SMALL_READ_TIMEOUT_S,
    ) -> Any:
        timeout = request_timeout(self._connect_timeout_s, read_timeout_s)
        try:
            response = await self._client.post(path, json=body, timeout=timeout)
        except httpx.RequestError as exc:
            raise self._transport_error(exc, streaming=False) from exc
        if response.status_code >= 400:
            error = await read_error_body(response)
            raise classify_error(self.name, response.status_code, error.message, model=model)
        return decode_json(response, self.name)

    def _transport_error(self, exc: httpx.RequestError, *, streaming: bool) -> BackendError:
        return transport_error(
            exc,
            backend=self.name,
            url=self.url,
            fix=self._unreachable_fix(),
            streaming=streaming,
        )


def _entries(data: Any) -> list[Mapping[str, Any]]:
    """The `models` array of a list response, skipping anything that is not an object."""
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, list):
        return []
    return [m for m in models if isinstance(m, Mapping)]


def _full_name(model: str) -> str:
    """`llama3.2` and `llama3.2:latest` name the same model."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _expiry(value: Any, now: datetime) -> datetime | None:
    """Parse `expires_at`; None for forever (> 100 years ahead) or an unreadable value."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when - now > _FOREVER:
        return None
    return when


def _seconds(value: Any) -> float | None:
    """A nanosecond duration as seconds; None when absent (Go omits zero values)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / _NS
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stream_end(chunk: Mapping[str, Any]) -> StreamEnd:
    """The counts and timings of the final (`done: true`) object.

    A missing `prompt_eval_count` stays None rather than 0: old servers omit it when the whole
    prompt came from the cache, and 0 would look like a truncated prompt. The request paid a
    load when `load_duration` is above `WARM_LOAD_MAX_S`; without it, nobody can tell.
    """
    load_s = _seconds(chunk.get("load_duration"))
    return StreamEnd(
        prompt_tokens=_count(chunk.get("prompt_eval_count")),
        completion_tokens=_count(chunk.get("eval_count")),
        load_s=load_s,
        prompt_eval_s=_seconds(chunk.get("prompt_eval_duration")),
        eval_s=_seconds(chunk.get("eval_duration")),
        total_s=_seconds(chunk.get("total_duration")),
        finish_reason=_text(chunk.get("done_reason")),
        model=_text(chunk.get("model")),
        cold_start=load_s > WARM_LOAD_MAX_S if load_s is not None else None,
    )
