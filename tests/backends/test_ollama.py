"""The Ollama backend against canned native-API replies (reference §1)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nemo_tui.backends.base import (
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
from nemo_tui.backends.ollama import WARM_LOAD_MAX_S, OllamaBackend
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.engine import Engine
from nemo_tui.errors import ConfigError
from nemo_tui.ollama_host import InvalidOllamaHost, ollama_base_url

from .support import MockServer, TrackedStream, collect, connect_timeout, ndjson, refuse

URL = "http://127.0.0.1:11434"
QUESTION = [ChatMessage("user", "Why is the sky blue?")]

TAGS = {
    "models": [
        {
            "name": "qwen2.5:7b",
            "model": "qwen2.5:7b",
            "modified_at": "2025-06-02T10:14:03.551201+02:00",
            "size": 4683087332,
            "digest": "845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "qwen2",
                "families": ["qwen2"],
                "parameter_size": "7.6B",
                "quantization_level": "Q4_K_M",
            },
        },
        {
            "name": "llama3.1:8b",
            "model": "llama3.1:8b",
            "size": 4920753328,
            "details": {
                "family": "llama",
                "parameter_size": "8.0B",
                "quantization_level": "Q4_K_M",
            },
        },
    ]
}

PS_MODEL = {
    "name": "llama3.1:8b",
    "model": "llama3.1:8b",
    "size": 6654289920,
    "size_vram": 2147483648,
    "digest": "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
    "details": {"format": "gguf", "family": "llama", "parameter_size": "8.0B"},
    "expires_at": "2030-09-14T18:42:11.093715+02:00",
    "context_length": 8192,
}

SHOW = {
    "parameters": "num_ctx                        8192\n"
    'stop                           "<|eot_id|>"',
    "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "8.0B",
        "quantization_level": "Q4_K_M",
    },
    "model_info": {
        "general.architecture": "llama",
        "general.file_type": 15,
        "general.parameter_count": 8030261248,
        "llama.block_count": 32,
        "llama.embedding_length": 4096,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.context_length": 131072,
        "llama.feed_forward_length": 14336,
        "llama.vocab_size": 128256,
        "tokenizer.ggml.tokens": [],
    },
    "capabilities": ["completion", "tools"],
}


def chunk(text: str) -> dict[str, object]:
    return {
        "model": "llama3.1:8b",
        "created_at": "2025-09-14T16:21:02.1183Z",
        "message": {"role": "assistant", "content": text},
        "done": False,
    }


FINAL = {
    "model": "llama3.1:8b",
    "created_at": "2025-09-14T16:21:05.4412Z",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 3512983400,
    "load_duration": 22418300,
    "prompt_eval_count": 412,
    "prompt_eval_duration": 180224100,
    "eval_count": 187,
    "eval_duration": 3291337000,
}


def backend(server: MockServer, **kwargs: object) -> OllamaBackend:
    return OllamaBackend(URL, transport=server.transport(), **kwargs)  # type: ignore[arg-type]


def streaming(*lines: dict[str, object]) -> MockServer:
    return MockServer({("POST", "/api/chat"): (200, ndjson(*lines))})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("  '0.0.0.0'  ", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("http://0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("::", "http://[::1]:11434"),
        ("[::]:9000", "http://[::1]:9000"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("::1", "http://[::1]:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("[127.0.0.1]:8080", "http://127.0.0.1:8080"),
        (":56789", "http://127.0.0.1:56789"),
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ('"localhost:1234"', "http://localhost:1234"),
        ("localhost:", "http://localhost:11434"),
        ("ollama.example/path", "http://ollama.example:11434/path"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://gpu-box", "https://gpu-box:443"),
        ("https://ollama.example:8443/ollama/", "https://ollama.example:8443/ollama"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("gpu_box:11434", "http://gpu_box:11434"),
        ("HTTP://gpu-box", "http://gpu-box:11434"),
        ("ollama.com", "https://ollama.com:443"),
    ],
)
def test_ollama_host_is_parsed_like_ollama_does(value: str | None, expected: str) -> None:
    assert ollama_base_url(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("::::", "neither a host name nor an IP address"),
        ("gpu-box:11434:11434", "neither a host name nor an IP address"),
        ("http://", "names no host"),
        ("https:///api", "names no host"),
        ("gpu box:11434", "a character an address cannot have: ' '"),
        ("http://gpu-box:11434/a?b=c", "a character an address cannot have: '?'"),
        ("gpu-box:99999", "the port '99999', not a number from 1 to 65535"),
        ("gpu-box:0", "the port '0'"),
        ("gpu-box:http", "the port 'http'"),
        ("ftp://gpu-box", "the scheme 'ftp', not http or https"),
        ("[::1", "unclosed or misplaced '['"),
        ("[::1]11434", "unclosed or misplaced '['"),
    ],
)
def test_an_ollama_host_that_names_no_address_is_refused_with_the_value(
    value: str, problem: str
) -> None:
    with pytest.raises(InvalidOllamaHost) as caught:
        ollama_base_url(value)
    assert str(caught.value).startswith(f"{value!r} ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://user:hunter2@gpu-box:11434", "'http://***@gpu-box:11434'"),
        ("user:hunter2@127.0.0.1", "'***@127.0.0.1'"),
        ("https://user:hun/ter@2@ollama.example", "'https://***@ollama.example'"),
    ],
)
def test_user_info_in_ollama_host_is_refused_without_echoing_the_password(
    value: str, shown: str
) -> None:
    with pytest.raises(InvalidOllamaHost) as caught:
        ollama_base_url(value)
    assert str(caught.value) == f"{shown} holds a user name or password, which Ollama does not use"


@given(
    st.text(alphabet=st.sampled_from(":/[]@.%_-a1 09'\"?#\t"), max_size=24) | st.text(max_size=24)
)
def test_any_ollama_host_gives_a_usable_url_or_a_clear_refusal(value: str) -> None:
    try:
        url = ollama_base_url(value)
    except InvalidOllamaHost as error:
        assert "\n" not in str(error)
        return
    parsed = httpx.URL(url)
    assert parsed.scheme in ("http", "https")
    # httpx leaves out a port that is the scheme's default.
    assert 1 <= (parsed.port or {"http": 80, "https": 443}[parsed.scheme]) <= 65535
    assert parsed.host not in ("", "0.0.0.0", "::")
    assert ollama_base_url(url) == url


@given(
    st.sampled_from(["", "http://", "https://"]),
    st.sampled_from(["127.0.0.1", "0.0.0.0", "localhost", "gpu-box", "ollama.example", "[::1]"]),
    st.sampled_from(["", ":", ":1", ":11434", ":65535"]),
    st.sampled_from(["", "/", "/ollama", "/a/b/"]),
)
def test_every_form_ollama_accepts_is_accepted_with_its_port(
    scheme: str, host: str, port: str, path: str
) -> None:
    url = httpx.URL(ollama_base_url(f"{scheme}{host}{port}{path}"))
    default_port = {"": 11434, "http://": 80, "https://": 443}[scheme]
    assert (url.port or {"http": 80, "https": 443}[url.scheme]) == int(port[1:] or default_port)
    assert url.host in (host.strip("[]"), "127.0.0.1")
    assert url.path == (path.rstrip("/") or "/")


def test_the_backend_connects_where_ollama_host_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11500")
    assert OllamaBackend().url == "http://127.0.0.1:11500"


def test_a_configured_url_wins_over_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "elsewhere:1")
    assert OllamaBackend("http://gpu-box:11434").url == "http://gpu-box:11434"


@pytest.mark.parametrize("value", ["http://user:hunter2@gpu-box", "gpu-box:99999", "::::"])
def test_a_bad_ollama_host_is_a_one_line_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    with pytest.raises(ConfigError) as caught:
        OllamaBackend()
    message = caught.value.one_line()
    assert message.startswith("$OLLAMA_HOST: ")
    assert "\n" not in message and "hunter2" not in message
    assert caught.value.fix.startswith("set it to host[:port]")


async def test_health_reports_the_version() -> None:
    server = MockServer({("GET", "/api/version"): (200, {"version": "0.12.3"})})
    health = await backend(server).health()
    assert health.up
    assert health.version == "0.12.3"
    assert health.url == URL
    assert health.backend == "ollama"


async def test_health_says_how_to_start_ollama_when_nothing_listens() -> None:
    health = await OllamaBackend(URL, transport=httpx.MockTransport(refuse)).health()
    assert not health.up
    assert health.detail == "connection refused — start it with `ollama serve`"


async def test_health_reports_a_server_error_as_down() -> None:
    server = MockServer({("GET", "/api/version"): (500, {"error": "internal error"})})
    health = await backend(server).health()
    assert not health.up
    assert "internal error" in health.detail


async def test_installed_models_come_from_tags() -> None:
    server = MockServer({("GET", "/api/tags"): (200, TAGS)})
    models = await backend(server).list_installed()
    assert [m.name for m in models] == ["qwen2.5:7b", "llama3.1:8b"]
    qwen = models[0]
    assert qwen.disk_bytes == 4683087332
    assert qwen.parameter_size == "7.6B"
    assert qwen.quantization == "Q4_K_M"
    assert qwen.family == "qwen2"
    assert qwen.backend == "ollama"


async def test_loaded_models_carry_memory_context_and_expiry() -> None:
    server = MockServer({("GET", "/api/ps"): (200, {"models": [PS_MODEL]})})
    [model] = await backend(server).list_loaded()
    assert model.name == "llama3.1:8b"
    assert model.size_mb == pytest.approx(6346.0, abs=1)
    assert model.vram_mb == pytest.approx(2048.0)
    assert model.context_length == 8192
    assert model.expires_at == datetime(2030, 9, 14, 16, 42, 11, 93715, tzinfo=UTC)


async def test_a_model_kept_forever_has_no_expiry() -> None:
    forever = {**PS_MODEL, "expires_at": "2318-08-01T12:00:00.000000001Z"}
    server = MockServer({("GET", "/api/ps"): (200, {"models": [forever]})})
    [model] = await backend(server).list_loaded()
    assert model.expires_at is None


async def test_servers_before_0_9_7_give_no_context_length() -> None:
    old = {k: v for k, v in PS_MODEL.items() if k != "context_length"}
    server = MockServer({("GET", "/api/ps"): (200, {"models": [old]})})
    [model] = await backend(server).list_loaded()
    assert model.context_length is None


async def test_model_metadata_reads_show_and_the_blob_size() -> None:
    server = MockServer({("POST", "/api/show"): (200, SHOW), ("GET", "/api/tags"): (200, TAGS)})
    arch = await backend(server).model_metadata("llama3.1:8b")
    assert arch is not None
    assert arch.layers == 32
    assert arch.head_count_kv == 8
    assert arch.context_length == 131072
    assert arch.weights_bytes == 4920753328
    assert server.bodies("/api/show") == [{"model": "llama3.1:8b"}]


async def test_model_metadata_is_none_when_show_lacks_the_architecture() -> None:
    server = MockServer(
        {("POST", "/api/show"): (200, {"details": {}}), ("GET", "/api/tags"): (200, TAGS)}
    )
    assert await backend(server).model_metadata("llama3.1:8b") is None


async def test_metadata_of_a_missing_model_suggests_pulling_it() -> None:
    server = MockServer({("POST", "/api/show"): (404, {"error": "model 'mistral' not found"})})
    with pytest.raises(ModelNotFound) as caught:
        await backend(server).model_metadata("mistral")
    assert caught.value.fix == "run `ollama pull mistral`"
    assert caught.value.status == 404


async def test_preload_sends_an_empty_chat_with_keep_alive_and_load_options() -> None:
    load = {
        "model": "llama3.1:8b",
        "created_at": "2025-09-14T16:30:00.1Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "load",
    }
    server = MockServer({("POST", "/api/chat"): (200, load)})
    options = GenerationOptions(num_ctx=8192, num_batch=256, use_mmap=False)
    await backend(server, keep_alive="30m").preload("llama3.1:8b", options)
    [body] = server.bodies("/api/chat")
    assert body["messages"] == []
    assert body["keep_alive"] == "30m"
    assert body["options"] == {"num_ctx": 8192, "num_batch": 256, "use_mmap": False}


LOAD_REPLY = {"model": "llama3.1:8b", "done": True, "done_reason": "load"}
"""Ollama's answer to a preload: no timings at all."""


async def test_a_preload_answered_at_once_found_the_model_in_memory() -> None:
    server = MockServer({("POST", "/api/chat"): (200, LOAD_REPLY)})
    assert await backend(server).preload("llama3.1:8b", GenerationOptions()) is False


async def test_a_preload_that_took_a_load_says_it_loaded_the_model() -> None:
    def loading(request: httpx.Request) -> httpx.Response:
        time.sleep(WARM_LOAD_MAX_S + 0.05)  # what a runner start costs, at the least
        return httpx.Response(200, json=LOAD_REPLY)

    server = MockServer({("POST", "/api/chat"): loading})
    assert await backend(server).preload("llama3.1:8b", GenerationOptions()) is True


async def test_a_preload_reply_with_a_load_duration_is_read_by_it() -> None:
    reported = {**LOAD_REPLY, "load_duration": 1_200_000_000}
    server = MockServer({("POST", "/api/chat"): (200, reported)})
    assert await backend(server).preload("llama3.1:8b", GenerationOptions()) is True


@pytest.mark.parametrize(
    ("load_duration", "cold_start"),
    [(22_418_300, False), (2_513_000_000, True), (None, None)],
    ids=["warm", "loaded", "not-reported"],
)
async def test_an_answer_says_whether_ollama_loaded_the_model_for_it(
    load_duration: int | None, cold_start: bool | None
) -> None:
    final = {k: v for k, v in FINAL.items() if k != "load_duration"}
    if load_duration is not None:
        final["load_duration"] = load_duration
    events = await collect(
        backend(streaming(final)).stream_chat("m", QUESTION, GenerationOptions())
    )
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.cold_start is cold_start


@pytest.mark.parametrize("size", [0, None], ids=["zero", "absent"])
async def test_a_loaded_model_without_a_size_has_an_unknown_size_not_0_mb(size: int | None) -> None:
    entry = {k: v for k, v in PS_MODEL.items() if k != "size"}
    if size is not None:
        entry["size"] = size
    server = MockServer({("GET", "/api/ps"): (200, {"models": [entry]})})
    [model] = await backend(server).list_loaded()
    assert model.size_mb is None


async def test_preload_and_chat_send_identical_load_options_so_ollama_does_not_reload() -> None:
    server = MockServer({("POST", "/api/chat"): [(200, {"done": True}), (200, ndjson(FINAL))]})
    ollama = backend(server)
    await ollama.preload("llama3.1:8b", GenerationOptions(num_ctx=4096, num_thread=6))
    chat_options = GenerationOptions(num_ctx=4096, num_thread=6, max_tokens=64, temperature=0.2)
    await collect(ollama.stream_chat("llama3.1:8b", QUESTION, chat_options))
    preload, chat = server.bodies("/api/chat")
    load_keys = ("num_ctx", "num_batch", "use_mmap", "num_thread")
    assert {k: preload["options"][k] for k in load_keys} == {
        k: chat["options"][k] for k in load_keys
    }
    assert chat["options"]["num_predict"] == 64
    assert chat["options"]["temperature"] == 0.2
    assert "num_predict" not in preload["options"]


async def test_num_thread_is_sent_only_when_set() -> None:
    server = streaming(FINAL)
    await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))
    [body] = server.bodies("/api/chat")
    assert "num_thread" not in body["options"]
    assert "truncate" not in body


async def test_request_keep_alive_overrides_the_default_and_bare_seconds_get_a_unit() -> None:
    server = streaming(FINAL)
    ollama = backend(server, keep_alive="3600")
    await collect(ollama.stream_chat("m", QUESTION, GenerationOptions()))
    await collect(ollama.stream_chat("m", QUESTION, GenerationOptions(keep_alive="5m")))
    first, second = server.bodies("/api/chat")
    assert first["keep_alive"] == 3600
    assert second["keep_alive"] == "5m"


async def test_unload_sends_keep_alive_zero_and_reports_the_memory_freed() -> None:
    unloaded = {"model": "llama3.1:8b", "done": True, "done_reason": "unload"}
    server = MockServer(
        {
            ("GET", "/api/ps"): (200, {"models": [PS_MODEL]}),
            ("POST", "/api/chat"): (200, unloaded),
        }
    )
    freed = await backend(server).unload("llama3.1:8b")
    assert freed == pytest.approx(6346.0, abs=1)
    [body] = server.bodies("/api/chat")
    assert body == {"model": "llama3.1:8b", "messages": [], "stream": False, "keep_alive": 0}


async def test_unloading_a_model_that_is_not_loaded_frees_nothing_measurable() -> None:
    server = MockServer(
        {("GET", "/api/ps"): (200, {"models": []}), ("POST", "/api/chat"): (200, {"done": True})}
    )
    assert await backend(server).unload("qwen2.5:7b") is None


async def test_stream_yields_tokens_then_counts_and_timings() -> None:
    server = streaming(chunk("The"), chunk(" sky"), chunk(" scatters"), FINAL)
    events = await collect(
        backend(server).stream_chat("llama3.1:8b", QUESTION, GenerationOptions())
    )
    assert events[:3] == [TokenChunk("The"), TokenChunk(" sky"), TokenChunk(" scatters")]
    end = events[3]
    assert isinstance(end, StreamEnd)
    assert end.prompt_tokens == 412
    assert end.completion_tokens == 187
    assert end.load_s == pytest.approx(0.0224183)
    assert end.prompt_eval_s == pytest.approx(0.1802241)
    assert end.eval_s == pytest.approx(3.291337)
    assert end.total_s == pytest.approx(3.5129834)
    assert end.finish_reason == "stop"
    assert end.model == "llama3.1:8b"
    [body] = server.bodies("/api/chat")
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "Why is the sky blue?"}]


async def test_omitted_counts_are_unknown_not_zero() -> None:
    final = {k: v for k, v in FINAL.items() if not k.startswith("prompt_eval")}
    events = await collect(
        backend(streaming(final)).stream_chat("m", QUESTION, GenerationOptions())
    )
    assert events == [
        StreamEnd(
            completion_tokens=187,
            load_s=pytest.approx(0.0224183),
            eval_s=pytest.approx(3.291337),
            total_s=pytest.approx(3.5129834),
            finish_reason="stop",
            model="llama3.1:8b",
            cold_start=False,
        )
    ]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "model runner has unexpectedly stopped, this may be due to resource limitations or"
            " an internal error, check ollama server logs for details",
            OutOfMemory,
        ),
        ("llama runner process has terminated: CUDA error: out of memory", OutOfMemory),
        ("an error was encountered while running the model: unexpected EOF", OutOfMemory),
    ],
)
async def test_an_error_line_inside_a_200_stream_raises_after_the_partial_answer(
    line: str, error: type[Exception]
) -> None:
    server = streaming(chunk("Partial"), {"error": line})
    received = []
    with pytest.raises(error) as caught:
        async for event in backend(server).stream_chat("m", QUESTION, GenerationOptions()):
            received.append(event)
    assert received == [TokenChunk("Partial")]
    assert line in str(caught.value)


async def test_a_missing_model_suggests_ollama_pull() -> None:
    server = MockServer({("POST", "/api/chat"): (404, {"error": "model 'phi3:mini' not found"})})
    with pytest.raises(ModelNotFound) as caught:
        await collect(backend(server).stream_chat("phi3:mini", QUESTION, GenerationOptions()))
    assert "ollama pull phi3:mini" in caught.value.fix


async def test_not_enough_system_memory_gives_both_sizes() -> None:
    message = "model requires more system memory (9.8 GiB) than is available (5.1 GiB)"
    server = MockServer({("POST", "/api/chat"): (500, {"error": message})})
    with pytest.raises(OutOfMemory) as caught:
        await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))
    assert caught.value.required_mb == pytest.approx(9.8 * 1024)
    assert caught.value.available_mb == pytest.approx(5.1 * 1024)
    assert caught.value.status == 500


async def test_a_full_queue_is_server_busy() -> None:
    message = "server busy, please try again.  maximum pending requests exceeded"
    server = MockServer({("POST", "/api/chat"): (503, {"error": message})})
    with pytest.raises(ServerBusy):
        await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))


async def test_a_prompt_longer_than_the_context_is_context_exceeded() -> None:
    message = (
        "the prompt is longer than the context length currently available to the model;"
        " shorten the prompt, adjust the context length in settings, or use a model with a"
        " longer context length"
    )
    server = MockServer({("POST", "/api/chat"): (400, {"error": message})})
    with pytest.raises(ContextExceeded):
        await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))


async def test_a_stream_without_its_final_object_is_broken() -> None:
    server = streaming(chunk("The"), chunk(" sky"))
    with pytest.raises(StreamBroken):
        await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))


async def test_an_unreadable_line_breaks_the_stream() -> None:
    server = MockServer(
        {("POST", "/api/chat"): (200, ndjson(chunk("The")) + b"<html>proxy error</html>\n")}
    )
    with pytest.raises(StreamBroken, match="unreadable"):
        await collect(backend(server).stream_chat("m", QUESTION, GenerationOptions()))


async def test_connection_refused_is_unavailable_with_how_to_start_ollama() -> None:
    ollama = OllamaBackend(URL, transport=httpx.MockTransport(refuse))
    with pytest.raises(BackendUnavailable) as caught:
        await collect(ollama.stream_chat("m", QUESTION, GenerationOptions()))
    assert URL in caught.value.message
    assert "ollama serve" in caught.value.fix


async def test_connect_timeout_is_unavailable() -> None:
    ollama = OllamaBackend(URL, transport=httpx.MockTransport(connect_timeout))
    with pytest.raises(BackendUnavailable, match="connect timeout"):
        await ollama.list_installed()


@pytest.mark.parametrize(
    "drop",
    [
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadError("connection reset by peer"),
        httpx.ReadTimeout("timed out"),
    ],
)
async def test_a_connection_dropped_mid_answer_is_a_broken_stream(drop: Exception) -> None:
    body = TrackedStream([ndjson(chunk("The"))], then_raise=drop)
    server = MockServer({("POST", "/api/chat"): lambda _: httpx.Response(200, stream=body)})
    received = []
    with pytest.raises(StreamBroken):
        async for event in backend(server).stream_chat("m", QUESTION, GenerationOptions()):
            received.append(event)
    assert received == [TokenChunk("The")]


async def test_closing_the_stream_early_closes_the_response() -> None:
    body = TrackedStream([ndjson(chunk("The")), ndjson(chunk(" sky")), ndjson(FINAL)])
    server = MockServer({("POST", "/api/chat"): lambda _: httpx.Response(200, stream=body)})
    stream = backend(server).stream_chat("m", QUESTION, GenerationOptions())
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first == TokenChunk("The")
    assert body.closed
    assert body.sent < 3


async def test_ollama_cannot_tokenize() -> None:
    server = MockServer()
    assert await backend(server).tokenize("m", "hello") is None
    assert server.requests == []


def test_repr_names_the_url() -> None:
    assert repr(OllamaBackend(URL)) == f"OllamaBackend(url='{URL}')"


async def test_a_body_that_never_ends_after_the_final_message_still_completes() -> None:
    final = {
        "model": "tinyllama",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "eval_count": 1,
    }

    class EndlessAfterDone(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"model":"tinyllama","message":{"content":"Hi"},"done":false}\n'
            yield (json.dumps(final) + "\n").encode()
            await asyncio.Event().wait()  # the server never closes the body

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=EndlessAfterDone())

    backend = OllamaBackend("http://ollama.test", transport=httpx.MockTransport(handler))
    events = []
    async with asyncio.timeout(10):
        async for event in backend.stream_chat(
            "tinyllama", [ChatMessage("user", "hi")], GenerationOptions()
        ):
            events.append(event)
    await backend.aclose()
    assert [type(e).__name__ for e in events] == ["TokenChunk", "StreamEnd"]


def undecodable(request: httpx.Request) -> httpx.Response:
    """A body that claims gzip but is not: a misconfigured proxy, or another server."""
    return httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip at all")
    )


async def test_health_with_an_undecodable_body_is_down_and_says_to_check_the_address() -> None:
    server = MockServer({("GET", "/api/version"): undecodable})

    health = await backend(server).health()

    assert not health.up
    assert "undecodable body" in health.detail
    assert "right server" in health.detail and "ollama serve" not in health.detail


async def test_an_undecodable_model_list_is_a_backend_error() -> None:
    server = MockServer({("GET", "/api/tags"): undecodable})

    with pytest.raises(BackendError) as caught:
        await backend(server).list_installed()

    assert "cannot be decoded" in caught.value.message and caught.value.fix


async def test_an_undecodable_answer_is_a_broken_stream() -> None:
    server = MockServer({("POST", "/api/chat"): undecodable})

    with pytest.raises(StreamBroken):
        await collect(backend(server).stream_chat("tinyllama", QUESTION, GenerationOptions()))


async def test_an_engine_starts_when_ollama_answers_undecodable_bodies() -> None:
    server = MockServer({("GET", "/api/version"): undecodable, ("GET", "/api/tags"): undecodable})
    engine = Engine(
        Config(), sampler=SimulatedSampler(8192, 6144), backends=[backend(server)], monitor=False
    )

    healths = await engine.start()
    await engine.aclose()

    assert [h.up for h in healths] == [False]
