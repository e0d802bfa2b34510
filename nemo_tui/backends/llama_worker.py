"""The llama.cpp worker: a child process serving one GGUF model through xllamacpp's llama-server.

`python -m nemo_tui.backends.llama_worker` reads its settings as one JSON object on stdin, loads
the model, writes one JSON line to stdout (`{"url": ...}` once it serves, `{"error": ...}` when
it cannot), and serves llama-server's HTTP API on loopback until its stdin closes. Then it exits,
and every byte the model used goes back to the system with the process.

Why a process of its own and not a thread: xllamacpp holds the GIL while it loads a model, which
would freeze the dashboard (and its Esc key) for as long as a load takes; a model that runs the
machine out of memory takes down only this process; and its memory is exactly the process's.
The API key travels on stdin, never on the command line where `ps` would show it, and the
server refuses every request without it, so other users of a shared machine cannot use it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
"""KV cache types the worker accepts; the quantized ones turn on flash attention."""
QUIET_VERBOSITY = 1
"""llama.cpp's log threshold by default: errors only, which name why a load failed."""
VERBOSE_VERBOSITY = 4
"""llama.cpp's log threshold when asked for: the model's metadata, every buffer it allocates
(weights, KV cache, compute) and each request's timings."""


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker loads its model and serves it.

    Attributes:
        model_path: The GGUF file.
        api_key: The bearer token every request must carry.
        n_ctx: Context length of the one slot.
        n_batch: Logical batch (tokens per prompt-processing step).
        n_ubatch: Physical batch, which sizes llama.cpp's compute buffer.
        use_mmap: Map the weights instead of reading them into anonymous memory.
        n_threads: CPU threads for generation and prompt processing; None lets llama.cpp choose.
        kv_cache_type: `f16`, `q8_0` or `q4_0`.
        verbose: llama.cpp logs what it does, not only its errors.
        host: The address to listen on.
        port: The port to listen on; 0 picks a free one.
        sleep_idle_s: Unload the model after this many idle seconds while the server stays up
            (llama-server's sleep); a negative value never does.
    """

    model_path: str
    api_key: str
    n_ctx: int
    n_batch: int
    n_ubatch: int
    use_mmap: bool = True
    n_threads: int | None = None
    kv_cache_type: str = "f16"
    verbose: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    sleep_idle_s: int = -1

    def to_json(self) -> str:
        """One line of JSON, as the worker reads it."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        """Read settings written by `to_json`.

        Raises:
            ValueError: the text is not such an object.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("worker settings must be a JSON object")
        settings = cls(**data)
        if settings.kv_cache_type not in KV_CACHE_TYPES:
            raise ValueError(f"unknown kv_cache_type {settings.kv_cache_type!r}")
        return settings


def _params(settings: WorkerSettings) -> Any:
    """xllamacpp's `CommonParams` for these settings."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = settings.model_path
    params.n_ctx = settings.n_ctx
    params.n_batch = settings.n_batch
    params.n_ubatch = settings.n_ubatch
    # One slot, so the whole context belongs to the one request nemo-tui sends at a time.
    params.n_parallel = 1
    # llama.cpp would otherwise shrink the context to what it thinks fits; the context planned
    # and estimated is the one that must be allocated.
    params.fit_params = False
    params.warmup = False
    params.load_mode = (
        xllamacpp.llama_load_mode.LLAMA_LOAD_MODE_MMAP
        if settings.use_mmap
        else xllamacpp.llama_load_mode.LLAMA_LOAD_MODE_NONE
    )
    if settings.n_threads is not None:
        params.cpuparams.n_threads = settings.n_threads
        params.cpuparams_batch.n_threads = settings.n_threads
    if settings.kv_cache_type != "f16":
        kv_type = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{settings.kv_cache_type.upper()}")
        params.cache_type_k = kv_type
        params.cache_type_v = kv_type
        # A quantized V cache needs flash attention.
        params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.api_keys = [settings.api_key]
    params.hostnames = [settings.host]
    params.port = settings.port
    # An HTTP thread stays with a kept-alive connection; with too few, a new connection is
    # closed unanswered while the client still holds an idle one.
    params.n_threads_http = 8
    # llama-server keeps old prompts' KV state in RAM (up to 8 GiB by default) to reuse them; the
    # worker would grow with every new prompt past what was estimated and reported.
    params.cache_ram_mib = 0
    params.sleep_idle_seconds = settings.sleep_idle_s
    params.verbosity = VERBOSE_VERBOSITY if settings.verbose else QUIET_VERBOSITY
    return params


def _say(message: dict[str, str]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Serve the model described on stdin until stdin closes; the exit status."""
    try:
        settings = WorkerSettings.from_json(sys.stdin.readline())
    except (ValueError, TypeError) as exc:
        _say({"error": f"bad worker settings: {exc}"})
        return 2
    try:
        import xllamacpp

        server = xllamacpp.Server(_params(settings))
    except ImportError as exc:
        _say({"error": f"xllamacpp is not installed ({exc})"})
        return 1
    except (RuntimeError, ValueError) as exc:
        _say({"error": str(exc)})
        return 1
    _say({"url": str(server.listening_address)})
    # Serve until the parent closes our stdin: on unload, or when it exits or dies.
    sys.stdin.read()
    sys.stderr.flush()
    # Skip the server's orderly shutdown: the process is going, and with it all its memory.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
