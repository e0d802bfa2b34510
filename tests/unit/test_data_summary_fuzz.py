"""Fuzzing the data-file summarizer with random CSV, TSV and JSON Lines files: each gives a
summary or a `NemoError` that says what is wrong and what to do, never another exception."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from nemo_tui.core.prompt.data_summary import summarize_data
from nemo_tui.errors import NemoError

SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl"])
BUDGETS = st.integers(0, 3000)
CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "NA", "null", "true", "no", "-", '"', '""', ",", "\t", "\r\n", "\x00"]),
    st.integers().map(str),
    # Past Python's 4,300-digit limit for turning text into an int.
    st.integers(4290, 4400).map(lambda digits: "9" * digits),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e999", "-1e999", "2024-02-30", "2024-13-01", "0000-01-01", "9999/12/31"]),
    st.dates().map(str),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | CELLS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
JSON_LINES = st.one_of(
    st.dictionaries(st.sampled_from(["id", "age", "note", ""]), JSON_VALUES).map(json.dumps),
    JSON_VALUES.map(json.dumps),
    # Numbers, not strings, past Python's digit limit and past the float range.
    st.integers(300, 4400).map(lambda digits: f'{{"id": 1, "age": {"9" * digits}}}'),
    st.text(max_size=20),
)


def summary_or_clear_error(path: Path, content: bytes, budget: int) -> None:
    path.write_bytes(content)
    try:
        summary = summarize_data(path, budget)
    except NemoError as error:
        assert error.message
        assert error.fix
    else:
        assert summary.startswith(f"Data file: {path.name} (")


@given(suffix=SUFFIXES, content=st.binary(max_size=600), budget=BUDGETS)
def test_random_bytes_give_a_summary_or_a_clear_error(
    tmp_path: Path, suffix: str, content: bytes, budget: int
) -> None:
    summary_or_clear_error(tmp_path / f"data{suffix}", content, budget)


@given(
    rows=st.lists(st.lists(CELLS, max_size=6), max_size=12),
    delimiter=st.sampled_from([",", "\t", ";"]),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    suffix=st.sampled_from([".csv", ".tsv"]),
    budget=BUDGETS,
)
def test_random_tables_give_a_summary_or_a_clear_error(
    tmp_path: Path,
    rows: list[list[str]],
    delimiter: str,
    line_end: str,
    bom: bool,
    suffix: str,
    budget: int,
) -> None:
    text = line_end.join(delimiter.join(row) for row in rows)
    content = ("\ufeff" if bom else "") + text
    summary_or_clear_error(tmp_path / f"table{suffix}", content.encode(), budget)


@given(
    lines=st.lists(JSON_LINES, max_size=12),
    budget=BUDGETS,
)
def test_random_json_lines_give_a_summary_or_a_clear_error(
    tmp_path: Path, lines: list[str], budget: int
) -> None:
    content = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    summary_or_clear_error(tmp_path / "records.jsonl", content, budget)
