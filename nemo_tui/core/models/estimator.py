"""How much memory a model needs at a given context, and the largest context or batch that fits.

This module owns the memory arithmetic: `ModelArchitecture` (the figures it needs), the
`MemoryEstimate` it produces, and the two budget solvers behind the original design's "context
length adjustment" and "batch size optimization". `nemo_tui.core.models.metadata` fills a
`ModelArchitecture` from a GGUF header or from Ollama's `/api/show` reply.

The total is weights + KV cache + compute + a fixed overhead, as in Ollama's classic estimator
(`llm/memory.go` and `GraphSize` in `fs/ggml/ggml.go`). On a GPU every allocated byte counts, so
the GPU figure is that estimator's as it stands. In system RAM the figure follows what llama.cpp
allocates on a CPU (its logged buffers, xllamacpp 2026.10.11549): the compute term is the
attention mask, the attention scores when flash attention is off, one layer's activations at
the batch size, the CPU backend's work buffer and the row of logits (see `estimate_memory`).
With flash attention, which the embedded backend always runs with, the compute memory hardly
grows with the context. Sliding-window layers and recurrent state are not modelled; both make
the true figure smaller, so the estimate errs on the side of not running out of memory.
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
and serving (llama-server's threads and slot state, the request being answered, and ggml-cpu's
work buffer, under 1 MB for SmolLM2, which the compute term now also counts: a margin on the safe
side). Checked out of sample on random-weight llama, qwen2 and gemma models of other shapes
(bench/bench_estimator.py): the worker's peak is 52-57 MB above llama.cpp's buffers there too,
with flash attention. It was 28 MB when llama.cpp ran inside nemo-tui's own process through
llama-cpp-python 0.3.36 (20.4 MB for its import). An Ollama runner is a separate process of the
same order. The CUDA figure below is not used for CPU loads: it is a per-GPU driver reservation
and would triple the estimate of a 135M model.
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
ACTIVATION_BYTES = 4
"""Bytes per activation value: llama.cpp's graph computes in f32."""
WORK_BYTES_PER_VALUE = 2
"""Bytes per value of a matrix product's input in ggml-cpu's work buffer, where it is converted
to the weights' dot-product type: f16 for F16 weights, about 1.1 for the 8-bit block types the
quantized weights use; F32 weights need no copy."""
FFN_FALLBACK_RATIO = 4
"""Feed-forward width assumed, as a multiple of the embedding length, for a model whose metadata
does not give it (the classic transformer's 4x; gated models run 2.7x to 8x)."""


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
        feed_forward_length: Width of the feed-forward layer (the largest, when it varies by
            layer); None means `FFN_FALLBACK_RATIO` x `embedding_length`.
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
    feed_forward_length: int | None = None

    @property
    def effective_head_dim(self) -> int:
        """The head size used for the KV cache."""
        return self.head_dim or self.embedding_length // self.head_count

    @property
    def effective_feed_forward_length(self) -> int:
        """The feed-forward width used for the compute memory."""
        return self.feed_forward_length or FFN_FALLBACK_RATIO * self.embedding_length

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
    flash_attention: bool = False,
) -> MemoryEstimate:
    """Estimate the memory of one loaded model with one slot.

    KV cache = 2 (K and V) x KV layers x num_ctx x KV heads x head dim x bytes per element.

    With c = num_ctx, b = min(num_ctx, num_batch) tokens per compute pass, e = embedding length,
    h = query heads, q = h x head dim (the query width), k = KV heads x head dim (the K or V
    width), f = feed-forward width and V = vocabulary:

    - on a GPU, compute = `graph_full` of the classic estimator (reference §2.3),
      max(4b(1 + 4e + c(1 + h)), 4b(e + V)): the buffer llama.cpp allocates, which assumes all
      b rows of logits; `flash_attention` is not modelled there;
    - in RAM, compute = mask + max(scores + 4b(2q + 2k + 5e), 4b(3f + 5e + 2k)) + work + 4V,
      the parts llama.cpp allocates on a CPU:

      - mask: the c x b attention mask, f16 with flash attention (2cb), f32 without (4cb);
      - scores: without flash attention, the c x b x h f32 attention scores (4cbh; the softmax
        runs in place). Flash attention never holds them: this is why its compute memory hardly
        grows with the context;
      - the largest set of f32 activations one layer holds at once, for b tokens, at whichever
        stage is larger: attention (the query and its rotated copy, K and V, and up to five
        e-wide rows: the residual stream, its norm, the attention output, its projection, and
        the scaled input some architectures add) or the feed-forward (gate, up and their product,
        3f, with the e- and k-wide rows still placed below them). Over 109 loads of 16 shapes
        (llama, qwen2 and gemma; random weights, bench/random_gguf.py) llama.cpp's logged
        compute buffer is never above mask + scores + this term (but for a few token-sized
        inputs, 20 kB), and equals it where the feed-forward stage is the larger without flash
        attention; with flash attention that stage holds the 2k rows less, and llama's attention
        stage one e-row less. For real shapes (f >= 2.6e) the term is 0-15 % above llama.cpp's
        buffer, most with Phi-3-mini's (no grouped-query attention, so k = e); up to 41 % for
        made-up shapes whose feed-forward is no wider than 2e;
      - work: ggml-cpu's work buffer, outside that compute buffer: a matrix product's input
        converted to the weights' dot-product type, at most 2 bytes per value of the widest one,
        the b x f feed-forward product (2bf); without flash attention, the larger f16 copy of the
        scores for their product with the V cache (2cbh);
      - 4V: the one row of logits a completion reads (llama.cpp's output buffer).

    Overhead = runtime + tokenizer, plus the per-GPU minimum when `gpu` is set.

    Measured in the embedded backend (bench/bench_estimator.py), the RAM figure is 0.2-6.4 %
    above the worker's peak resident memory while it answers a prompt that fills the context, in
    all 23 cases: SmolLM2-135M and random-weight llama, qwen2 and gemma models of other shapes,
    512-16384 tokens, f16, q8_0 and q4_0 caches, batches 128-512, flash attention on and off.

    Args:
        arch: The model's figures.
        num_ctx: Context length in tokens.
        kv_type: Element type of the KV cache.
        num_batch: Prompt-processing batch size.
        gpu: Whether the model is loaded on a GPU.
        flash_attention: Whether the server computes attention with flash attention (in RAM;
            the embedded backend always does). False, the larger figure, when unknown.
    """
    kv_layers = arch.layers if arch.kv_layers is None else arch.kv_layers
    head_dim = arch.effective_head_dim
    kv_bytes = (
        2 * kv_layers * num_ctx * arch.head_count_kv * head_dim * KV_BYTES_PER_ELEMENT[kv_type]
    )
    batch = min(num_ctx, num_batch)
    emb = arch.embedding_length
    heads = arch.head_count
    vocab = arch.vocab_size or DEFAULT_VOCAB
    overhead = CPU_RUNTIME_MB + bytes_to_mb(vocab * TOKENIZER_BYTES_PER_TOKEN)
    graph_bytes: float
    if gpu:
        attention_bytes = 4 * batch * (1 + 4 * emb + num_ctx * (1 + heads))
        graph_bytes = max(attention_bytes, 4 * batch * (emb + vocab))
        overhead += GPU_MINIMUM_MB
    else:
        graph_bytes = _cpu_compute_bytes(arch, num_ctx, batch, vocab, flash_attention)
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


def _cpu_compute_bytes(
    arch: ModelArchitecture, num_ctx: int, batch: int, vocab: int, flash_attention: bool
) -> float:
    """The RAM compute term of `estimate_memory` (its docstring gives the formula)."""
    emb = arch.embedding_length
    query = arch.head_count * arch.effective_head_dim
    kv_width = arch.head_count_kv * arch.effective_head_dim
    ffn = arch.effective_feed_forward_length
    cells = num_ctx * batch
    if flash_attention:
        mask, scores, score_copy = cells * 2, 0, 0
    else:
        mask = cells * 4
        scores = cells * arch.head_count * ACTIVATION_BYTES
        score_copy = cells * arch.head_count * ATTENTION_SCORE_BYTES
    attention_rows = 2 * query + 2 * kv_width + 5 * emb
    ffn_rows = 3 * ffn + 5 * emb + 2 * kv_width
    graph = mask + max(
        scores + ACTIVATION_BYTES * batch * attention_rows, ACTIVATION_BYTES * batch * ffn_rows
    )
    work = max(score_copy, WORK_BYTES_PER_VALUE * batch * ffn)
    return graph + work + ACTIVATION_BYTES * vocab


def max_context_for_budget(
    arch: ModelArchitecture,
    budget_mb: float,
    *,
    kv_type: KvCacheType = "f16",
    num_batch: int = 512,
    gpu: bool = False,
    flash_attention: bool = False,
) -> int:
    """The largest context whose estimate fits `budget_mb` ("context length adjustment").

    The total grows monotonically with the context, so a binary search over multiples of 256
    finds it exactly. The trained window caps the answer (it is returned as is when it fits).

    Returns:
        A multiple of 256, at least 512; or 0 when not even 512 tokens fit.
    """

    def fits(ctx: int) -> bool:
        estimate = estimate_memory(
            arch,
            ctx,
            kv_type=kv_type,
            num_batch=num_batch,
            gpu=gpu,
            flash_attention=flash_attention,
        )
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
    flash_attention: bool = False,
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
        flash_attention: Whether the server uses flash attention (see `estimate_memory`).

    Returns:
        The batch size; 32 (or `num_ctx`, if smaller) when nothing fits, so the caller should
        check the estimate itself against the budget.
    """
    batch = MAX_BATCH if gpu else CPU_MAX_BATCH
    while batch > MIN_BATCH:
        if batch <= num_ctx:
            estimate = estimate_memory(
                arch,
                num_ctx,
                kv_type=kv_type,
                num_batch=batch,
                gpu=gpu,
                flash_attention=flash_attention,
            )
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
