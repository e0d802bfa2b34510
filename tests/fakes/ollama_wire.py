"""The pieces of Ollama's native wire format the fake server needs (reference §1).

The fake models and their memory, the fixed answer text, `keep_alive` parsing as Go's
`api.Duration` does it, Ollama's exact error texts, and the NDJSON objects of an answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
FOREVER_S = 292 * 365 * 24 * 3600.0
"""Go stores a negative keep_alive as the largest duration, about 292 years (§1.4)."""

ANSWER_TEXT = (
    "The quick brown fox jumps over the lazy dog while the patient model streams one word"
    " at a time, so every test sees the same answer in the same order and can count each"
    " token it was sent before the stream ends."
)
ANSWER_WORDS = tuple(ANSWER_TEXT.split(" "))
"""The fake's tokens: every answer is the first words of this text, one word per token."""
PROMPT_OVERHEAD_TOKENS = 4
"""Template tokens the fake counts per message on top of its words."""


class Fault(StrEnum):
    """A failure `FakeOllama.fail_next` injects into the next chat or generate request."""

    BUSY = "busy"
    """503 with the scheduler's queue-full message."""
    ERROR_500 = "error_500"
    """500 before any byte of the answer."""
    ERROR_LINE = "error_line"
    """200, a few tokens, then an `{"error": ...}` line."""
    GARBAGE_LINE = "garbage_line"
    """200, a few tokens, then a line that is not JSON."""
    STALL = "stall"
    """200 headers, then silence for `seconds` before the first token."""
    STALL_MID = "stall_mid"
    """200, a few tokens, then silence for `seconds` with the connection open, then the rest."""
    ENDLESS_LINE = "endless_line"
    """200, a few tokens, then a line that never ends: bytes without a newline until the client
    hangs up."""
    DROP = "drop"
    """200, a few tokens, then the socket is closed without ending the chunked body."""
    OOM_LINE = "oom_line"
    """200, a few tokens, then the runner-died line Ollama sends when it runs out of memory."""


BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
ERROR_500_MESSAGE = "timed out waiting for llama runner to start - progress 0.00 - "
ERROR_LINE_MESSAGE = "an error was encountered while running the model: unexpected EOF"
OOM_LINE_MESSAGE = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an"
    " internal error, check ollama server logs for details"
)


@dataclass(frozen=True)
class FakeModel:
    """A model the fake serves; its memory use follows from its architecture figures."""

    name: str
    weights_mb: float
    """Weights resident once loaded; also the on-disk size `/api/tags` reports."""
    family: str = "llama"
    parameter_size: str = "1.1B"
    parameter_count: int = 1_100_000_000
    quantization: str = "Q4_0"
    file_type: int = 2
    context_length: int = 2048
    """Trained context; a larger `num_ctx` is clamped to it (Ollama v0.9.3+)."""
    block_count: int = 22
    embedding_length: int = 2048
    head_count: int = 32
    head_count_kv: int = 4
    overhead_mb: float = 0.0
    """Compute buffers and other fixed costs added to every load."""

    def kv_mb(self, num_ctx: int) -> float:
        """The f16 KV cache for `num_ctx` tokens (reference §2.2)."""
        head_dim = self.embedding_length // self.head_count
        kv_bytes = 2 * self.block_count * num_ctx * self.head_count_kv * head_dim * 2
        return kv_bytes / MIB

    def memory_mb(self, num_ctx: int) -> float:
        """Everything the model holds once loaded with `num_ctx`."""
        return self.weights_mb + self.kv_mb(num_ctx) + self.overhead_mb

    def model_info(self) -> dict[str, Any]:
        """The GGUF key/values `/api/show` returns."""
        arch = self.family
        return {
            "general.architecture": arch,
            "general.file_type": self.file_type,
            "general.parameter_count": self.parameter_count,
            f"{arch}.block_count": self.block_count,
            f"{arch}.embedding_length": self.embedding_length,
            f"{arch}.attention.head_count": self.head_count,
            f"{arch}.attention.head_count_kv": self.head_count_kv,
            f"{arch}.context_length": self.context_length,
            "tokenizer.ggml.tokens": [],
        }

    def details(self) -> dict[str, Any]:
        """The `details` object shared by tags, ps and show."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    @property
    def digest(self) -> str:
        """A stable fake manifest digest."""
        return (self.name.encode().hex() * 64)[:64]


DEFAULT_MODELS: tuple[FakeModel, ...] = (
    FakeModel("tinyllama:1.1b", weights_mb=608.0),
    FakeModel(
        "phi3:mini",
        weights_mb=2100.0,
        family="phi3",
        parameter_size="3.8B",
        parameter_count=3_821_079_552,
        context_length=4096,
        block_count=32,
        embedding_length=3072,
        head_count=32,
        head_count_kv=32,
    ),
    FakeModel(
        "llama3.2:3b",
        weights_mb=1925.0,
        parameter_size="3.2B",
        parameter_count=3_212_749_888,
        quantization="Q4_K_M",
        file_type=15,
        context_length=131072,
        block_count=28,
        embedding_length=3072,
        head_count=24,
        head_count_kv=8,
    ),
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    body: Any
    """The parsed JSON body; None when there was none or it was not JSON."""


class HttpError(Exception):
    """Answer with this status and `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_SCALE = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (`"1h30m"`, `"300ms"`, `"-1m"`, `"0"`).

    Raises:
        ValueError: with Go's own message, e.g. `time: missing unit in duration "3600"`.
    """
    body = text
    sign = 1.0
    if body and body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            if re.fullmatch(r"\d+\.?\d*", body[position:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_SCALE[match.group(2)]
        position = match.end()
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """Seconds a `keep_alive` JSON value asks for; None when absent; FOREVER_S when negative.

    Raises:
        HttpError: 400 for a string without unit, a bad duration, or a bool/object.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise HttpError(400, f"Unsupported type: '{_go_type(value)}'")
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from exc
    else:
        seconds = float(value)
    return FOREVER_S if seconds < 0 else seconds


def _go_type(value: Any) -> str:
    return {bool: "bool", dict: "map", list: "slice"}.get(type(value), type(value).__name__)


def human_bytes2(size: float) -> str:
    """Ollama's `HumanBytes2`: one decimal and a binary unit (`2.1 GiB`)."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """How many prompt tokens the fake counts: words plus a few template tokens per message."""
    return sum(len(str(m.get("content", "")).split()) + PROMPT_OVERHEAD_TOKENS for m in messages)


def int_option(options: dict[str, Any], name: str, default: int | None) -> int | None:
    """An integer option, type-checked the way Ollama does it (a wrong type is a 500)."""
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HttpError(500, f'option "{name}" must be of type integer')
    return int(value)


def ns(seconds: float) -> int:
    """A duration in the nanoseconds Ollama reports; never 0, which Go would omit."""
    return max(1, int(seconds * 1e9))


def answer_chunk(model: str, chat: bool, text: str) -> dict[str, Any]:
    """One intermediate object of a chat (`message`) or generate (`response`) answer."""
    payload: dict[str, Any] = {
        "model": model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if chat:
        payload["message"] = {"role": "assistant", "content": text}
    else:
        payload["response"] = text
    payload["done"] = False
    return payload


def final_fields(
    done_reason: str,
    started: float,
    load_s: float,
    prompt_count: int,
    prompt_done: float,
    eval_count: int,
) -> dict[str, Any]:
    """The fields of the final (`done: true`) object: counts and measured durations."""
    now = time.perf_counter()
    return {
        "done": True,
        "done_reason": done_reason,
        "total_duration": ns(now - started),
        "load_duration": ns(load_s),
        "prompt_eval_count": prompt_count,
        "prompt_eval_duration": ns(prompt_done - started - load_s),
        "eval_count": eval_count,
        "eval_duration": ns(now - prompt_done),
    }
