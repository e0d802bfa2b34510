"""How much memory a model needs at a given context, and the largest context or batch that fits.

This module owns the memory arithmetic: `ModelArchitecture` (the figures it needs), the
`MemoryEstimate` it produces, and the two budget solvers behind the original design's "context
length adjustment" and "batch size optimization". `nemo_tui.core.metadata` fills a
`ModelArchitecture` from a GGUF header or from Ollama's `/api/show` reply.

The formulas follow Ollama's classic estimator (`llm/memory.go` and `GraphSize` in
`fs/ggml/ggml.go`): weights + KV cache + compute graph + a fixed overhead. On a GPU every
allocated byte counts, so the GPU figure is that estimator's as it stands. In system RAM the
kernel backs a page only once it is written, so the CPU figure counts the compute memory a
prompt that fills the context really writes: the graph without the logits rows nobody asks for,
plus the CPU backend's work buffer. It is the peak while answering such a prompt, which is what
decides whether a model fits, when attention is computed without flash attention; llama.cpp now
uses flash attention on CPUs, which needs far less (see `estimate_memory`). Sliding-window
layers and recurrent state are not modelled either; both make the true figure smaller, so the
estimate errs on the side of not running out of memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from nemo_tui.config import KvCacheType
from nemo_tui.units import bytes_to_mb

__all__ = [
    "BITS_PER_WEIGHT",
    "CPU_MAX_BATCH",
    "KvCacheType",
    "MemoryEstimate",
    "ModelArchitecture",
    "batch_size_for_budget",
    "bits_per_weight",
    "estimate_memory",
    "max_context_for_budget",
]

BITS_PER_WEIGHT: dict[str, float] = {
    "Q2_K": 2.63,
    "Q3_K_S": 3.5,
    "Q3_K_M": 3.91,
    "Q3_K_L": 4.27,
    "Q4_0": 4.55,
    "Q4_1": 5.0,
    "Q4_K_S": 4.58,
    "Q4_K_M": 4.85,
    "Q5_0": 5.5,
    "Q5_1": 6.0,
    "Q5_K_S": 5.54,
    "Q5_K_M": 5.69,
    "Q6_K": 6.59,
    "Q8_0": 8.5,
    "F16": 16.0,
    "BF16": 16.0,
    "F32": 32.0,
}
"""Average bits per weight of a whole model file for each GGUF quantization.

Mixed types (`_K_M`, `_K_S`) average their tensor types, and the figures include the tensors
that stay at higher precision (gollama's table, reference §2.8).
"""

KV_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
"""Bytes per cached value: ggml's real block sizes (a q8_0 block stores 32 values in 34 bytes)."""

CPU_RUNTIME_MB = 37.0
"""Fixed memory of the inference runtime itself, on any device, whatever the model or context.

Measured on the embedded backend's worker process (xllamacpp 2026.10.11549, Linux x86-64,
bench/bench_estimator.py), whose whole resident set is the model's memory. Over SmolLM2-135M
loads at 512, 2048 and 8192 tokens with f16 and q8_0 KV caches, the worker's peak RSS while
answering a prompt that fills the context is 53.1-57.2 MB (median 55.8 MB) above the buffers
llama.cpp reports allocating (model, KV cache, compute, output). This constant is that median
less the tokenizer term below (18.75 MB for SmolLM2's 49,152 tokens): 37 MB. Of it, 22.5 MB is a
fresh interpreter that has imported the worker module and xllamacpp; the rest comes with loading
and serving (llama-server's threads and slot state, the request being answered). It was 28 MB
when llama.cpp ran inside nemo-tui's own process through llama-cpp-python 0.3.36 (20.4 MB for
its import). An Ollama runner is a separate process of the same order. The CUDA figure below is
not used for CPU loads: it is a per-GPU driver reservation and would triple the estimate of a
135M model.
"""

TOKENIZER_BYTES_PER_TOKEN = 400
"""Tokenizer tables grow with the vocabulary: loading only the 49,152-token SmolLM2 vocabulary
(with its merges) added 18.5 MB, about 400 bytes per token (measured in-process with
llama-cpp-python 0.3.36; in the worker it cannot be told apart from the runtime, whose constant
above is measured net of it)."""

GPU_MINIMUM_MB = 457.0
"""Ollama's per-GPU minimum reservation for CUDA/ROCm (reference §2.1), added only for GPU loads."""

DEFAULT_VOCAB = 32000
"""Vocabulary assumed when a model does not say (the llama/mistral size)."""

CONTEXT_STEP = 256
MIN_CONTEXT = 512
MAX_SEARCH_CONTEXT = 1 << 20
"""Upper bound of the context search for a model whose trained window is unknown."""
MIN_BATCH = 32
MAX_BATCH = 2048
"""Largest prompt batch worth choosing for a model on a GPU."""
CPU_MAX_BATCH = 512
"""Largest prompt batch worth choosing for a model in system RAM.

It is llama.cpp's default physical batch (`n_ubatch`), the most tokens one compute pass holds;
the embedded backend never passes a larger one, so a larger logical batch computes the same
passes while the compute memory grows with the batch. Up to it a larger batch pays on a CPU
too: 512 evaluates a prompt 1.4x as fast as 32 in the embedded backend (bench/bench_batch.py,
xllamacpp; it was flat, 0.97-1.05x, with llama-cpp-python 0.3.36).
"""
ATTENTION_SCORE_BYTES = 2
"""Bytes per attention score in the CPU backend's work buffer: ggml-cpu multiplies the f32
scores by the f16 V cache after converting them to f16."""


@dataclass(frozen=True)
class ModelArchitecture:
    """The figures of a model that decide its memory.

    Attributes:
        parameters: Total parameter count (not billions).
        bits_per_weight: Average bits per weight of the quantized file.
        layers: Transformer blocks (`block_count`).
        embedding_length: Hidden size.
        head_count: Query heads (the largest, when it varies by layer).
        head_count_kv: Key/value heads of an attention layer (grouped-query attention).
        head_dim: Size of one head; None means `embedding_length // head_count`.
        context_length: Trained context window; None when unknown.
        vocab_size: Vocabulary size; None when unknown.
        weights_bytes: Exact size of the weights (GGUF tensors or Ollama blob); overrides
            `parameters * bits_per_weight`.
        quantization: Quantization name such as `Q4_0`, for display.
        kv_layers: Layers that hold a KV cache; None means all of them. Hybrid models mark
            recurrent layers with 0 KV heads, and those cache nothing per token.
    """

    parameters: float
    bits_per_weight: float
    layers: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    head_dim: int | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    weights_bytes: float | None = None
    quantization: str | None = None
    kv_layers: int | None = None

    @property
    def effective_head_dim(self) -> int:
        """The head size used for the KV cache."""
        return self.head_dim or self.embedding_length // self.head_count

    @property
    def weights_mb(self) -> float:
        """Memory taken by the weights."""
        if self.weights_bytes is not None:
            return bytes_to_mb(self.weights_bytes)
        return bytes_to_mb(self.parameters * self.bits_per_weight / 8)


@dataclass(frozen=True)
class MemoryEstimate:
    """What loading a model at one context and batch size costs, in MB.

    Attributes:
        weights_mb: The weights.
        kv_cache_mb: The KV cache for `num_ctx` tokens.
        compute_mb: Scratch buffers of the compute graph for `num_batch` tokens.
        overhead_mb: Runtime, tokenizer and (on a GPU) driver reservations.
        total_mb: The sum of the four.
        num_ctx: Context length the estimate is for.
        num_batch: Prompt-processing batch size the estimate is for.
        kv_type: Cache element type: `f16`, `q8_0` or `q4_0`.
    """

    weights_mb: float
    kv_cache_mb: float
    compute_mb: float
    overhead_mb: float
    total_mb: float
    num_ctx: int
    num_batch: int
    kv_type: str

    def to_json(self) -> dict[str, float | int | str]:
        """The estimate for `nemo-tui estimate --json`; `overhead_mb` there includes compute."""
        return {
            "weights_mb": round(self.weights_mb, 1),
            "kv_cache_mb": round(self.kv_cache_mb, 1),
            "overhead_mb": round(self.compute_mb + self.overhead_mb, 1),
            "total_mb": round(self.total_mb, 1),
            "num_ctx": self.num_ctx,
            "num_batch": self.num_batch,
            "kv_type": self.kv_type,
        }


def estimate_memory(
    arch: ModelArchitecture,
    num_ctx: int,
    *,
    kv_type: KvCacheType = "f16",
    num_batch: int = 512,
    gpu: bool = False,
) -> MemoryEstimate:
    """Estimate the memory of one loaded model with one slot.

    KV cache = 2 (K and V) x KV layers x num_ctx x KV heads x head dim x bytes per element.
    With b = min(num_ctx, num_batch) tokens per compute pass, e = embedding length, h = query
    heads, V = vocabulary and c = num_ctx:

    - on a GPU, compute = `graph_full` of the classic estimator (reference §2.3),
      max(4b(1 + 4e + c(1 + h)), 4b(e + V)): the buffer llama.cpp allocates, which assumes all
      b rows of logits;
    - in RAM, compute = max(4b(1 + 4e + c(1 + h)), 4(be + V)) + 2cbh. The first term is the
      attention pass: b hidden states, the c x b mask and the c x b x h f32 scores (grouped-query
      attention still scores every query head). The second is the output pass with the one row
      of logits a completion reads; the other rows are reserved but never written. The last is
      ggml-cpu's work buffer, an f16 copy of the scores for the product with the V cache.

    Overhead = runtime + tokenizer, plus the per-GPU minimum when `gpu` is set.

    Measured on SmolLM2-135M in the embedded backend (bench/bench_estimator.py), the RAM figure
    is 3-4 % above the worker's peak resident memory answering a prompt that fills a 512-token
    context (f16 or q8_0 KV cache), but 22-24 % above at 2048 tokens and 60-80 % above at 8192:
    llama.cpp computes attention with flash attention on the CPU, which never holds the
    c x b x h scores, so its compute buffer stays at 15-23 MB where the RAM compute term counts
    19-237 MB. That errs on the safe side (a smaller context than would fit), and is not
    modelled yet: the estimate does not know whether the server uses flash attention.

    Args:
        arch: The model's figures.
        num_ctx: Context length in tokens.
        kv_type: Element type of the KV cache.
        num_batch: Prompt-processing batch size.
        gpu: Whether the model is loaded on a GPU.
    """
    kv_layers = arch.layers if arch.kv_layers is None else arch.kv_layers
    kv_bytes = (
        2
        * kv_layers
        * num_ctx
        * arch.head_count_kv
        * arch.effective_head_dim
        * KV_BYTES_PER_ELEMENT[kv_type]
    )
    batch = min(num_ctx, num_batch)
    emb = arch.embedding_length
    heads = arch.head_count
    vocab = arch.vocab_size or DEFAULT_VOCAB
    attention_bytes = 4 * batch * (1 + 4 * emb + num_ctx * (1 + heads))
    overhead = CPU_RUNTIME_MB + bytes_to_mb(vocab * TOKENIZER_BYTES_PER_TOKEN)
    if gpu:
        graph_bytes = max(attention_bytes, 4 * batch * (emb + vocab))
        overhead += GPU_MINIMUM_MB
    else:
        score_copy_bytes = num_ctx * batch * heads * ATTENTION_SCORE_BYTES
        graph_bytes = max(attention_bytes, 4 * (batch * emb + vocab)) + score_copy_bytes
    weights = arch.weights_mb
    kv = bytes_to_mb(kv_bytes)
    compute = bytes_to_mb(graph_bytes)
    return MemoryEstimate(
        weights_mb=weights,
        kv_cache_mb=kv,
        compute_mb=compute,
        overhead_mb=overhead,
        total_mb=weights + kv + compute + overhead,
        num_ctx=num_ctx,
        num_batch=batch,
        kv_type=kv_type,
    )


def max_context_for_budget(
    arch: ModelArchitecture,
    budget_mb: float,
    *,
    kv_type: KvCacheType = "f16",
    num_batch: int = 512,
    gpu: bool = False,
) -> int:
    """The largest context whose estimate fits `budget_mb` ("context length adjustment").

    The total grows monotonically with the context, so a binary search over multiples of 256
    finds it exactly. The trained window caps the answer (it is returned as is when it fits).

    Returns:
        A multiple of 256, at least 512; or 0 when not even 512 tokens fit.
    """

    def fits(ctx: int) -> bool:
        estimate = estimate_memory(arch, ctx, kv_type=kv_type, num_batch=num_batch, gpu=gpu)
        return estimate.total_mb <= budget_mb

    cap = arch.context_length or MAX_SEARCH_CONTEXT
    if fits(cap):
        return cap
    if cap < MIN_CONTEXT or not fits(MIN_CONTEXT):
        return 0
    # Invariant: lo steps fit, hi steps do not (hi * step >= cap, and cap does not fit).
    lo, hi = MIN_CONTEXT // CONTEXT_STEP, -(-cap // CONTEXT_STEP)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid * CONTEXT_STEP):
            lo = mid
        else:
            hi = mid
    return lo * CONTEXT_STEP


def batch_size_for_budget(
    arch: ModelArchitecture,
    num_ctx: int,
    budget_mb: float,
    *,
    kv_type: KvCacheType = "f16",
    gpu: bool = False,
) -> int:
    """The largest batch whose compute graph fits beside the weights and KV cache.

    Candidates are powers of two from `MAX_BATCH` (2048) on a GPU, or `CPU_MAX_BATCH` (512) in
    RAM, down to 32, never above `num_ctx`. A bigger batch processes a long prompt faster on a
    GPU but needs a bigger compute graph ("batch size optimization"); on a CPU nothing is gained
    beyond llama.cpp's physical batch.

    Args:
        arch: The model's figures.
        num_ctx: Context length in tokens.
        budget_mb: Memory the model may take.
        kv_type: Element type of the KV cache.
        gpu: Whether the model is loaded on a GPU.

    Returns:
        The batch size; 32 (or `num_ctx`, if smaller) when nothing fits, so the caller should
        check the estimate itself against the budget.
    """
    batch = MAX_BATCH if gpu else CPU_MAX_BATCH
    while batch > MIN_BATCH:
        if batch <= num_ctx:
            estimate = estimate_memory(arch, num_ctx, kv_type=kv_type, num_batch=batch, gpu=gpu)
            if estimate.total_mb <= budget_mb:
                break
        batch //= 2
    return max(1, min(batch, num_ctx))


def bits_per_weight(quantization: str | None, *, default: float = BITS_PER_WEIGHT["F16"]) -> float:
    """Bits per weight for a quantization name (case-insensitive); `default` when unknown.

    The default is F16 because overestimating an unknown format is safer than underestimating.
    """
    if quantization is None:
        return default
    return BITS_PER_WEIGHT.get(quantization.upper(), default)
