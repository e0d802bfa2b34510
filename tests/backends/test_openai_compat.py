"""The OpenAI-compatible backend against canned llama.cpp, llama-cpp-python and vLLM replies."""

from __future__ import annotations

import httpx
import pytest

from nemo_tui.backends.base import (
    AuthError,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    ModelNotFound,
    OutOfMemory,
    ServerBusy,
    StreamBroken,
    StreamEnd,
    TokenChunk,
)
from nemo_tui.backends.openai_compat import OpenAICompatBackend

from .support import MockServer, TrackedStream, collect, refuse, sse

URL = "http://127.0.0.1:8080/v1"
QUESTION = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hi")]
SECRET = "sk-local-0123456789abcdef"

LLAMA_CPP_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf",
            "object": "model",
            "created": 1757860000,
            "owned_by": "llamacpp",
            "meta": {
                "vocab_type": 2,
                "n_vocab": 151936,
                "n_ctx_train": 32768,
                "n_embd": 896,
                "n_params": 494032768,
                "size": 491400032,
            },
        }
    ],
}
VLLM_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "Qwen/Qwen2.5-7B-Instruct",
            "object": "model",
            "created": 1757860000,
            "owned_by": "vllm",
            "root": "Qwen/Qwen2.5-7B-Instruct",
            "parent": None,
            "max_model_len": 32768,
        }
    ],
}
LM_STUDIO_MODELS = {
    "object": "list",
    "data": [
        {"id": "qwen2.5-7b-instruct", "object": "model", "owned_by": "organization_owner"},
        {"id": "llama-3.2-3b-instruct", "object": "model", "owned_by": "organization_owner"},
    ],
}
PROPS = {
    "default_generation_settings": {"n_ctx": 4096, "params": {"temperature": 0.8}},
    "total_slots": 1,
    "model_path": "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf",
    "build_info": "b6500-abc1234",
}


def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1757860000,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1757860000,
    "model": "m",
    "choices": [],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
}
SPEC_STREAM = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hi"}),
    chunk({"content": "!"}),
    chunk({}, "stop"),
    USAGE,
    "[DONE]",
)


def backend(server: MockServer, **kwargs: object) -> OpenAICompatBackend:
    return OpenAICompatBackend(URL, transport=server.transport(), **kwargs)  # type: ignore[arg-type]


def chat(reply: object) -> MockServer:
    return MockServer({("POST", "/v1/chat/completions"): reply})  # type: ignore[dict-item]


async def test_installed_models_use_llama_cpp_meta() -> None:
    server = MockServer({("GET", "/v1/models"): (200, LLAMA_CPP_MODELS)})
    [model] = await backend(server).list_installed()
    assert model.name == "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert model.disk_bytes == 491400032
    assert model.parameter_size == "494M"
    assert model.backend == "openai"


async def test_the_one_served_model_is_loaded_with_its_size_and_context() -> None:
    server = MockServer(
        {("GET", "/v1/models"): (200, LLAMA_CPP_MODELS), ("GET", "/props"): (200, PROPS)}
    )
    [model] = await backend(server).list_loaded()
    assert model.name == "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert model.size_mb == pytest.approx(468.6, abs=0.1)
    assert model.context_length == 4096


async def test_vllm_reports_its_max_model_len_and_no_size() -> None:
    server = MockServer({("GET", "/v1/models"): (200, VLLM_MODELS)})
    [model] = await backend(server).list_loaded()
    assert model.context_length == 32768
    assert model.size_mb is None


async def test_a_server_listing_several_models_reports_none_as_loaded() -> None:
    server = MockServer({("GET", "/v1/models"): (200, LM_STUDIO_MODELS)})
    assert await backend(server).list_loaded() == []


async def test_stream_follows_the_spec_with_a_usage_chunk() -> None:
    server = chat((200, SPEC_STREAM))
    options = GenerationOptions(num_ctx=8192, max_tokens=32, temperature=0.1)
    events = await collect(backend(server).stream_chat("m", QUESTION, options))
    assert events == [
        TokenChunk("Hi"),
        TokenChunk("!"),
        StreamEnd(prompt_tokens=12, completion_tokens=2, finish_reason="stop", model="m"),
    ]
    [body] = server.bodies("/v1/chat/completions")
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 32,
        "temperature": 0.1,
    }


async def test_pings_comments_and_crlf_line_endings_are_ignored() -> None:
    body = b": ping\r\n\r\n" + sse(
        chunk({"content": "Hi"}), chunk({}, "stop"), USAGE, "[DONE]", newline="\r\n"
    )
    events = await collect(
        backend(chat((200, body))).stream_chat("m", QUESTION, GenerationOptions())
    )
    assert events[0] == TokenChunk("Hi")
    assert isinstance(events[-1], StreamEnd)


async def test_llama_cpp_timings_fill_in_when_there_is_no_usage() -> None:
    finish = {
        **chunk({}, "stop"),
        "timings": {
            "cache_n": 4,
            "prompt_n": 8,
            "prompt_ms": 120.5,
            "predicted_n": 2,
            "predicted_ms": 40.0,
            "predicted_per_second": 50.0,
        },
    }
    body = sse(chunk({"content": "Hi"}), finish, "[DONE]")
    events = await collect(
        backend(chat((200, body))).stream_chat("m", QUESTION, GenerationOptions())
    )
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.prompt_tokens == 12
    assert end.completion_tokens == 2
    assert end.prompt_eval_s == pytest.approx(0.1205)
    assert end.eval_s == pytest.approx(0.04)
    assert end.total_s == pytest.approx(0.1605)


async def test_llama_cpp_python_without_usage_still_ends_cleanly() -> None:
    body = sse(chunk({"content": "Hi"}), chunk({}, "stop"), "[DONE]")
    events = await collect(
        backend(chat((200, body))).stream_chat("m", QUESTION, GenerationOptions())
    )
    assert events[-1] == StreamEnd(finish_reason="stop", model="m")


async def test_an_interrupted_answer_without_a_finish_reason_is_broken() -> None:
    body = sse(chunk({"content": "Hi"}), "[DONE]")
    with pytest.raises(StreamBroken, match="before the server finished"):
        await collect(backend(chat((200, body))).stream_chat("m", QUESTION, GenerationOptions()))


async def test_a_stream_closed_before_its_first_event_says_the_prompt_may_not_fit() -> None:
    with pytest.raises(StreamBroken, match="without sending anything") as caught:
        await collect(backend(chat((200, b""))).stream_chat("m", QUESTION, GenerationOptions()))
    assert "--n_ctx" in caught.value.fix


async def test_a_stream_cut_before_done_is_broken() -> None:
    body = sse(chunk({"content": "Hi"}), chunk({}, "stop"))
    with pytest.raises(StreamBroken):
        await collect(backend(chat((200, body))).stream_chat("m", QUESTION, GenerationOptions()))


async def test_an_unreadable_event_breaks_the_stream() -> None:
    body = sse(chunk({"content": "Hi"}), "{not json")
    with pytest.raises(StreamBroken, match="unreadable"):
        await collect(backend(chat((200, body))).stream_chat("m", QUESTION, GenerationOptions()))


async def test_a_mid_stream_error_object_raises_the_typed_error() -> None:
    error = {"error": {"code": 500, "message": "CUDA error: out of memory", "type": "server_error"}}
    body = sse(chunk({"content": "Hi"}), error)
    received = []
    with pytest.raises(OutOfMemory):
        async for event in backend(chat((200, body))).stream_chat(
            "m", QUESTION, GenerationOptions()
        ):
            received.append(event)
    assert received == [TokenChunk("Hi")]


@pytest.mark.parametrize(
    "body",
    [
        {  # llama.cpp
            "error": {
                "code": 400,
                "message": "request (5000 tokens) exceeds the available context size"
                " (4096 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        },
        {  # llama-cpp-python / OpenAI
            "error": {
                "message": "This model's maximum context length is 2048 tokens. However, you"
                " requested 3000 tokens (2900 in the messages, 100 in the completion).",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        {  # vLLM, current
            "error": {
                "message": "This model's maximum context length is 32768 tokens. However, you"
                " requested 40000 tokens in the messages.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        {  # vLLM, older flat shape
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ],
)
async def test_every_context_overflow_shape_is_context_exceeded(body: dict[str, object]) -> None:
    with pytest.raises(ContextExceeded):
        await collect(backend(chat((400, body))).stream_chat("m", QUESTION, GenerationOptions()))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            400,
            {
                "error": {
                    "message": "Model 'x' not found",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
            ModelNotFound,
        ),
        (
            404,
            {
                "error": {
                    "message": "The model `x` does not exist.",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                }
            },
            ModelNotFound,
        ),
        (503, {"detail": "Service is not available"}, ServerBusy),
        (
            503,
            {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
            ServerBusy,
        ),
        (
            500,
            {
                "error": {
                    "message": "llama_decode failed: failed to allocate compute buffer",
                    "type": "internal_server_error",
                    "param": None,
                    "code": None,
                }
            },
            OutOfMemory,
        ),
    ],
)
async def test_error_bodies_map_to_typed_errors(
    status: int, body: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await collect(backend(chat((status, body))).stream_chat("x", QUESTION, GenerationOptions()))


async def test_the_api_key_is_sent_as_a_bearer_header_and_never_shown() -> None:
    server = chat((401, {"detail": "Invalid API key"}))
    openai = backend(server, api_key=SECRET, api_key_env="LLAMA_API_KEY")
    with pytest.raises(AuthError) as caught:
        await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(server.requests[0].url)
    assert caught.value.fix == "set the server's API key in $LLAMA_API_KEY"
    for text in (caught.value.one_line(), repr(caught.value), repr(openai)):
        assert SECRET not in text


async def test_llama_cpp_auth_error_type_is_auth_error() -> None:
    body = {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
    with pytest.raises(AuthError):
        await collect(backend(chat((401, body))).stream_chat("m", QUESTION, GenerationOptions()))


async def test_no_key_means_no_authorization_header() -> None:
    server = chat((200, SPEC_STREAM))
    await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))
    assert "authorization" not in server.requests[0].headers


async def test_llama_cpp_tokenize_is_used_and_remembered() -> None:
    server = MockServer({("POST", "/tokenize"): (200, {"tokens": [9707, 1879]})})
    openai = backend(server)
    assert await openai.tokenize("m", "Hello world") == [9707, 1879]
    assert await openai.tokenize("m", "Hello world") == [9707, 1879]
    assert server.paths() == ["/tokenize", "/tokenize"]
    assert server.bodies("/tokenize")[0] == {"content": "Hello world", "add_special": False}


async def test_tokens_with_pieces_are_read_too() -> None:
    pieces = {"tokens": [{"id": 9707, "piece": "Hello"}, {"id": 1879, "piece": " world"}]}
    server = MockServer({("POST", "/tokenize"): (200, pieces)})
    assert await backend(server).tokenize("m", "Hello world") == [9707, 1879]


async def test_llama_cpp_python_extras_tokenize_is_the_fallback() -> None:
    server = MockServer({("POST", "/extras/tokenize"): (200, {"tokens": [1, 2, 3]})})
    openai = OpenAICompatBackend("http://localhost:8000/v1", transport=server.transport())
    assert await openai.tokenize("m", "abc") == [1, 2, 3]
    assert await openai.tokenize("m", "abc") == [1, 2, 3]
    assert server.paths() == ["/tokenize", "/extras/tokenize", "/extras/tokenize"]
    assert server.bodies("/extras/tokenize")[0] == {"input": "abc"}


async def test_without_a_tokenize_endpoint_it_is_none_and_not_asked_again() -> None:
    server = MockServer()
    openai = backend(server)
    assert await openai.tokenize("m", "abc") is None
    assert await openai.tokenize("m", "abc") is None
    assert server.paths() == ["/tokenize", "/extras/tokenize"]


async def test_health_of_a_ready_llama_server_names_its_model() -> None:
    server = MockServer(
        {
            ("GET", "/health"): (200, {"status": "ok"}),
            ("GET", "/v1/models"): (200, LLAMA_CPP_MODELS),
        }
    )
    health = await backend(server).health()
    assert health.up
    assert health.detail == "serves /models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert health.url == URL


async def test_health_while_llama_server_loads_its_model_is_down() -> None:
    loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    server = MockServer({("GET", "/health"): (503, loading)})
    health = await backend(server).health()
    assert not health.up
    assert health.detail == "not ready: Loading model"


async def test_health_without_a_health_endpoint_uses_the_model_list() -> None:
    server = MockServer({("GET", "/v1/models"): (200, LM_STUDIO_MODELS)})
    health = await backend(server).health()
    assert health.up
    assert health.detail == "serves qwen2.5-7b-instruct, llama-3.2-3b-instruct"


async def test_health_with_a_refused_key_is_down_and_says_which_variable() -> None:
    server = MockServer({("GET", "/v1/models"): (401, {"detail": "Invalid API key"})})
    health = await backend(server, api_key=SECRET, api_key_env="VLLM_API_KEY").health()
    assert not health.up
    assert "$VLLM_API_KEY" in health.detail
    assert SECRET not in health.detail


async def test_health_when_nothing_listens_is_down() -> None:
    health = await OpenAICompatBackend(URL, transport=httpx.MockTransport(refuse)).health()
    assert not health.up
    assert health.detail.startswith("connection refused — ")


@pytest.mark.parametrize(
    "name",
    [
        "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf",
        "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        "qwen2.5-0.5b-instruct-q4_k_m",
    ],
)
async def test_preload_accepts_the_served_model_by_path_name_or_stem(name: str) -> None:
    """Preloading checks the served list and sends nothing else: the server loaded it at start."""
    server = MockServer({("GET", "/v1/models"): (200, LLAMA_CPP_MODELS)})

    await backend(server).preload(name, GenerationOptions())

    assert server.paths() == ["/v1/models"]


async def test_preload_of_a_name_that_only_starts_like_the_served_one_is_refused() -> None:
    server = MockServer({("GET", "/v1/models"): (200, LLAMA_CPP_MODELS)})
    with pytest.raises(ModelNotFound, match="qwen2.5-0.5b-instruct-q4_k_m"):
        await backend(server).preload("qwen2.5-0.5b-instruct", GenerationOptions())


async def test_preload_of_a_model_the_server_does_not_serve_names_what_it_serves() -> None:
    server = MockServer({("GET", "/v1/models"): (200, VLLM_MODELS)})
    with pytest.raises(ModelNotFound, match="it serves Qwen/Qwen2.5-7B-Instruct"):
        await backend(server).preload("llama3.2:3b", GenerationOptions())


async def test_unload_is_not_possible_and_returns_none() -> None:
    server = MockServer()
    assert await backend(server).unload("m") is None
    assert server.requests == []


async def test_connection_refused_is_unavailable() -> None:
    openai = OpenAICompatBackend(URL, transport=httpx.MockTransport(refuse))
    with pytest.raises(BackendUnavailable, match="connection refused"):
        await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))


async def test_a_dropped_connection_mid_answer_is_broken() -> None:
    body = TrackedStream([sse(chunk({"content": "Hi"}))], then_raise=httpx.ReadError("reset"))
    server = chat(lambda _: httpx.Response(200, stream=body))
    with pytest.raises(StreamBroken):
        await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))


async def test_closing_the_stream_early_closes_the_response() -> None:
    body = TrackedStream([sse(chunk({"content": "Hi"})), sse(chunk({}, "stop")), sse("[DONE]")])
    server = chat(lambda _: httpx.Response(200, stream=body))
    stream = backend(server).stream_chat("m", QUESTION, GenerationOptions())
    assert await anext(stream) == TokenChunk("Hi")
    await stream.aclose()  # type: ignore[attr-defined]
    assert body.closed


async def test_model_metadata_is_not_available() -> None:
    server = MockServer()
    assert await backend(server).model_metadata("m") is None


async def test_a_llama_cpp_server_is_asked_for_prompt_progress_so_a_cancel_is_noticed() -> None:
    server = chat((200, SPEC_STREAM))
    server.routes[("GET", "/props")] = [(200, PROPS)]

    await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))

    assert server.bodies("/v1/chat/completions")[0]["return_progress"] is True


async def test_a_server_without_props_gets_no_llama_cpp_fields() -> None:
    server = chat((200, SPEC_STREAM))

    await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))

    assert "return_progress" not in server.bodies("/v1/chat/completions")[0]


async def test_a_counted_prompt_over_the_props_context_is_not_sent() -> None:
    server = chat((200, SPEC_STREAM))
    server.routes[("GET", "/props")] = [(200, PROPS)]
    server.routes[("POST", "/tokenize")] = [(200, {"tokens": list(range(4096))})]
    openai = backend(server)
    prompt = [ChatMessage("user", "a long prompt")]

    await openai.tokenize("m", "a long prompt")
    with pytest.raises(ContextExceeded) as caught:
        await collect(openai.stream_chat("m", prompt, GenerationOptions()))

    assert "/v1/chat/completions" not in server.paths()
    assert "4,096 tokens" in caught.value.message and caught.value.fix


async def test_a_prompt_counted_under_the_context_or_not_counted_is_sent() -> None:
    server = chat((200, SPEC_STREAM))
    server.routes[("GET", "/props")] = [(200, PROPS)]
    server.routes[("POST", "/tokenize")] = [(200, {"tokens": list(range(4096))})]
    openai = backend(server)
    await openai.tokenize("m", "some other text")

    events = await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))

    assert isinstance(events[-1], StreamEnd)


async def test_an_asleep_llama_server_holds_no_model_in_memory() -> None:
    asleep = {**PROPS, "is_sleeping": True}
    server = MockServer(
        {("GET", "/v1/models"): (200, LLAMA_CPP_MODELS), ("GET", "/props"): (200, asleep)}
    )

    assert await backend(server).list_loaded() == []


def listing_server(
    models: dict[str, object], props: list[tuple[int, object]] | None = None
) -> MockServer:
    """A server listing `models` that answers every question, with llama.cpp's `/props` replies
    (in order) when given."""
    server = chat((200, SPEC_STREAM))
    server.routes[("GET", "/v1/models")] = [(200, models)]
    if props is not None:
        server.routes[("GET", "/props")] = props
    return server


async def cold_starts(server: MockServer, answers: int = 1) -> list[bool | None]:
    """Whether each of `answers` answers paid a load, after the server was listed once."""
    openai = backend(server)
    await openai.list_installed()
    ends = [
        (await collect(openai.stream_chat("m", QUESTION, GenerationOptions())))[-1]
        for _ in range(answers)
    ]
    return [end.cold_start for end in ends if isinstance(end, StreamEnd)]


async def test_a_llama_server_serving_its_model_answers_without_a_load() -> None:
    assert await cold_starts(listing_server(LLAMA_CPP_MODELS, [(200, PROPS)])) == [False]


async def test_a_llama_server_that_fell_asleep_between_answers_loads_for_the_next() -> None:
    asleep = {**PROPS, "is_sleeping": True}
    server = listing_server(LLAMA_CPP_MODELS, [(200, PROPS), (200, asleep)])
    assert await cold_starts(server, answers=2) == [False, True]


async def test_vllm_holds_its_one_model_from_its_start() -> None:
    assert await cold_starts(listing_server(VLLM_MODELS)) == [False]


async def test_a_server_listing_several_models_cannot_tell_whether_it_loaded_one() -> None:
    assert await cold_starts(listing_server(LM_STUDIO_MODELS)) == [None]


async def test_a_kept_alive_connection_closed_under_a_request_is_retried_once() -> None:
    attempts: list[int] = []

    def stale_then_ok(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(200, json={"tokens": [1, 2]})

    server = MockServer({("POST", "/tokenize"): stale_then_ok})

    assert await backend(server).tokenize("m", "ab") == [1, 2]
    assert len(attempts) == 2


async def test_other_protocol_errors_are_not_retried() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("illegal header line", request=request)

    server = MockServer({("POST", "/tokenize"): broken})

    with pytest.raises(BackendUnavailable):
        await backend(server).tokenize("m", "ab")
    assert server.paths() == ["/tokenize"]


async def test_a_server_without_props_is_asked_once_until_the_next_probe() -> None:
    server = chat((200, SPEC_STREAM))
    openai = backend(server)

    await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))
    await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))

    assert server.paths().count("/props") == 1


async def test_an_undecodable_token_count_is_a_backend_error_not_a_crash() -> None:
    def undecodable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )

    server = MockServer({("POST", "/tokenize"): undecodable, ("GET", "/health"): undecodable})
    openai = backend(server)

    with pytest.raises(BackendError) as caught:
        await openai.tokenize("m", "ab")
    health = await openai.health()

    assert "cannot be decoded" in caught.value.message
    assert not health.up and "undecodable body" in health.detail


async def test_a_key_read_with_a_line_end_is_sent_without_it() -> None:
    server = chat((200, SPEC_STREAM))
    openai = backend(server, api_key=f"  {SECRET}\r\n")

    await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))

    assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


async def test_a_server_that_echoes_the_key_does_not_show_it() -> None:
    echo = {"error": {"message": f"key {SECRET} is not allowed here", "type": "server_error"}}
    server = chat((500, echo))
    openai = backend(server, api_key=SECRET)

    with pytest.raises(BackendError) as caught:
        await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))

    assert SECRET not in caught.value.one_line() and "***" in caught.value.message


async def test_a_message_clipped_inside_an_echoed_key_does_not_show_its_start() -> None:
    padding = "x" * (1000 - 10)
    echo = {"error": {"message": f"{padding} {SECRET} rest", "type": "server_error"}}
    server = chat((500, echo))
    openai = backend(server, api_key=SECRET)

    with pytest.raises(BackendError) as caught:
        await collect(openai.stream_chat("m", QUESTION, GenerationOptions()))

    shown = caught.value.one_line()
    assert SECRET[:9] not in shown
    assert "***…" in shown
