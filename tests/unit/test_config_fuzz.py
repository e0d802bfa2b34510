"""Fuzzing the config loader: whatever the file holds, the result is a usable config or a
`ConfigError` naming the file, never another exception.

The YAML trees follow the real schema (key names and value types are read from the msgspec
structs) and are then mutated: wrong types, unknown keys, nested garbage, numbers at and beyond
their bounds, odd strings and nulls. Raw text, YAML fragments and raw bytes cover what no tree
serialises to.
"""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from nemo_tui.config import Config, load_config, parse_config
from nemo_tui.core.models.catalog import build_catalog
from nemo_tui.errors import ConfigError, NemoError

ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "~",
        "null",
        "yes",
        "off",
        "0x1F",
        "1e400",
        ".nan",
        "-.inf",
        "2001-02-30",
        "12:30:45",
        "!!binary",
        "&anchor",
        "*alias",
        ": ",
        "- item",
        "# comment",
        "'",
        '"',
        "\\",
        "\t",
        "\u2028",
        "\U0001f600",
        "x" * 300,
    ]
)
EXTREME_NUMBERS = st.sampled_from(
    [math.inf, -math.inf, math.nan, 1e308, 2**63, 10**400, -(10**400)]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    EXTREME_NUMBERS,
    st.text(max_size=12),
    ODD_STRINGS,
)
GARBAGE = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=3)
    ),
    max_leaves=8,
)
"""Any YAML-representable value, nested a little."""

YAML_FRAGMENTS = st.sampled_from(
    [
        "backends:",
        "ollama:",
        "url:",
        "models:",
        "memory_thresholds:",
        "cache_limit:",
        "name: m",
        "tier: low",
        "\n",
        "  ",
        "- ",
        ": ",
        "&a ",
        "*a",
        "<<: *a",
        "? ",
        "!!python/object:os.system",
        "!!timestamp ",
        "!!int ",
        "!!binary ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "'",
        '"',
        "|",
        ">",
        "\t",
        "---",
        "...",
        "%YAML 1.1",
        "0.5",
        "2001-02-29",
        "9" * 5000,
        "1.0e+400",
    ]
)


def values_of(hint: Any, *, mutate: bool) -> st.SearchStrategy[Any]:
    """Values of the annotated type, within its bounds; when mutating, also at, just past and
    far past them."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, meta = get_args(hint)
        if base is str:
            # Names and URLs: text the pattern accepts; when mutating, any odd text too.
            matching = st.from_regex(meta.pattern, fullmatch=True) if meta.pattern else st.text()
            return matching | ODD_STRINGS | st.text(max_size=12) if mutate else matching
        inside = within(base, meta)
        if not mutate:
            return inside
        edges: list[float] = []
        for bound in (meta.gt, meta.ge, meta.lt, meta.le):
            if bound is not None:
                edges += [bound, bound - 1, bound + 1, bound * 1000, -bound]
        return inside | st.sampled_from(edges)
    if origin is Literal:
        return st.sampled_from(get_args(hint))
    if origin in (Union, types.UnionType):
        return st.one_of(*(values_of(arg, mutate=mutate) for arg in get_args(hint)))
    if origin is list:
        return st.lists(values_of(get_args(hint)[0], mutate=mutate), max_size=3)
    if hint is type(None):
        return st.none()
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return section_of(hint, mutate=mutate)
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        bool: st.booleans(),
        int: st.integers(),
        float: st.floats(),
        str: st.text(max_size=12) | ODD_STRINGS,
    }
    return scalars[hint]


def within(base: type, meta: msgspec.Meta) -> st.SearchStrategy[Any]:
    """Every number the bounds allow, down to the smallest and up to the largest (infinity when
    there is no upper bound)."""
    low, high = (
        meta.gt if meta.gt is not None else meta.ge,
        meta.lt if meta.lt is not None else meta.le,
    )
    if base is int:
        return st.integers(
            min_value=None if low is None else int(low) + (meta.gt is not None),
            max_value=None if high is None else int(high) - (meta.lt is not None),
        )
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min=meta.gt is not None,
        exclude_max=meta.lt is not None,
    )


def section_of(struct: type[msgspec.Struct], *, mutate: bool) -> st.SearchStrategy[dict[Any, Any]]:
    """A mapping for one section with its real keys; when mutating, values of any kind and
    perhaps an unknown key."""
    hints = get_type_hints(struct, include_extras=True)
    required: dict[Any, st.SearchStrategy[Any]] = {}
    optional: dict[Any, st.SearchStrategy[Any]] = {}
    for field in msgspec.structs.fields(struct):
        values = values_of(hints[field.name], mutate=mutate)
        if mutate:
            optional[field.name] = values | GARBAGE
        else:
            (required if field.required else optional)[field.name] = values
    known = st.fixed_dictionaries(required, optional=optional)
    if not mutate:
        return known
    unknown = st.dictionaries(st.text(max_size=8), GARBAGE, min_size=1, max_size=1)
    return known | st.tuples(unknown, known).map(lambda pair: {**pair[0], **pair[1]})


def yaml_text(tree: Any, flow: bool) -> str:
    return yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True, sort_keys=False)


CONFIG_TREES = section_of(Config, mutate=False) | section_of(Config, mutate=True) | GARBAGE


def assert_loads_or_explains(path: Path) -> None:
    """Loading gives a config whose numbers a machine can hold and whose catalog builds (or says
    in one line why a GGUF file cannot be read), or a `ConfigError` naming the file."""
    try:
        config = load_config(path).config
    except ConfigError as error:
        message = error.one_line()
        assert message.startswith(str(path)), message
        return
    assert all(math.isfinite(number) for number in numbers_in(msgspec.to_builtins(config)))
    try:
        build_catalog(config)
    except NemoError as error:
        # A `gguf_path` is read when the catalog is built, and may name no readable file.
        assert "\n" not in error.one_line()


def numbers_in(data: Any) -> list[float]:
    if isinstance(data, dict):
        return [n for value in data.values() for n in numbers_in(value)]
    if isinstance(data, list):
        return [n for value in data for n in numbers_in(value)]
    if isinstance(data, int | float) and not isinstance(data, bool):
        return [float(data)]
    return []


@given(CONFIG_TREES, st.booleans())
# Each example below once crashed a command after the file loaded.
@example({"models": [{"name": "m", "tier": "low", "parameters_b": math.inf}]}, False)
@example({"models": [{"name": "m", "tier": "low", "min_memory_mb": 10**400}]}, False)
@example({"models": [{"name": "m", "tier": "low", "parameters_b": 1, "layers": 10**400}]}, False)
@example({"models": [{"name": "m", "tier": "low", "gguf_path": "\x00"}]}, False)
def test_any_config_tree_loads_or_is_explained(tmp_path: Path, tree: Any, flow: bool) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text(tree, flow), encoding="utf-8")
    assert_loads_or_explains(path)


@given(st.lists(YAML_FRAGMENTS, max_size=12).map("".join) | st.text(max_size=60))
# Each example below once raised something other than a ConfigError, or never returned.
@example("ui:\n  theme: 2001-02-30\n")
@example("ui:\n  theme: 2001-12-14t21:59:43.10-25:00\n")
@example("!!timestamp ")
@example("!!bool maybe")
@example("memory_thresholds:\n  cache_limit: " + "9" * 5000 + "\n")
@example("memory_thresholds:\n  cache_limit: " + "[" * 900 + "]" * 900 + "\n")
@example("ui: &a [*a]\n")
@example("ui: &a {theme: *a}\n")
def test_any_config_text_loads_or_is_explained(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert_loads_or_explains(path)


@given(st.binary(max_size=60))
def test_any_config_bytes_load_or_are_explained(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    assert_loads_or_explains(path)


def test_aliases_that_multiply_a_node_are_checked_in_a_moment() -> None:
    # Ten levels of ten aliases each reach the first list 10**10 times; a walk that followed
    # every alias would never end.
    lines = ["a0: &a0 [x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 11)]
    with pytest.raises(ConfigError, match="a0: unknown key"):
        parse_config("\n".join(lines) + "\n", source="c.yaml")
