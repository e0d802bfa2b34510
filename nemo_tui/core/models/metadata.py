"""Where a model's figures come from: a GGUF file header or Ollama's `/api/show` reply.

Both readers return a `ModelArchitecture` for the estimator. They read the same GGUF keys
(`<arch>.block_count`, `<arch>.attention.head_count_kv`, ...), once from the file and once as
Ollama passes them through in `model_info`, and both accept per-layer head-count arrays.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nemo_tui.core.models.estimator import ModelArchitecture, bits_per_weight
from nemo_tui.errors import NemoError


def architecture_from_gguf(path: Path) -> ModelArchitecture:
    """Read a model's figures from a GGUF file header.

    Parameters and weight bytes are summed over the tensors, so they are exact. Reading costs
    about 2 s for a file with a 49k-token vocabulary, because the `gguf` package decodes every
    tokenizer string in Python; callers should read a file once.

    Raises:
        NemoError: the file cannot be read, is not GGUF, or lacks the layer metadata.
    """
    # Imported here: gguf imports numpy, which is too slow for every CLI start.
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except OSError as exc:
        raise NemoError(
            f"cannot read '{path}': {exc.strerror or exc}",
            fix="check that the path names a readable .gguf file",
        ) from exc
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise NemoError(
            f"'{path}' is not a readable GGUF model file ({exc})",
            fix="download the model again, or point at the .gguf file itself",
        ) from exc

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        if field is None:
            return None
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            if field.types[-1] == gguf.GGUFValueType.STRING:
                return None
            return [field.parts[i][0].item() for i in field.data]
        if kind == gguf.GGUFValueType.STRING:
            return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        return field.parts[field.data[0]][0].item()

    arch = value("general.architecture")
    if arch is None:
        raise NemoError(
            f"'{path}' has no general.architecture key",
            fix="use a GGUF made by a current llama.cpp convert script",
        )
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    parameters = float(sum(int(t.n_elements) for t in reader.tensors))
    weights = float(sum(int(t.n_bytes) for t in reader.tensors))
    quant = _file_type_name(value("general.file_type"), gguf.LlamaFileType)
    prefix = f"{arch}."
    metadata = {k.removeprefix(prefix): value(k) for k in reader.fields if k.startswith(prefix)}
    return _architecture(
        metadata,
        source=str(path),
        parameters=parameters,
        weights_bytes=weights,
        quantization=quant,
        vocab_fallback=len(tokens.data) if tokens is not None else None,
    )


def architecture_from_ollama_show(
    show: Mapping[str, Any], *, weights_bytes: float | None = None
) -> ModelArchitecture:
    """Read a model's figures from an Ollama `/api/show` reply (`model_info` and `details`).

    Args:
        show: The decoded JSON reply.
        weights_bytes: The model blob size from `/api/tags`, when known; otherwise the weights
            are parameters x bits per weight of `details.quantization_level` (F16 if unknown).

    Raises:
        NemoError: the reply lacks the architecture, layer or parameter figures.
    """
    info = show.get("model_info") or {}
    details = show.get("details") or {}
    arch = info.get("general.architecture")
    if not isinstance(arch, str):
        raise NemoError(
            "the model metadata has no general.architecture",
            fix="update Ollama (0.1.32 or later returns model_info from /api/show)",
        )
    parameters = info.get("general.parameter_count")
    if not isinstance(parameters, int | float):
        parameters = parse_parameter_size(str(details.get("parameter_size", "")))
    if parameters is None:
        raise NemoError(
            "the model metadata gives no parameter count",
            fix="add the model to the config with parameters_b",
        )
    prefix = f"{arch}."
    metadata = {k.removeprefix(prefix): v for k, v in info.items() if k.startswith(prefix)}
    quant = details.get("quantization_level")
    return _architecture(
        metadata,
        source=f"the {arch} model metadata",
        parameters=float(parameters),
        weights_bytes=weights_bytes,
        quantization=quant if isinstance(quant, str) and quant else None,
        vocab_fallback=None,
    )


_PARAMETER_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*$", re.IGNORECASE)
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_parameter_size(text: str) -> float | None:
    """Parse Ollama's `parameter_size` (`7.6B`, `135M`) into a count; None if unparsable."""
    match = _PARAMETER_SIZE.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _SCALE[match.group(2).upper()]


def _file_type_name(file_type: Any, enum: Callable[[int], Any]) -> str | None:
    """`general.file_type` as a quantization name (`MOSTLY_Q4_1` -> `Q4_1`); None if unknown."""
    if not isinstance(file_type, int):
        return None
    try:
        name = str(enum(file_type).name)
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _architecture(
    metadata: Mapping[str, Any],
    *,
    source: str,
    parameters: float,
    weights_bytes: float | None,
    quantization: str | None,
    vocab_fallback: int | None,
) -> ModelArchitecture:
    """Build a ModelArchitecture from `<arch>.`-stripped GGUF keys.

    Head counts may be per-layer arrays: the query heads take the largest entry, and the KV
    cache is sized from the attention layers (non-zero entries) at their largest KV head count.
    A per-layer feed-forward width takes its largest entry too.
    """
    missing = [
        key
        for key in ("block_count", "embedding_length", "attention.head_count")
        if not isinstance(metadata.get(key), int | list)
    ]
    if missing:
        raise NemoError(
            f"{source} lacks {', '.join(missing)} in its metadata",
            fix="this is not a text model nemo-tui can size; add it to the config with "
            "parameters_b and min_memory_mb",
        )
    layers = int(metadata["block_count"])
    heads = _largest(metadata["attention.head_count"])
    kv_raw = metadata.get("attention.head_count_kv", heads)
    kv_counts = kv_raw if isinstance(kv_raw, list) else [kv_raw] * layers
    attention = [int(n) for n in kv_counts if n]
    if weights_bytes is not None and parameters > 0:
        bpw = weights_bytes * 8 / parameters
    else:
        bpw = bits_per_weight(quantization)
    vocab = metadata.get("vocab_size")
    ffn = metadata.get("feed_forward_length")
    ffn_width = _largest(ffn) if isinstance(ffn, int) or (isinstance(ffn, list) and ffn) else None
    return ModelArchitecture(
        parameters=parameters,
        bits_per_weight=bpw,
        layers=layers,
        embedding_length=int(metadata["embedding_length"]),
        head_count=heads,
        head_count_kv=max(attention, default=0),
        head_dim=_optional_int(metadata.get("attention.key_length")),
        context_length=_optional_int(metadata.get("context_length")),
        vocab_size=int(vocab) if isinstance(vocab, int) else vocab_fallback,
        weights_bytes=weights_bytes,
        quantization=quantization,
        kv_layers=None if len(attention) == layers else len(attention),
        feed_forward_length=_optional_int(ffn_width),
    )


def _largest(value: int | list[int]) -> int:
    return max(value) if isinstance(value, list) else int(value)


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None
