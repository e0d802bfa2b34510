"""The Gemini backend against canned Generative Language API replies (reference §4)."""

from __future__ import annotations

import httpx
import pytest

from nemo_tui.backends.base import (
    AuthError,
    BackendError,
    BackendNotice,
    BackendUnavailable,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    ModelNotFound,
    RateLimited,
    ServerBusy,
    StreamBroken,
    StreamEnd,
    TokenChunk,
)
from nemo_tui.backends.gemini import GeminiBackend

from .support import MockServer, collect, refuse, sse

URL = "https://generativelanguage.googleapis.com/v1beta"
KEY = "AIzaSyD-not-a-real-key-0123456789"
MODEL = "gemini-3.5-flash"
STREAM_PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"
CONVERSATION = [
    ChatMessage("system", "You are a concise assistant."),
    ChatMessage("user", "Name three primary colours."),
    ChatMessage("assistant", "Red, yellow, blue."),
    ChatMessage("user", "And secondary?"),
]

FIRST = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Green"}]}}],
    "usageMetadata": {"promptTokenCount": 31, "totalTokenCount": 31},
    "modelVersion": "gemini-3.5-flash",
    "responseId": "aB1",
}
LAST = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"text": ", orange and purple."}]},
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 31, "candidatesTokenCount": 7, "totalTokenCount": 38},
    "modelVersion": "gemini-3.5-flash",
    "responseId": "aB1",
}
ANSWER = sse(FIRST, LAST)


def google_error(code: int, status: str, message: str, *details: dict[str, object]) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


INVALID_KEY = google_error(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    },
)
QUOTA = google_error(
    429,
    "RESOURCE_EXHAUSTED",
    "You exceeded your current quota, please check your plan and billing details.",
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/"
                "generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            }
        ],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"},
)
RETIRED = google_error(
    404,
    "NOT_FOUND",
    "models/gemini-1.5-flash is not found for API version v1beta, or is not supported for"
    " generateContent. Call ListModels to see the list of available models and their supported"
    " methods.",
)


def listed(name: str, *methods: str) -> dict[str, object]:
    return {
        "name": f"models/{name}",
        "displayName": name,
        "inputTokenLimit": 1048576,
        "supportedGenerationMethods": list(methods or ("generateContent", "countTokens")),
    }


MODELS_PAGE_1 = {
    "models": [
        listed("gemini-2.5-flash"),
        listed("gemini-3.1-flash-lite"),
        listed("gemini-3.5-flash-preview-09-2026"),
    ],
    "nextPageToken": "page2",
}
MODELS_PAGE_2 = {
    "models": [
        listed("gemini-3.5-flash"),
        listed("gemini-3.5-pro"),
        listed("gemini-9.0-flash", "embedContent"),
        listed("gemini-flash-latest"),
    ]
}


def backend(server: MockServer, *, api_key: str | None = KEY, model: str = MODEL) -> GeminiBackend:
    return GeminiBackend(model, api_key=api_key, transport=server.transport())


def stream(reply: object, path: str = STREAM_PATH) -> MockServer:
    return MockServer({("POST", path): reply})  # type: ignore[dict-item]


async def test_request_uses_sse_the_key_header_and_gemini_roles() -> None:
    server = stream((200, ANSWER))
    options = GenerationOptions(max_tokens=256, temperature=0.7, num_ctx=8192)
    await collect(backend(server).stream_chat(MODEL, CONVERSATION, options))
    [request] = server.requests
    assert request.url.params["alt"] == "sse"
    assert "key" not in request.url.params
    assert KEY not in str(request.url)
    assert request.headers["x-goog-api-key"] == KEY
    assert server.bodies(STREAM_PATH) == [
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Name three primary colours."}]},
                {"role": "model", "parts": [{"text": "Red, yellow, blue."}]},
                {"role": "user", "parts": [{"text": "And secondary?"}]},
            ],
            "systemInstruction": {"parts": [{"text": "You are a concise assistant."}]},
            "generationConfig": {"maxOutputTokens": 256, "temperature": 0.7},
        }
    ]


async def test_stream_yields_text_then_the_last_usage() -> None:
    events = await collect(
        backend(stream((200, ANSWER))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
    )
    assert events == [
        TokenChunk("Green"),
        TokenChunk(", orange and purple."),
        StreamEnd(prompt_tokens=31, completion_tokens=7, finish_reason="stop", model=MODEL),
    ]


async def test_thoughts_are_not_part_of_the_answer_and_max_tokens_is_length() -> None:
    thinking = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "Let me think", "thought": True}, {"text": "Green"}],
                },
                "finishReason": "MAX_TOKENS",
            }
        ],
        "usageMetadata": {"promptTokenCount": 31, "thoughtsTokenCount": 60},
    }
    events = await collect(
        backend(stream((200, sse(thinking)))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
    )
    assert events == [
        TokenChunk("Green"),
        StreamEnd(prompt_tokens=31, finish_reason="length", model=MODEL),
    ]


async def test_a_stream_that_ends_without_a_finish_reason_is_broken() -> None:
    with pytest.raises(StreamBroken):
        await collect(
            backend(stream((200, sse(FIRST)))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
        )


async def test_a_blocked_prompt_is_an_error_with_a_fix() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 9},
    }
    with pytest.raises(BackendError, match="SAFETY") as caught:
        await collect(
            backend(stream((200, sse(blocked)))).stream_chat(
                MODEL, CONVERSATION, GenerationOptions()
            )
        )
    assert caught.value.fix


async def test_an_invalid_key_is_an_auth_error_naming_the_variable_not_the_key() -> None:
    with pytest.raises(AuthError) as caught:
        await collect(
            backend(stream((400, INVALID_KEY))).stream_chat(
                MODEL, CONVERSATION, GenerationOptions()
            )
        )
    error = caught.value
    assert error.fix == "set a valid key in $GEMINI_API_KEY"
    for text in (error.one_line(), repr(error), str(error)):
        assert KEY not in text


async def test_permission_denied_is_an_auth_error() -> None:
    denied = google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
    with pytest.raises(AuthError):
        await collect(
            backend(stream((403, denied))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
        )


async def test_a_quota_hit_is_rate_limited_with_googles_retry_delay() -> None:
    with pytest.raises(RateLimited) as caught:
        await collect(
            backend(stream((429, QUOTA))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
        )
    assert caught.value.retry_after_s == 34.0
    assert caught.value.status == 429


async def test_a_daily_quota_says_so() -> None:
    daily = google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
        },
    )
    with pytest.raises(RateLimited) as caught:
        await collect(
            backend(stream((429, daily))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
        )
    assert "daily quota" in caught.value.fix
    assert caught.value.retry_after_s is None


async def test_an_overloaded_model_is_server_busy() -> None:
    overloaded = google_error(
        503, "UNAVAILABLE", "The model is overloaded. Please try again later."
    )
    with pytest.raises(ServerBusy):
        await collect(
            backend(stream((503, overloaded))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
        )


async def test_too_many_input_tokens_is_context_exceeded() -> None:
    too_long = google_error(
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    )
    with pytest.raises(ContextExceeded):
        await collect(
            backend(stream((400, too_long))).stream_chat(MODEL, CONVERSATION, GenerationOptions())
        )


async def test_an_error_event_mid_stream_raises_after_the_partial_answer() -> None:
    body = sse(FIRST, google_error(500, "INTERNAL", "An internal error has occurred."))
    received = []
    with pytest.raises(BackendError, match="internal error") as caught:
        async for event in backend(stream((200, body))).stream_chat(
            MODEL, CONVERSATION, GenerationOptions()
        ):
            received.append(event)
    assert received == [TokenChunk("Green")]
    assert caught.value.status == 500


async def test_a_retired_model_is_replaced_by_the_newest_flash_and_remembered() -> None:
    retired_path = "/v1beta/models/gemini-1.5-flash:streamGenerateContent"
    server = MockServer(
        {
            ("POST", retired_path): (404, RETIRED),
            ("GET", "/v1beta/models"): [(200, MODELS_PAGE_1), (200, MODELS_PAGE_2)],
            ("POST", STREAM_PATH): (200, ANSWER),
        }
    )
    gemini = backend(server, model="gemini-1.5-flash")
    events = await collect(
        gemini.stream_chat("gemini-1.5-flash", CONVERSATION, GenerationOptions())
    )
    assert events[0] == BackendNotice("gemini-1.5-flash is retired; using gemini-3.5-flash")
    assert events[1] == TokenChunk("Green")
    assert [r.url.params.get("pageToken") for r in server.requests if r.method == "GET"] == [
        None,
        "page2",
    ]

    again = await collect(gemini.stream_chat("gemini-1.5-flash", CONVERSATION, GenerationOptions()))
    assert not any(isinstance(e, BackendNotice) for e in again)
    assert server.paths().count(retired_path) == 1
    assert [m.name for m in await gemini.list_installed()] == ["gemini-3.5-flash"]


async def test_without_a_stable_flash_model_the_latest_alias_is_used() -> None:
    retired_path = "/v1beta/models/gemini-1.5-flash:streamGenerateContent"
    alias_path = "/v1beta/models/gemini-flash-latest:streamGenerateContent"
    server = MockServer(
        {
            ("POST", retired_path): (404, RETIRED),
            ("GET", "/v1beta/models"): (200, {"models": [listed("gemini-3.5-pro")]}),
            ("POST", alias_path): (200, ANSWER),
        }
    )
    events = await collect(
        backend(server).stream_chat("gemini-1.5-flash", CONVERSATION, GenerationOptions())
    )
    assert events[0] == BackendNotice("gemini-1.5-flash is retired; using gemini-flash-latest")


async def test_the_replacement_is_tried_only_once() -> None:
    server = MockServer(
        {
            ("POST", "/v1beta/models/gemini-1.5-flash:streamGenerateContent"): (404, RETIRED),
            ("GET", "/v1beta/models"): (200, MODELS_PAGE_2),
            ("POST", STREAM_PATH): (404, RETIRED),
        }
    )
    with pytest.raises(ModelNotFound):
        await collect(
            backend(server).stream_chat("gemini-1.5-flash", CONVERSATION, GenerationOptions())
        )
    assert len([r for r in server.requests if r.method == "POST"]) == 2


async def test_without_a_key_nothing_is_sent() -> None:
    server = MockServer()
    gemini = backend(server, api_key=None)
    health = await gemini.health()
    assert not health.up
    assert health.detail == "no API key: set $GEMINI_API_KEY"
    with pytest.raises(AuthError, match="no Gemini API key"):
        await collect(gemini.stream_chat(MODEL, CONVERSATION, GenerationOptions()))
    assert server.requests == []


async def test_health_with_a_working_key_is_up() -> None:
    info = {"name": f"models/{MODEL}", "version": "001", "inputTokenLimit": 1048576}
    server = MockServer({("GET", f"/v1beta/models/{MODEL}"): (200, info)})
    health = await backend(server).health()
    assert health.up
    assert health.version == "001"
    assert health.url == URL


async def test_health_with_an_invalid_key_is_down_and_says_what_to_set() -> None:
    server = MockServer({("GET", f"/v1beta/models/{MODEL}"): (400, INVALID_KEY)})
    health = await backend(server).health()
    assert not health.up
    assert "$GEMINI_API_KEY" in health.detail
    assert KEY not in health.detail


async def test_health_of_a_retired_model_is_still_up() -> None:
    server = MockServer({("GET", "/v1beta/models/gemini-1.5-flash"): (404, RETIRED)})
    health = await backend(server, model="gemini-1.5-flash").health()
    assert health.up
    assert "retired" in health.detail


async def test_offline_is_unavailable() -> None:
    gemini = GeminiBackend(MODEL, api_key=KEY, transport=httpx.MockTransport(refuse))
    with pytest.raises(BackendUnavailable):
        await collect(gemini.stream_chat(MODEL, CONVERSATION, GenerationOptions()))
    assert not (await gemini.health()).up


async def test_a_cloud_model_uses_no_local_memory() -> None:
    server = MockServer()
    gemini = backend(server)
    assert gemini.local is False
    assert await gemini.list_loaded() == []
    assert [m.name for m in await gemini.list_installed()] == [MODEL]
    assert await gemini.model_metadata(MODEL) is None
    await gemini.preload(MODEL, GenerationOptions())
    assert await gemini.unload(MODEL) is None
    assert await gemini.tokenize(MODEL, "hello") is None
    assert server.requests == []


def test_the_key_is_not_in_the_repr() -> None:
    gemini = GeminiBackend(MODEL, api_key=KEY)
    assert KEY not in repr(gemini)


async def test_a_key_read_with_a_line_end_is_sent_without_it() -> None:
    info = {"name": f"models/{MODEL}", "version": "001", "inputTokenLimit": 1048576}
    server = MockServer({("GET", f"/v1beta/models/{MODEL}"): (200, info)})
    gemini = backend(server, api_key=f"{KEY}\r\n")

    health = await gemini.health()

    assert health.up
    assert server.requests[0].headers["x-goog-api-key"] == KEY


async def test_a_plain_http_url_to_another_machine_never_gets_the_key() -> None:
    server = stream((200, ANSWER), path="/v1beta/models/gemini-3.5-flash:streamGenerateContent")
    gemini = GeminiBackend(
        MODEL, api_key=KEY, base_url="http://gemini.example/v1beta", transport=server.transport()
    )

    health = await gemini.health()
    with pytest.raises(AuthError):
        await collect(gemini.stream_chat(MODEL, CONVERSATION, GenerationOptions()))

    assert not health.up and "plain http" in health.detail
    assert server.requests == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/v1beta", "http://localhost/v1beta", "http://[::1]:9/v1beta"]
)
async def test_plain_http_to_this_machine_may_carry_the_key(url: str) -> None:
    info = {"name": f"models/{MODEL}", "version": "001", "inputTokenLimit": 1048576}
    server = MockServer({("GET", f"/v1beta/models/{MODEL}"): (200, info)})
    gemini = GeminiBackend(MODEL, api_key=KEY, base_url=url, transport=server.transport())

    assert (await gemini.health()).up
    assert server.requests[0].headers["x-goog-api-key"] == KEY
