"""Summaries of attached data files (CSV, TSV, JSON Lines) sized to a token budget.

A data file is summarized rather than pasted: a model learns more from column types, missing
values, ranges and a few rows than from the first screenful of a file that does not fit.
Statistics come from the first `SAMPLE_CHARS` characters of the file, while every row is counted by
streaming the rest, so a large file costs little memory and the row count is exact.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TextIO

from nemo_tui.core.tokens import TokenCounter, estimate_tokens
from nemo_tui.errors import NemoError
from nemo_tui.units import format_count, format_pct

SAMPLE_CHARS = 2 * 1024 * 1024
"""Column statistics and sample rows come from this many characters (about 2 MB) of a file."""

_FORMATS = {
    ".csv": "CSV",
    ".tsv": "TSV",
    ".tab": "TSV",
    ".jsonl": "JSON Lines",
    ".ndjson": "JSON Lines",
}
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?"})
_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?")
_CELL_CHARS = 40
# Columns past those shown in full are named, up to this many.
_LISTED_NAMES = 30
# Richest first: (columns shown in full, sample rows, top values per text column).
_DETAILS = [
    (columns, rows, top)
    for columns in (None, 40, 20, 10, 5, 2)
    for rows, top in ((5, 5), (3, 3), (1, 2), (0, 1))
]

Value = str | int | float | bool | date | None


@dataclass(frozen=True)
class _Table:
    """What was read from a data file."""

    name: str
    kind: str
    columns: list[str]
    rows: list[list[Value]]
    raw_rows: list[list[str]]
    total_rows: int


@dataclass(frozen=True)
class _Column:
    """One column's inferred type and statistics over the sampled rows."""

    name: str
    kind: str
    missing: int
    detail: str
    top: list[tuple[str, int]]


def summarize_data(
    path: Path, budget_tokens: int, *, count_tokens: TokenCounter | None = None
) -> str:
    """Summarize a data file for a prompt, within a token budget.

    The summary names the columns with their types (int, float, bool, date, text), missing
    values, min/max/mean for numbers, ranges for dates, top values for the rest, then a few
    sample rows. Smaller budgets get fewer sample rows and top values, then fewer columns.

    Args:
        path: A `.csv`, `.tsv` (or `.tab`) or `.jsonl` (or `.ndjson`) file with a header row
            or one JSON object per line.
        budget_tokens: The most tokens the summary should take.
        count_tokens: An exact token counter from the backend; None uses the estimate.

    Returns:
        The summary. Only a budget too small to name the file and its size is exceeded.

    Raises:
        NemoError: The file is missing, unreadable, empty, not UTF-8 or not of a supported kind.
    """
    count = count_tokens or estimate_tokens
    table = _read(path)
    columns = [
        _profile(name, [row[i] for row in table.rows]) for i, name in enumerate(table.columns)
    ]
    for shown, rows, top in _DETAILS:
        text = _render(table, columns, shown, rows, top)
        if count(text) <= budget_tokens:
            return text
    return _headline(table)


def build_prompt(query: str, data_summary: str | None) -> str:
    """Combine a query with the summary of its attached data: the data first, the question last.

    The optimizer keeps the first short paragraph (the framing line) and the last (the
    question) whole, so the layout matters.

    Args:
        query: What the user asked.
        data_summary: The summary from `summarize_data`, or None when nothing is attached.

    Returns:
        The prompt to send.
    """
    if not data_summary:
        return query
    return (
        "Answer using the attached data file, summarized below (the full file is not included)."
        f"\n\n{data_summary}\n\nQuestion: {query}"
    )


class _MeteredLines:
    """Lines of a text file, counting the characters read so far."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self.consumed = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self.consumed += len(line)
        return line


def _read(path: Path) -> _Table:
    """Read a data file's header, its sampled rows and its total row count."""
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise NemoError(
            f"{path.name} is not a CSV, TSV or JSON Lines file",
            fix="attach a .csv, .tsv or .jsonl file (export spreadsheets and JSON arrays to CSV)",
            title="Unsupported data file",
        )
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = _MeteredLines(handle)
            if kind == "JSON Lines":
                return _read_json_lines(path.name, lines)
            return _read_delimited(path.name, kind, lines)
    except FileNotFoundError as error:
        raise NemoError(f"{path} does not exist", fix="check the path of the data file") from error
    except IsADirectoryError as error:
        raise NemoError(f"{path} is a folder", fix="attach a file, not a folder") from error
    except PermissionError as error:
        raise NemoError(f"{path} cannot be read", fix="check the file's permissions") from error
    except UnicodeDecodeError as error:
        raise NemoError(
            f"{path.name} is not UTF-8 text",
            fix="save the file as UTF-8 (CSV UTF-8 in spreadsheets)",
        ) from error
    except OSError as error:
        raise NemoError(f"{path} cannot be read: {error.strerror}", fix="check the file") from error


def _read_delimited(name: str, kind: str, lines: _MeteredLines) -> _Table:
    """Read a CSV or TSV file: header, rows within the sample, and every row counted."""
    reader = csv.reader(lines, delimiter="\t" if kind == "TSV" else ",")
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise NemoError(f"{name} is empty", fix="attach a file with a header row and data rows")
        columns = [cell.strip() or f"column {i + 1}" for i, cell in enumerate(header)]
        raw_rows: list[list[str]] = []
        total = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            total += 1
            if lines.consumed <= SAMPLE_CHARS:
                raw_rows.append((row + [""] * len(columns))[: len(columns)])
    except csv.Error as error:
        raise NemoError(
            f"{name} line {reader.line_num} is not valid {kind}: {error}",
            fix=f"check the quoting near line {reader.line_num}, or re-export the file",
        ) from error
    rows = [[_parse_text(cell) for cell in row] for row in raw_rows]
    return _Table(name, kind, columns, rows, raw_rows, total)


def _read_json_lines(name: str, lines: _MeteredLines) -> _Table:
    """Read a JSON Lines file; lines past the sample are counted, not parsed."""
    columns: dict[str, None] = {}
    objects: list[dict[str, object]] = []
    total = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        total += 1
        if lines.consumed > SAMPLE_CHARS:
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise NemoError(
                f"{name} line {number} is not valid JSON: {error.msg}",
                fix="write one JSON object per line (JSON Lines)",
            ) from error
        if not isinstance(item, dict):
            raise NemoError(
                f"{name} line {number} is not a JSON object",
                fix='write one JSON object per line, such as {"age": 42}',
            )
        columns.update(dict.fromkeys(item))
        objects.append(item)
    if not total:
        raise NemoError(f"{name} is empty", fix="attach a file with one JSON object per line")
    names = list(columns)
    raw_rows = [[_json_cell(item.get(key)) for key in names] for item in objects]
    rows = [[_parse_json(item.get(key)) for key in names] for item in objects]
    return _Table(name, "JSON Lines", names, rows, raw_rows, total)


def _parse_text(cell: str) -> Value:
    """The typed value of a CSV cell: None when missing."""
    text = cell.strip()
    lower = text.lower()
    if lower in _MISSING:
        return None
    if lower in _BOOLEANS:
        return _BOOLEANS[lower]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return _parse_date(text) or text


def _parse_json(value: object) -> Value:
    """The typed value of a JSON field: None when missing or null."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return None if value.strip().lower() in _MISSING else (_parse_date(value) or value)
    return json.dumps(value, separators=(",", ":"))


def _json_cell(value: object) -> str:
    """A JSON field, encoded as JSON for a sample row, long strings clipped."""
    if isinstance(value, str):
        return json.dumps(_clip(value), ensure_ascii=False)
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return (
        encoded if len(encoded) <= _CELL_CHARS else json.dumps(_clip(encoded), ensure_ascii=False)
    )


def _parse_date(text: str) -> date | None:
    """The date of an ISO-style `YYYY-MM-DD` (or `YYYY/MM/DD`) value, time ignored."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _profile(name: str, values: list[Value]) -> _Column:
    """Infer a column's type and summarize its values."""
    present = [v for v in values if v is not None]
    missing = len(values) - len(present)
    kinds = {_kind_of(v) for v in present}
    if not present:
        return _Column(name, "empty", missing, "no values", [])
    if kinds <= {"int", "float"}:
        numbers = [float(v) for v in present if isinstance(v, int | float)]
        kind = "int" if kinds == {"int"} else "float"
        detail = (
            f"min {_number(min(numbers))}, max {_number(max(numbers))}, "
            f"mean {_number(statistics.fmean(numbers))}"
        )
        return _Column(name, kind, missing, detail, [])
    if kinds == {"date"}:
        dates = [v for v in present if isinstance(v, date)]
        return _Column(name, "date", missing, f"from {min(dates)} to {max(dates)}", [])
    counts = Counter(_label(v) for v in present)
    if kinds == {"bool"}:
        detail = ", ".join(f"{label} {format_count(counts[label])}" for label in ("true", "false"))
        return _Column(name, "bool", missing, detail, [])
    distinct = len(counts)
    detail = f"{format_count(distinct)} distinct"
    if distinct == len(present) and distinct > 1:
        # Every value differs (an id or free text): counts of 1 say nothing, examples do.
        examples = ", ".join(f'"{value}"' for value in list(counts)[:3])
        return _Column(name, "text", missing, f"{detail}, all different, e.g. {examples}", [])
    return _Column(name, "text", missing, detail, counts.most_common(5))


def _kind_of(value: Value) -> str:
    """The type name of a parsed value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, date):
        return "date"
    return "text"


def _label(value: Value) -> str:
    """A value as shown among top values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _clip(str(value))


def _number(value: float) -> str:
    """A data value: whole numbers as they are, others to 2 decimals (4 digits below 1)."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def _clip(text: str) -> str:
    """Shorten a cell so one long value cannot eat the budget."""
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _headline(table: _Table) -> str:
    """The one-line description of the file."""
    return (
        f"Data file: {table.name} ({table.kind}, {_count_of(table.total_rows, 'row')}, "
        f"{_count_of(len(table.columns), 'column')})"
    )


def _render(table: _Table, columns: list[_Column], shown: int | None, rows: int, top: int) -> str:
    """The summary at one level of detail."""
    lines = [_headline(table)]
    sampled = len(table.rows)
    if sampled < table.total_rows:
        lines.append(f"Column statistics are from the first {format_count(sampled)} rows.")
    limit = len(columns) if shown is None else min(shown, len(columns))
    lines.append("Columns:")
    for column in columns[:limit]:
        lines.append(_column_line(column, sampled, top))
    if limit < len(columns):
        rest = ", ".join(c.name for c in columns[limit : limit + _LISTED_NAMES])
        if len(columns) - limit > _LISTED_NAMES:
            rest += ", …"
        lines.append(f"- … {format_count(len(columns) - limit)} more columns: {rest}")
    if rows and table.raw_rows:
        lines.append(f"Sample rows (first {min(rows, len(table.raw_rows))}):")
        lines.append(_sample(table, limit, rows))
    return "\n".join(lines)


def _column_line(column: _Column, sampled: int, top: int) -> str:
    """One column's line: name, type, missing values, range or top values."""
    if column.missing:
        share = format_pct(column.missing / sampled, digits=1) if sampled else "n/a"
        missing = f"{format_count(column.missing)} missing ({share})"
    else:
        missing = "none missing"
    line = f"- {column.name} ({column.kind}): {missing}; {column.detail}"
    if column.top and top:
        values = ", ".join(f"{value} ({format_count(n)})" for value, n in column.top[:top])
        line += f"; top: {values}"
    return line


def _sample(table: _Table, limit: int, rows: int) -> str:
    """The first rows in the file's own format, clipped to the shown columns.

    JSON Lines cells are already JSON (see `_json_cell`); CSV and TSV cells are clipped here.
    """
    names = table.columns[:limit]
    if table.kind == "JSON Lines":
        return "\n".join(_json_row(names, row[:limit]) for row in table.raw_rows[:rows])
    picked = [[_clip(cell) for cell in row[:limit]] for row in table.raw_rows[:rows]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if table.kind == "TSV" else ",", lineterminator="\n")
    writer.writerow(names)
    writer.writerows(picked)
    return buffer.getvalue().rstrip("\n")


def _json_row(names: list[str], cells: list[str]) -> str:
    """A JSON object from column names and cells that are already JSON."""
    fields = (
        f"{json.dumps(n, ensure_ascii=False)}: {c}" for n, c in zip(names, cells, strict=True)
    )
    return "{" + ", ".join(fields) + "}"


def _count_of(n: int, noun: str) -> str:
    """A count with its noun, singular for one: 1 row, 1,500 rows."""
    return f"{format_count(n)} {noun}{'' if n == 1 else 's'}"
