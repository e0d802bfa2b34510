"""The OpenAI-compatible backend: llama.cpp `llama-server`, llama-cpp-python, vLLM, LM Studio.

It owns the `/v1` chat-completions SSE stream, the OpenAI-family error shapes, and the llama.cpp
extras (`/health`, `/props`, `/tokenize`) that live at the server root, outside `/v1`.

These servers are started with one model and its context already allocated, so there is nothing
to preload or unload and no per-request context size: `num_ctx` and the other load-time options
of `GenerationOptions` are not sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

import httpx

from nemo_tui.backends.base import (
    AuthError,
    BackendError,
    BackendHealth,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    ModelNotFound,
    StreamBroken,
    StreamEnd,
    StreamEvent,
    TokenChunk,
    classify_error,
)
from nemo_tui.backends.http import (
    ErrorBody,
    decode_json,
    drain,
    iter_sse_data,
    make_client,
    parse_error_body,
    parse_stream_json,
    probe_failure,
    read_error_body,
    request_timeout,
    scrub,
    secret_or_none,
    transport_error,
)
from nemo_tui.core.models.catalog import ModelArchitecture
from nemo_tui.units import bytes_to_mb

_START_FIX = "start the server (llama-server, vLLM, LM Studio) or fix backends.openai.url"
_TOKENIZE_ROUTES = (
    ("/tokenize", "content"),  # llama.cpp llama-server
    ("/extras/tokenize", "input"),  # llama-cpp-python
)
_CONTEXT_FIX = (
    "shorten the prompt, turn on context truncation, or restart the server with a larger"
    " context (e.g. -c)"
)
_UNSUPPORTED = frozenset({400, 404, 405, 422, 501})
"""Statuses meaning "this server has no such endpoint, or not in this form"."""


class OpenAICompatBackend:
    """A server speaking the OpenAI chat-completions API.

    Requests are not sent concurrently by the engine, and must not be: llama-cpp-python stops a
    streaming answer as soon as another request arrives (its `interrupt_requests` default), and
    the other servers share one model between all callers anyway.

    Args:
        base_url: The API root including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
        api_key: Bearer token, when the server wants one. It is sent only as a header and never
            appears in messages, logs or the repr.
        connect_timeout_s: Connect timeout for every request.
        transport: Used instead of the network (tests pass `httpx.MockTransport`).
        name: The backend's name, so two such servers can be told apart.
        api_key_env: The environment variable the key came from, named in the fix of an
            authentication error.
    """

    local = True

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "openai",
        api_key_env: str | None = None,
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/")
        self.root = self.url.removesuffix("/v1")
        """Where llama.cpp serves its extras (`/health`, `/props`, `/tokenize`)."""
        self._connect_timeout_s = connect_timeout_s
        self._api_key_env = api_key_env
        self._api_key = secret_or_none(api_key)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = make_client(
            self.url, connect_timeout_s=connect_timeout_s, transport=transport, headers=headers
        )
        self._tokenize_route: tuple[str, str] | None = None
        self._tokenize_probed = False
        self._props: _ServerProps | None = None
        self._props_read = False
        """Whether `/props` was asked since the last health probe (None means: not llama.cpp)."""
        self._counted: tuple[str, int] | None = None
        """The last text `tokenize` counted, so the answer it is sent for can be checked."""
        self._serves_one_model: bool | None = None
        """Whether `/v1/models` listed exactly one model when last asked (None: not asked yet).
        Such a server holds that model from its start; one listing several may load on demand."""

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(name={self.name!r}, url={self.url!r})"

    async def health(self) -> BackendHealth:
        """Probe `/health` (llama.cpp, vLLM) and `/v1/models`; never raises.

        `/health` is public on llama.cpp even when a key is set, so `/v1/models` is asked too: it
        checks the key and names the model being served.
        """
        started = time.perf_counter()
        self._props_read = False
        try:
            response = await self._client.get(f"{self.root}/health")
            if response.status_code >= 400 and response.status_code not in _UNSUPPORTED:
                error = parse_error_body(response.content, http_status=response.status_code)
                return self._down(f"not ready: {error.message}")
            response = await self._client.get("models")
        except httpx.RequestError as exc:
            return self._down(probe_failure(exc, _START_FIX))
        if response.status_code in (401, 403):
            return self._down(f"the API key was refused — {self._auth_fix()}")
        if response.status_code >= 400:
            error = parse_error_body(response.content, http_status=response.status_code)
            return self._down(f"HTTP {response.status_code}: {error.message}")
        try:
            ids = [_model_id(entry) for entry in _entries(response.json())]
        except ValueError:
            return self._down("the server at this address does not speak the OpenAI API")
        served = [i for i in ids if i]
        detail = "serves " + ", ".join(served[:3]) if served else "serves no model"
        if len(served) > 3:
            detail += f" and {len(served) - 3} more"
        return BackendHealth(
            self.name,
            self.url,
            up=True,
            detail=detail,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def list_installed(self) -> list[InstalledModel]:
        """The models `/v1/models` lists, with llama.cpp's `meta` size and parameter count."""
        installed: list[InstalledModel] = []
        for entry in await self._models():
            name = _model_id(entry)
            if not name:
                continue
            meta = _meta(entry)
            installed.append(
                InstalledModel(
                    name=name,
                    backend=self.name,
                    disk_bytes=_int(meta.get("size")),
                    parameter_size=_parameter_size(_int(meta.get("n_params"))),
                )
            )
        return installed

    async def list_loaded(self) -> list[LoadedModel]:
        """The model the server holds in memory.

        llama.cpp, llama-cpp-python and vLLM serve exactly one model, loaded at start, so when
        `/v1/models` lists one model it is the loaded one, unless llama.cpp's `/props` says the
        server is asleep (`--sleep-idle-seconds`: it freed the model and reloads it on the next
        request). Its size is llama.cpp's `meta.size` (the weights; the KV cache is not
        included) or None when the server does not say (vLLM). When the server lists several
        (LM Studio loading on demand, Ollama's `/v1`), which ones are in memory cannot be told
        from this API, so none are reported.
        """
        entries = [e for e in await self._models() if _model_id(e)]
        if len(entries) != 1:
            return []
        entry = entries[0]
        size = _int(_meta(entry).get("size"))
        props = await self._server_props(refresh=True)
        if props is not None and props.sleeping:
            return []
        context = (props.n_ctx if props else None) or _int(entry.get("max_model_len"))
        return [
            LoadedModel(
                name=_model_id(entry),
                backend=self.name,
                size_mb=bytes_to_mb(size) if size else None,
                context_length=context,
            )
        ]

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        """Always None: llama.cpp's `meta` lacks the layer and head counts the estimator needs."""
        return None

    async def preload(self, model: str, options: GenerationOptions) -> bool:
        """Check that the server serves the model; it was loaded when the server started.

        A model path id such as `/models/qwen2.5-0.5b.gguf` also matches `qwen2.5-0.5b.gguf` and
        `qwen2.5-0.5b`.

        Returns:
            False: checking loads nothing. A llama-server asleep reloads its model with the next
            answer, which says so itself.

        Raises:
            ModelNotFound: the server serves other models.
        """
        ids = [_model_id(entry) for entry in await self._models()]
        if any(_same_model(model, served) for served in ids if served):
            return False
        served_list = ", ".join(i for i in ids if i) or "no model"
        raise ModelNotFound(
            f"{self.url} does not serve {model}; it serves {served_list}",
            backend=self.name,
            fix="use one of the served model names, or restart the server with this model",
        )

    async def unload(self, model: str) -> float | None:
        """Do nothing and return None.

        These servers keep the model they were started with for their whole life and have no
        unload request; stopping the server is the only way to free its memory.
        """
        return None

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream an answer from `/v1/chat/completions`.

        Usage comes from the usage chunk (`stream_options.include_usage`), or from llama.cpp's
        `timings` when the server sends no usage. On llama.cpp (known by its `/props`), a prompt
        that `tokenize` just counted at or above the server's context is refused before it is
        sent, and prompt progress is asked for: its events let llama.cpp notice a closed stream
        within one batch while it is still reading the prompt, where it would otherwise read
        the whole prompt first.

        A server serving one model holds it from its start, so the answer is a cold start only
        when llama.cpp's `/props`, read again before each answer, says it is asleep; a server
        listing several models may load one on demand, and then nobody can tell.

        Raises:
            BackendUnavailable: the server cannot be reached.
            ContextExceeded: the prompt is longer than the server's context.
            ModelNotFound, AuthError, ServerBusy, OutOfMemory: what the server reported.
            StreamBroken: the stream ended early, without a finish reason (llama-cpp-python ends
                an interrupted answer that way), ended before its first event (the way
                llama-cpp-python refuses a prompt longer than its context), or carried an
                unreadable event.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        if options.temperature is not None:
            body["temperature"] = options.temperature
        serves_one = self._serves_one_model is True
        # Whether a llama-server fell asleep since the last answer is only in a fresh /props.
        props = await self._server_props(refresh=serves_one and self._props is not None)
        cold_start = (props is not None and props.sleeping) if serves_one else None
        if props is not None:
            self._check_fits(messages, props)
            body["return_progress"] = True
        usage: Mapping[str, Any] = {}
        timings: Mapping[str, Any] = {}
        finish_reason: str | None = None
        answered_by: str | None = None
        received = False
        done = False
        try:
            timeout = request_timeout(self._connect_timeout_s, None)
            async with self._client.stream(
                "POST", "chat/completions", json=body, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    error = await read_error_body(response)
                    raise self._error(response.status_code, error, model=model)
                async with aclosing(iter_sse_data(response, backend=self.name)) as payloads:
                    async for payload in payloads:
                        received = True
                        if payload == "[DONE]":
                            done = True
                            await drain(payloads)
                            break
                        chunk = parse_stream_json(payload, backend=self.name)
                        if chunk.get("error") is not None:
                            error = parse_error_body(chunk)
                            raise self._error(_status_of(error), error, model=model)
                        answered_by = _str(chunk.get("model")) or answered_by
                        usage = _mapping(chunk.get("usage")) or usage
                        timings = _mapping(chunk.get("timings")) or timings
                        for choice in _first_choices(chunk):
                            delta = _mapping(choice.get("delta"))
                            content = delta.get("content")
                            if isinstance(content, str) and content:
                                yield TokenChunk(content)
                            finish_reason = _str(choice.get("finish_reason")) or finish_reason
        except httpx.RequestError as exc:
            raise self._transport_error(exc, streaming=True) from exc
        if not received:
            # llama-cpp-python checks the prompt's length only after it has opened the stream,
            # and then closes it without a word; it has no /props to learn its context from.
            raise StreamBroken(
                "the server closed the answer stream without sending anything",
                backend=self.name,
                fix="if the prompt may be longer than the server's context, shorten it or"
                " restart the server with a larger context (--n_ctx); otherwise check the"
                " server log",
            )
        if not done or finish_reason is None:
            raise StreamBroken(
                "the answer stream ended before the server finished the answer",
                backend=self.name,
                fix="send one request at a time (llama-cpp-python stops an answer when another"
                " request arrives) and check the server log",
            )
        yield _stream_end(usage, timings, finish_reason, answered_by, cold_start)

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        """Exact tokens from llama.cpp's `/tokenize` or llama-cpp-python's `/extras/tokenize`.

        The first route that works is remembered; when neither exists (vLLM, LM Studio) this
        returns None without asking again.
        """
        if self._tokenize_probed and self._tokenize_route is None:
            return None
        routes = (self._tokenize_route,) if self._tokenize_route else _TOKENIZE_ROUTES
        for path, field in routes:
            body: dict[str, Any] = {field: text}
            if field == "content":
                body["add_special"] = False
            try:
                response = await self._client.post(f"{self.root}{path}", json=body)
            except httpx.RequestError as exc:
                raise self._transport_error(exc, streaming=False) from exc
            if response.status_code in _UNSUPPORTED:
                continue
            if response.status_code >= 400:
                raise self._error(response.status_code, await read_error_body(response))
            tokens = _token_ids(decode_json(response, self.name))
            if tokens is None:
                continue
            self._tokenize_route = (path, field)
            self._tokenize_probed = True
            self._counted = (text, len(tokens))
            return tokens
        self._tokenize_probed = True
        return None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    def _down(self, detail: str) -> BackendHealth:
        return BackendHealth(self.name, self.url, up=False, detail=scrub(detail, self._api_key))

    def _auth_fix(self) -> str:
        if self._api_key_env:
            return f"set the server's API key in ${self._api_key_env}"
        return "name the variable holding the server's API key in backends.openai.api_key_env"

    async def _models(self) -> list[Mapping[str, Any]]:
        try:
            response = await self._client.get("models")
        except httpx.RequestError as exc:
            raise self._transport_error(exc, streaming=False) from exc
        if response.status_code >= 400:
            raise self._error(response.status_code, await read_error_body(response))
        entries = _entries(decode_json(response, self.name))
        self._serves_one_model = sum(1 for entry in entries if _model_id(entry)) == 1
        return entries

    async def _server_props(self, *, refresh: bool = False) -> _ServerProps | None:
        """llama.cpp's `/props`, read once until the next health probe; None on other servers."""
        if self._props_read and not refresh:
            return self._props
        self._props_read = True
        self._props = None
        try:
            response = await self._client.get(f"{self.root}/props")
        except httpx.RequestError:
            return None
        if response.status_code >= 400:
            return None
        try:
            props = _mapping(response.json())
        except ValueError:
            return None
        settings = props.get("default_generation_settings")
        if not isinstance(settings, dict):
            return None
        self._props = _ServerProps(
            n_ctx=_int(settings.get("n_ctx")) or _int(props.get("n_ctx")),
            sleeping=props.get("is_sleeping") is True,
        )
        return self._props

    def _check_fits(self, messages: list[ChatMessage], props: _ServerProps) -> None:
        """Refuse a prompt `tokenize` counted at or above the server's context.

        Raises:
            ContextExceeded: it cannot fit, so sending it would only be refused.
        """
        if props.n_ctx is None or self._counted is None:
            return
        text, count = self._counted
        if count < props.n_ctx or text != "\n".join(m.content for m in messages):
            return
        raise ContextExceeded(
            f"the prompt is {count:,} tokens and {self.url} serves a context of"
            f" {props.n_ctx:,} tokens (its /props), so it was not sent",
            backend=self.name,
            fix=_CONTEXT_FIX,
        )

    def _error(self, status: int | None, error: ErrorBody, *, model: str = "") -> BackendError:
        """Map an OpenAI-family error to a typed error, using its type and code before its text."""
        error = replace(error, message=scrub(error.message, self._api_key))
        kind = (error.type or "").lower()
        code = (error.code or "").lower()
        if kind == "exceed_context_size_error" or code == "context_length_exceeded":
            return ContextExceeded(
                error.message,
                backend=self.name,
                status=status,
                fix=_CONTEXT_FIX,
            )
        if code == "model_not_found" or kind == "not_found_error":
            return classify_error(self.name, 404, error.message, model=model)
        if status in (401, 403) or kind in ("authentication_error", "permission_error"):
            return AuthError(error.message, backend=self.name, status=status, fix=self._auth_fix())
        return classify_error(self.name, status, error.message, model=model)

    def _transport_error(self, exc: httpx.RequestError, *, streaming: bool) -> BackendError:
        return transport_error(
            exc, backend=self.name, url=self.url, fix=_START_FIX, streaming=streaming
        )


@dataclass(frozen=True)
class _ServerProps:
    """What llama.cpp's `/props` says about the server."""

    n_ctx: int | None
    """The context of one slot."""
    sleeping: bool
    """The server freed its model after being idle and reloads it on the next request."""


def _entries(data: Any) -> list[Mapping[str, Any]]:
    """The `data` array of `/v1/models`, skipping anything that is not an object."""
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping)]


def _model_id(entry: Mapping[str, Any]) -> str:
    value = entry.get("id")
    return value if isinstance(value, str) else ""


def _meta(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(entry.get("meta"))


def _mapping(value: Any) -> Mapping[str, Any]:
    # JSON objects decode to dicts; the `Mapping` ABC check costs several times more per token.
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parameter_size(count: int | None) -> str | None:
    """Write a parameter count the way Ollama prints it (`7.6B`, `135M`)."""
    if not count:
        return None
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M"


def _same_model(wanted: str, served: str) -> bool:
    """llama.cpp names its model by path; accept the file name or its stem too."""
    if wanted == served:
        return True
    path = PurePosixPath(served.replace("\\", "/"))
    return wanted in (path.name, path.stem)


def _status_of(error: ErrorBody) -> int | None:
    """The HTTP status a mid-stream error object carries in `code` (llama.cpp, vLLM)."""
    return int(error.code) if error.code and error.code.isdigit() else None


def _first_choices(chunk: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The choices of the one answer requested; the usage chunk has none."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return []
    return [c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0]


def _token_ids(data: Any) -> list[int] | None:
    """Token ids from `{"tokens": [1, 2]}` or `{"tokens": [{"id": 1, "piece": "a"}]}`."""
    tokens = data.get("tokens") if isinstance(data, Mapping) else None
    if not isinstance(tokens, list):
        return None
    ids: list[int] = []
    for token in tokens:
        if isinstance(token, Mapping):
            token = token.get("id")
        if not isinstance(token, int) or isinstance(token, bool):
            return None
        ids.append(token)
    return ids


def _stream_end(
    usage: Mapping[str, Any],
    timings: Mapping[str, Any],
    finish_reason: str,
    model: str | None,
    cold_start: bool | None,
) -> StreamEnd:
    """Counts from `usage`, else from llama.cpp's `timings`; timings from `timings`."""
    prompt_tokens = _int(usage.get("prompt_tokens"))
    if prompt_tokens is None and _int(timings.get("prompt_n")) is not None:
        # prompt_n counts only what was evaluated; cache_n is the part reused from the cache.
        prompt_tokens = (_int(timings.get("prompt_n")) or 0) + (_int(timings.get("cache_n")) or 0)
    completion_tokens = _int(usage.get("completion_tokens"))
    if completion_tokens is None:
        completion_tokens = _int(timings.get("predicted_n"))
    prompt_s = _ms_to_s(timings.get("prompt_ms"))
    eval_s = _ms_to_s(timings.get("predicted_ms"))
    return StreamEnd(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_eval_s=prompt_s,
        eval_s=eval_s,
        total_s=prompt_s + eval_s if prompt_s is not None and eval_s is not None else None,
        finish_reason=finish_reason,
        model=model,
        cold_start=cold_start,
    )


def _ms_to_s(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000
    return None
