"""Every error string of the reference lands in the error type the engine acts on."""

from __future__ import annotations

import httpx
import pytest

from nemo_tui.backends.base import (
    AuthError,
    BackendError,
    BackendUnavailable,
    ContextExceeded,
    ModelNotFound,
    OutOfMemory,
    ServerBusy,
    StreamBroken,
    classify_error,
    is_out_of_memory_message,
)
from nemo_tui.backends.http import ErrorBody, parse_error_body, transport_error

REQUEST = httpx.Request("POST", "http://127.0.0.1:11434/api/chat")


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (404, "model 'llama3:8b' not found", ModelNotFound),
        (500, 'model "llama3:8b" not found, try pulling it first', ModelNotFound),
        (503, "server busy, please try again.  maximum pending requests exceeded", ServerBusy),
        (
            500,
            "model requires more system memory (12.4 GiB) than is available (7.7 GiB)",
            OutOfMemory,
        ),
        (
            500,
            "model requires more system memory than is currently available unable to load full"
            " model on GPU",
            OutOfMemory,
        ),
        (500, "llama runner process has terminated: CUDA error: out of memory", OutOfMemory),
        (500, "llama runner process has terminated: cudaMalloc failed: out of memory", OutOfMemory),
        (500, "llama-server reported out-of-memory during startup: ROCm error", OutOfMemory),
        (500, "llama-server process has terminated: exit status 2", OutOfMemory),
        (
            None,
            "model runner has unexpectedly stopped, this may be due to resource limitations or an"
            " internal error, check ollama server logs for details",
            OutOfMemory,
        ),
        (None, "an error was encountered while running the model: unexpected EOF", OutOfMemory),
        (
            400,
            "the prompt is longer than the context length currently available to the model;"
            " shorten the prompt, adjust the context length in settings, or use a model with a"
            " longer context length",
            ContextExceeded,
        ),
        (400, "the input length exceeds the context length", ContextExceeded),
        (
            400,
            "request (5000 tokens) exceeds the available context size (4096 tokens), try"
            " increasing it",
            ContextExceeded,
        ),
        (400, "Requested tokens (3000) exceed context window of 2048", ContextExceeded),
        (401, "Invalid API key", AuthError),
        (403, "cloud features are disabled", AuthError),
        (500, "timed out waiting for llama runner to start", BackendError),
    ],
)
def test_reference_messages_are_classified(
    status: int | None, message: str, expected: type[BackendError]
) -> None:
    error = classify_error("ollama", status, message, model="llama3:8b")
    assert type(error) is expected
    assert error.message == message
    assert error.status == status
    assert error.backend == "ollama"


def test_system_memory_sizes_are_parsed_into_mb() -> None:
    error = classify_error(
        "ollama", 500, "model requires more system memory (12.4 GiB) than is available (512.0 MiB)"
    )
    assert isinstance(error, OutOfMemory)
    assert error.required_mb == pytest.approx(12.4 * 1024)
    assert error.available_mb == pytest.approx(512.0)


def test_a_404_is_a_missing_model_even_when_it_mentions_memory() -> None:
    assert isinstance(classify_error("ollama", 404, "out of memory"), ModelNotFound)


def test_missing_model_fix_is_a_pull_for_ollama_and_a_check_elsewhere() -> None:
    assert (
        classify_error("ollama", 404, "x", model="phi3:mini").fix == "run `ollama pull phi3:mini`"
    )
    assert "installed on the openai server" in classify_error("openai", 404, "x", model="m").fix


def test_every_memory_failure_gets_a_fix() -> None:
    error = classify_error("ollama", 500, "cudaMalloc failed: out of memory")
    assert error.fix
    assert "(fix: " in error.one_line()


@pytest.mark.parametrize(
    "message",
    [
        "CUDA error: out of memory",
        "hipMalloc failed",
        "VK_ERROR_OUT_OF_DEVICE_MEMORY",
        "insufficient memory",
    ],
)
def test_out_of_memory_markers_are_case_insensitive(message: str) -> None:
    assert is_out_of_memory_message(message)


def test_an_ordinary_error_is_not_out_of_memory() -> None:
    assert not is_out_of_memory_message('"gemma3" does not support thinking')


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error":"model \'x\' not found"}', ErrorBody(message="model 'x' not found")),
        (
            b'{"error":{"message":"too long","type":"invalid_request_error","param":null,'
            b'"code":"context_length_exceeded"}}',
            ErrorBody(
                message="too long", type="invalid_request_error", code="context_length_exceeded"
            ),
        ),
        (
            b'{"error":{"code":400,"message":"too long","type":"exceed_context_size_error",'
            b'"n_prompt_tokens":5000,"n_ctx":4096}}',
            ErrorBody(message="too long", type="exceed_context_size_error", code="400"),
        ),
        (
            b'{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}',
            ErrorBody(message="bad", type="BadRequestError", code="400"),
        ),
        (b'{"detail":"Invalid API key"}', ErrorBody(message="Invalid API key")),
        (b"404 page not found", ErrorBody(message="404 page not found")),
        (b"", ErrorBody(message="HTTP 502 without a message")),
    ],
)
def test_every_error_body_shape_gives_its_message(body: bytes, expected: ErrorBody) -> None:
    parsed = parse_error_body(body, http_status=502)
    assert (parsed.message, parsed.type, parsed.code) == (
        expected.message,
        expected.type,
        expected.code,
    )


def test_google_rpc_errors_keep_status_and_details() -> None:
    body = (
        b'{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":['
        b'{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34s"}]}}'
    )
    parsed = parse_error_body(body)
    assert parsed.status == "RESOURCE_EXHAUSTED"
    assert parsed.code == "429"
    assert parsed.details[0]["retryDelay"] == "34s"


def test_fastapi_validation_details_are_shown_as_json() -> None:
    body = b'{"detail":[{"loc":["body","messages"],"msg":"field required"}]}'
    assert "field required" in parse_error_body(body).message


def test_a_huge_html_error_page_is_cut_short() -> None:
    page = b"<html>" + b"x" * 5000 + b"</html>"
    assert len(parse_error_body(page).message) < 400


@pytest.mark.parametrize(
    ("exc", "streaming", "expected", "text"),
    [
        (
            httpx.ConnectError("All connection attempts failed", request=REQUEST),
            False,
            BackendUnavailable,
            "connection refused",
        ),
        (
            httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST),
            True,
            BackendUnavailable,
            "connection refused",
        ),
        (
            httpx.ConnectTimeout("timed out", request=REQUEST),
            True,
            BackendUnavailable,
            "connect timeout",
        ),
        (
            httpx.ReadTimeout("timed out", request=REQUEST),
            False,
            BackendUnavailable,
            "read timeout",
        ),
        (httpx.ReadTimeout("timed out", request=REQUEST), True, StreamBroken, "read timeout"),
        (httpx.RemoteProtocolError("peer closed", request=REQUEST), True, StreamBroken, "dropped"),
        (httpx.ReadError("reset", request=REQUEST), True, StreamBroken, "dropped"),
    ],
)
def test_transport_failures_are_unavailable_or_broken_streams(
    exc: httpx.TransportError, streaming: bool, expected: type[BackendError], text: str
) -> None:
    error = transport_error(
        exc, backend="ollama", url="http://127.0.0.1:11434", fix="start it", streaming=streaming
    )
    assert type(error) is expected
    assert text in error.message
    assert "http://127.0.0.1:11434" in error.message
