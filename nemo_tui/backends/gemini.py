"""The Gemini backend: Google's Generative Language REST API, the cloud fallback.

It owns the `streamGenerateContent?alt=sse` stream, Google's RPC error bodies, and replacing a
retired model ID with a current flash model found through `models.list`.

The API key travels only in the `x-goog-api-key` header. It is never put in a URL, a message, a
log line or a repr; error texts are scrubbed of it in case a server ever echoes it.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import httpx

from nemo_tui.backends.base import (
    AuthError,
    BackendError,
    BackendHealth,
    BackendNotice,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    ModelNotFound,
    RateLimited,
    ServerBusy,
    StreamBroken,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.backends.http import (
    ErrorBody,
    decode_json,
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
    uses_tls,
)
from nemo_tui.core.models.catalog import ModelArchitecture

DEFAULT_URL = "https://generativelanguage.googleapis.com/v1beta"
FLASH_ALIAS = "gemini-flash-latest"
"""Google's alias that tracks the newest flash model; the last resort for a retired ID."""
_STABLE_FLASH = re.compile(r"gemini-(\d+(?:\.\d+)*)-flash")
_RETRY_DELAY = re.compile(r"(\d+(?:\.\d+)?)s")
_MAX_MODEL_PAGES = 10
_HEALTH_TIMEOUT_S = 5.0
"""A probe must answer quickly; a slow cloud API is as good as down for a status line."""
_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
"""Gemini's finish reasons in the words Ollama and OpenAI use; others are lower-cased."""


class GeminiBackend:
    """Google Gemini over the REST API.

    Args:
        model: The model ID, e.g. `gemini-3.5-flash` (a `models/` prefix is accepted).
        api_key: The API key; None means the backend reports itself down and refuses requests.
        base_url: The API root including the version.
        timeout_s: Connect timeout, and read timeout of the small requests.
        transport: Used instead of the network (tests pass `httpx.MockTransport`).
        api_key_env: The environment variable the key is read from, named in messages.
    """

    name = "gemini"
    local = False

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str = DEFAULT_URL,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key_env: str = "GEMINI_API_KEY",
    ) -> None:
        self.model = _bare_id(model)
        self.url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        api_key = secret_or_none(api_key)
        self._api_key = api_key or ""
        self._timeout_s = timeout_s
        # Anyone on the path could read a key sent over plain http, so it is sent that way only
        # to this machine (a local proxy or test server), never across a network.
        self._plain_http = not uses_tls(self.url) and not _is_loopback(self.url)
        headers = {"x-goog-api-key": api_key} if api_key and not self._plain_http else {}
        self._client = make_client(
            self.url,
            connect_timeout_s=timeout_s,
            read_timeout_s=timeout_s,
            transport=transport,
            headers=headers,
        )
        self._replacements: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"GeminiBackend(model={self.model!r}, url={self.url!r})"

    async def health(self) -> BackendHealth:
        """Look the configured model up (`models/{model}`); never raises.

        Without a key no request is made. A retired model still counts as up, because a current
        flash model replaces it on the first request.
        """
        if not self._api_key:
            return self._down(f"no API key: set ${self.api_key_env}")
        if self._plain_http:
            refusal = self._plain_http_refusal()
            return self._down(f"{refusal.message} — {refusal.fix}")
        started = time.perf_counter()
        probe_s = min(self._timeout_s, _HEALTH_TIMEOUT_S)
        try:
            response = await self._client.get(
                f"models/{self._model_for(self.model)}", timeout=request_timeout(probe_s, probe_s)
            )
        except httpx.RequestError as exc:
            return self._down(probe_failure(exc, "check the internet connection"))
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code == 404:
            return BackendHealth(
                self.name,
                self.url,
                up=True,
                detail=f"{self.model} is retired; a current flash model will be used",
                latency_ms=latency_ms,
            )
        if response.status_code >= 400:
            error = self._error(
                response.status_code,
                parse_error_body(response.content, http_status=response.status_code),
                model=self.model,
            )
            detail = error.message if not error.fix else f"{error.message} — {error.fix}"
            return self._down(detail)
        try:
            info = response.json()
        except ValueError:
            return self._down("the API answered with something that is not JSON")
        version = info.get("version") if isinstance(info, Mapping) else None
        return BackendHealth(
            self.name,
            self.url,
            up=True,
            version=version if isinstance(version, str) else None,
            detail=self._model_for(self.model),
            latency_ms=latency_ms,
        )

    async def list_installed(self) -> list[InstalledModel]:
        """The configured model (or what replaced it): the only one nemo-tui uses."""
        return [InstalledModel(name=self._model_for(self.model), backend=self.name)]

    async def list_loaded(self) -> list[LoadedModel]:
        """Always empty: a cloud model uses no memory here."""
        return []

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        """Always None: a cloud model needs no memory estimate."""
        return None

    async def preload(self, model: str, options: GenerationOptions) -> bool:
        """Do nothing: there is nothing to load.

        Returns:
            False: nothing was loaded.
        """
        return False

    async def unload(self, model: str) -> float | None:
        """Do nothing and return None: there is nothing to free."""
        return None

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer from `streamGenerateContent?alt=sse`.

        When the model is retired (404), a current flash model is looked up, announced with a
        BackendNotice, used for this request, and remembered for later ones.

        Raises:
            AuthError: no key, or the key is invalid or lacks permission.
            RateLimited: a quota was hit; `retry_after_s` is Google's suggested delay.
            ServerBusy: the model is overloaded.
            ModelNotFound: the model is unknown and no replacement was found.
            ContextExceeded: the prompt has more tokens than the model accepts.
            BackendUnavailable: the API cannot be reached.
            StreamBroken: the stream ended before a finish reason or carried an unreadable event.
        """
        if not self._api_key:
            raise AuthError("no Gemini API key", backend=self.name, fix=f"set ${self.api_key_env}")
        if self._plain_http:
            raise self._plain_http_refusal()
        requested = _bare_id(model)
        current = self._model_for(requested)
        body = _request_body(messages, options)
        replaced = False
        try:
            while True:
                async with self._client.stream(
                    "POST",
                    f"models/{current}:streamGenerateContent",
                    params={"alt": "sse"},
                    json=body,
                    timeout=request_timeout(self._timeout_s, None),
                ) as response:
                    if response.status_code < 400:
                        state = _StreamState(current)
                        async with aclosing(iter_sse_data(response, backend=self.name)) as payloads:
                            async for payload in payloads:
                                chunk = parse_stream_json(payload, backend=self.name)
                                if chunk.get("error") is not None:
                                    error = parse_error_body(chunk)
                                    raise self._error(_status_of(error), error, model=current)
                                for event in state.feed(chunk):
                                    yield event
                        yield state.end()
                        return
                    error = await read_error_body(response)
                if response.status_code != 404 or replaced:
                    raise self._error(response.status_code, error, model=current)
                replacement = await self._current_flash_model(exclude=current)
                if replacement is None:
                    raise self._error(response.status_code, error, model=current)
                yield BackendNotice(f"{current} is retired; using {replacement}")
                self._replacements[requested] = replacement
                current = replacement
                replaced = True
        except httpx.RequestError as exc:
            raise transport_error(
                exc,
                backend=self.name,
                url=self.url,
                fix="check the internet connection",
                streaming=True,
            ) from exc

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        """Always None: Gemini's countTokens gives a count, not the tokens."""
        return None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    def _model_for(self, model: str) -> str:
        """The model to call for a requested ID: itself, or what replaced it."""
        return self._replacements.get(model, model)

    def _plain_http_refusal(self) -> AuthError:
        return AuthError(
            f"the API key is not sent to {self.url}: it is plain http to another machine,"
            " readable on the way",
            backend=self.name,
            fix="set backends.gemini.url to an https:// address",
        )

    def _down(self, detail: str) -> BackendHealth:
        return BackendHealth(self.name, self.url, up=False, detail=self._scrub(detail))

    async def _current_flash_model(self, *, exclude: str) -> str | None:
        """The newest stable non-lite flash model that can generate content.

        Preview, lite, image and speech variants are skipped: they are retired sooner or are
        not chat models. Falls back to the `gemini-flash-latest` alias; None when listing fails.
        """
        try:
            listed = await self._list_models()
        except BackendError:
            return None
        best: tuple[tuple[int, ...], str] | None = None
        for entry in listed:
            model_id = _bare_id(str(entry.get("name", "")))
            methods = entry.get("supportedGenerationMethods")
            match = _STABLE_FLASH.fullmatch(model_id)
            if match is None or model_id == exclude:
                continue
            if not isinstance(methods, list) or "generateContent" not in methods:
                continue
            version = tuple(int(part) for part in match.group(1).split("."))
            if best is None or version > best[0]:
                best = (version, model_id)
        if best is not None:
            return best[1]
        return FLASH_ALIAS if exclude != FLASH_ALIAS else None

    async def _list_models(self) -> list[Mapping[str, Any]]:
        """Every model `models.list` returns, following its pages."""
        models: list[Mapping[str, Any]] = []
        params: dict[str, str | int] = {"pageSize": 1000}
        for _ in range(_MAX_MODEL_PAGES):
            try:
                response = await self._client.get("models", params=params)
            except httpx.RequestError as exc:
                raise transport_error(
                    exc, backend=self.name, url=self.url, fix="", streaming=False
                ) from exc
            if response.status_code >= 400:
                raise self._error(response.status_code, await read_error_body(response))
            page = decode_json(response, self.name)
            if not isinstance(page, Mapping):
                break
            entries = page.get("models")
            if isinstance(entries, list):
                models.extend(e for e in entries if isinstance(e, Mapping))
            token = page.get("nextPageToken")
            if not isinstance(token, str) or not token:
                break
            params["pageToken"] = token
        return models

    def _error(self, status: int | None, error: ErrorBody, *, model: str = "") -> BackendError:
        """Map a Google RPC error (HTTP status, `status`, `details`) to a typed error."""
        message = self._scrub(error.message)
        reasons = {d.get("reason") for d in error.details}
        rpc = error.status or ""
        if (
            "API_KEY_INVALID" in reasons
            or status in (401, 403)
            or rpc in ("PERMISSION_DENIED", "UNAUTHENTICATED")
        ):
            return AuthError(
                message,
                backend=self.name,
                status=status,
                fix=f"set a valid key in ${self.api_key_env}",
            )
        if status == 404 or rpc == "NOT_FOUND":
            return ModelNotFound(
                message,
                backend=self.name,
                status=status,
                fix=f"set backends.gemini.model to a current model (now {model or self.model})",
            )
        if status == 429 or rpc == "RESOURCE_EXHAUSTED":
            daily = any("PerDay" in str(d.get("violations", "")) for d in error.details)
            return RateLimited(
                message,
                backend=self.name,
                status=status,
                fix="the daily quota is used up; wait for it to reset or enable billing"
                if daily
                else "wait a moment and retry",
                retry_after_s=_retry_delay(error.details),
            )
        if status == 503 or rpc == "UNAVAILABLE":
            return ServerBusy(
                message, backend=self.name, status=status, fix="wait a moment and retry"
            )
        lowered = message.lower()
        if "token count" in lowered and "exceeds" in lowered:
            return ContextExceeded(
                message, backend=self.name, status=status, fix="shorten the prompt"
            )
        return BackendError(message, backend=self.name, status=status)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._api_key)


class _StreamState:
    """What has been learnt from the stream so far: finish reason, usage, model version."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish_reason: str | None = None
        self.usage: Mapping[str, Any] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """The text of one event; records usage (the last one wins) and the finish reason.

        Raises:
            BackendError: Gemini blocked the prompt.
        """
        usage = chunk.get("usageMetadata")
        if isinstance(usage, Mapping):
            self.usage = usage
        version = chunk.get("modelVersion")
        if isinstance(version, str) and version:
            self.model = version
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            feedback = chunk.get("promptFeedback")
            reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
            if reason:
                raise BackendError(
                    f"Gemini refused the prompt ({reason})",
                    backend="gemini",
                    fix="rephrase the question",
                )
            return []
        candidate = candidates[0]
        if not isinstance(candidate, Mapping):
            return []
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self.finish_reason = _FINISH_REASONS.get(reason, reason.lower())
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        events: list[StreamEvent] = []
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, Mapping) or part.get("thought"):
                continue
            text = part.get("text")
            if isinstance(text, str) and text:
                events.append(TokenChunk(text))
        return events

    def end(self) -> StreamEnd:
        """The final event; the stream has no end marker, so a missing finish reason is an error.

        Raises:
            StreamBroken: no chunk carried a finish reason.
        """
        if self.finish_reason is None:
            raise StreamBroken(
                "Gemini's answer stream ended before the answer was finished", backend="gemini"
            )
        return StreamEnd(
            prompt_tokens=_count(self.usage.get("promptTokenCount")),
            completion_tokens=_count(self.usage.get("candidatesTokenCount")),
            finish_reason=self.finish_reason,
            model=self.model,
        )


def _bare_id(model: str) -> str:
    return model.removeprefix("models/")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _status_of(error: ErrorBody) -> int | None:
    return int(error.code) if error.code and error.code.isdigit() else None


def _retry_delay(details: tuple[Mapping[str, Any], ...]) -> float | None:
    """Seconds from a `google.rpc.RetryInfo` detail (`"retryDelay": "34s"`)."""
    for detail in details:
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            match = _RETRY_DELAY.fullmatch(delay.strip())
            if match:
                return float(match.group(1))
    return None


def _request_body(messages: list[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
    """A GenerateContentRequest: system messages become `systemInstruction`, assistant `model`."""
    system = [m.content for m in messages if m.role == "system"]
    body: dict[str, Any] = {
        "contents": [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
            for m in messages
            if m.role != "system"
        ]
    }
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    if options.max_tokens is not None:
        config["maxOutputTokens"] = options.max_tokens
    if options.temperature is not None:
        config["temperature"] = options.temperature
    if config:
        body["generationConfig"] = config
    return body


def _is_loopback(url: str) -> bool:
    """Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
