"""Summaries of attached data files (CSV, TSV, JSON Lines) sized to a token budget.

A data file is summarized rather than pasted: a model learns more from column types, missing
values, ranges and a few rows than from the first screenful of a file that does not fit.
Statistics come from the first `SAMPLE_CHARS` characters of the file, while every row is counted by
streaming the rest, so a large file costs little memory and the row count is exact. Lines are read
with a bound (`MAX_LINE_CHARS`) and files past a size limit are refused, so no file, not even one
that is a single 20 GB line, is loaded whole. `DataSummaries` keeps what it read per version of a
file, so summarizing it again to another budget reads nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import stat
import statistics
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TextIO

from nemo_tui.config import Preferences
from nemo_tui.core.prompt.tokens import TokenCounter, estimate_tokens
from nemo_tui.errors import NemoError
from nemo_tui.units import bytes_to_mb, format_count, format_mb, format_pct

SAMPLE_CHARS = 2 * 1024 * 1024
"""Column statistics and sample rows come from this many characters (about 2 MB) of a file."""
MAX_LINE_CHARS = 1024 * 1024
"""Longest line (a CSV row, a JSON object) read from a data file; a longer one is refused. Real
rows are far shorter, and reading a line whole would load a file that has no line ends (a sparse
or binary file named `.csv`) into memory all at once."""
DEFAULT_MAX_FILE_MB = Preferences().max_data_file_mb
"""Largest file summarized when the caller gives no limit: the config's default."""
SUMMARY_CACHE_SIZE = 8
"""How many files `DataSummaries` remembers: the one attached now and a few before it."""

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
# One way to match each number: `\d+\.?\d*` would try every split of a long run of digits
# before giving up on a trailing letter, quadratic in the length of the cell.
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
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
_MAX_SAMPLE_ROWS = max(rows for _, rows, _ in _DETAILS)

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


@dataclass(frozen=True)
class _Digest:
    """What a summary is written from, at any level of detail; small enough to keep."""

    name: str
    kind: str
    columns: list[_Column]
    first_rows: list[list[str]]
    """The first rows as read, as many as the richest summary shows."""
    sampled: int
    """Rows the column statistics come from."""
    total_rows: int


_FileVersion = tuple[str, str, int, int]
"""A file as `DataSummaries` remembers it: resolved path, name given, size, modification time."""


class DataSummaries:
    """Summaries of attached data files, each file read once while it stays unchanged.

    The dashboard plans a query again whenever typing pauses, and a fallback plans it again for
    another model's context; each wants the same file summarized, to another budget. What a
    summary is written from is kept per version of a file (its resolved path, size and
    modification time) for the last `capacity` files used, so only a new or changed file is read.
    What made a file unusable (a bad line deep in it, say) is kept the same way; a file that
    could not be opened is not, so fixing its permissions is noticed at once.

    Args:
        capacity: How many files to remember.
    """

    def __init__(self, capacity: int = SUMMARY_CACHE_SIZE) -> None:
        self._capacity = capacity
        self._digests: OrderedDict[_FileVersion, _Digest | NemoError] = OrderedDict()

    def summarize(
        self,
        path: Path,
        budget_tokens: int,
        *,
        max_file_mb: int = DEFAULT_MAX_FILE_MB,
        count_tokens: TokenCounter | None = None,
    ) -> str:
        """Summarize a data file for a prompt, within a token budget.

        The summary names the columns with their types (int, float, bool, date, text), missing
        values, min/max/mean for numbers, ranges for dates, top values for the rest, then a few
        sample rows. Smaller budgets get fewer sample rows and top values, then fewer columns.

        Args:
            path: A `.csv`, `.tsv` (or `.tab`) or `.jsonl` (or `.ndjson`) file with a header
                row or one JSON object per line.
            budget_tokens: The most tokens the summary should take.
            max_file_mb: A larger file is refused without being read.
            count_tokens: An exact token counter from the backend; None uses the estimate.

        Returns:
            The summary. Only a budget too small to name the file and its size is exceeded.

        Raises:
            NemoError: The file is missing, unreadable, too large, empty, not UTF-8, has a line
                longer than `MAX_LINE_CHARS`, or is not of a supported kind.
        """
        kind = _format_of(path)
        version = _version_of(path, max_file_mb)
        outcome = self._digests.pop(version, None)
        if outcome is None:
            outcome = _read_digest(path, kind)
        self._digests[version] = outcome
        while len(self._digests) > self._capacity:
            self._digests.popitem(last=False)
        if isinstance(outcome, NemoError):
            raise _copy_of(outcome)
        return _render_within(outcome, budget_tokens, count_tokens or estimate_tokens)


def summarize_data(
    path: Path,
    budget_tokens: int,
    *,
    max_file_mb: int = DEFAULT_MAX_FILE_MB,
    count_tokens: TokenCounter | None = None,
) -> str:
    """Summarize a data file once, remembering nothing; see `DataSummaries.summarize`.

    Raises:
        NemoError: The file cannot be summarized; the message says why and the fix what to do.
    """
    return DataSummaries(capacity=1).summarize(
        path, budget_tokens, max_file_mb=max_file_mb, count_tokens=count_tokens
    )


def _render_within(digest: _Digest, budget_tokens: int, count: TokenCounter) -> str:
    """The richest summary that fits the budget, else the one-line headline."""
    for shown, rows, top in _DETAILS:
        text = _render(digest, shown, rows, top)
        if count(text) <= budget_tokens:
            return text
    return _headline(digest)


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


class _BoundedLines:
    """Lines of a text file, each read with a bound, counting the characters read so far.

    Args:
        handle: The file, opened in text mode with `newline=""` (as the csv module wants).
        name: The file's name, for the error.
    """

    def __init__(self, handle: TextIO, name: str) -> None:
        self._handle = handle
        self._name = name
        self.consumed = 0

    def __iter__(self) -> Iterator[str]:
        """Yield each line with its line end.

        Raises:
            NemoError: a line is longer than `MAX_LINE_CHARS` (not counting its line end).
        """
        readline = self._handle.readline
        # Room for the longest allowed line and a `\r\n`, so its end is read with it.
        limit = MAX_LINE_CHARS + 2
        number = 0
        while line := readline(limit):
            number += 1
            if len(line) > MAX_LINE_CHARS and len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
                raise NemoError(
                    f"{self._name} line {format_count(number)} is longer than"
                    f" {format_count(MAX_LINE_CHARS)} characters, so it was not read",
                    fix="attach a CSV, TSV or JSON Lines file with one record per line (a file"
                    " without line ends is not one)",
                    title="Unreadable data file",
                )
            self.consumed += len(line)
            yield line


def _format_of(path: Path) -> str:
    """The format a data file's name says it has.

    Raises:
        NemoError: the name has none of the supported suffixes.
    """
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise NemoError(
            f"{path.name} is not a CSV, TSV or JSON Lines file",
            fix="attach a .csv, .tsv or .jsonl file (export spreadsheets and JSON arrays to CSV)",
            title="Unsupported data file",
        )
    return kind


def _version_of(path: Path, max_file_mb: int) -> _FileVersion:
    """Which version of the file is there now, checking that it is a file within the limit.

    Raises:
        NemoError: it does not exist, is a folder, cannot be looked at, or is too large.
    """
    try:
        info = path.stat()
        resolved = str(path.resolve())
    except OSError as error:
        raise _os_error(path, error) from error
    if stat.S_ISDIR(info.st_mode):
        raise NemoError(f"{path} is a folder", fix="attach a file, not a folder")
    size_mb = bytes_to_mb(info.st_size)
    if size_mb > max_file_mb:
        raise NemoError(
            f"{path.name} is {format_mb(size_mb)}, over the {format_mb(max_file_mb)} limit for"
            " attached data files (every row is read to count the rows)",
            fix="attach an extract of it (such as its first 100,000 lines), or raise"
            " preferences.max_data_file_mb",
            title="Data file too large",
        )
    return (resolved, path.name, info.st_size, info.st_mtime_ns)


def _read_digest(path: Path, kind: str) -> _Digest | NemoError:
    """Read a data file into what its summaries are written from, or why that failed.

    Raises:
        NemoError: the file cannot be opened; what is wrong with its content is returned.
    """
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as error:
        raise _os_error(path, error) from error
    with handle:
        try:
            return _digest_of(_read(path, kind, handle))
        except NemoError as error:
            return _copy_of(error)


def _copy_of(error: NemoError) -> NemoError:
    """The same error without a traceback or a cause, to be kept or raised once more.

    A kept error would otherwise hold the frames of the read that failed (and the rows in
    them), and raising the same object on every call would pile up tracebacks on it.
    """
    return NemoError(error.message, fix=error.fix, title=error.title)


def _os_error(path: Path, error: OSError) -> NemoError:
    """What an operating-system failure on a data file means to the user."""
    if isinstance(error, FileNotFoundError):
        return NemoError(f"{path} does not exist", fix="check the path of the data file")
    if isinstance(error, IsADirectoryError):
        return NemoError(f"{path} is a folder", fix="attach a file, not a folder")
    if isinstance(error, PermissionError):
        return NemoError(f"{path} cannot be read", fix="check the file's permissions")
    return NemoError(f"{path} cannot be read: {error.strerror}", fix="check the file")


def _read(path: Path, kind: str, handle: TextIO) -> _Table:
    """Read a data file's header, its sampled rows and its total row count."""
    lines = _BoundedLines(handle, path.name)
    try:
        if kind == "JSON Lines":
            return _read_json_lines(path.name, lines)
        return _read_delimited(path.name, kind, lines)
    except UnicodeDecodeError as error:
        raise NemoError(
            f"{path.name} is not UTF-8 text",
            fix="save the file as UTF-8 (CSV UTF-8 in spreadsheets)",
        ) from error
    except OSError as error:
        raise _os_error(path, error) from error


def _digest_of(table: _Table) -> _Digest:
    """Column statistics of the sampled rows, and the rows a summary may show."""
    columns = [
        _profile(name, [row[i] for row in table.rows]) for i, name in enumerate(table.columns)
    ]
    return _Digest(
        name=table.name,
        kind=table.kind,
        columns=columns,
        first_rows=table.raw_rows[:_MAX_SAMPLE_ROWS],
        sampled=len(table.rows),
        total_rows=table.total_rows,
    )


def _read_delimited(name: str, kind: str, lines: _BoundedLines) -> _Table:
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


def _read_json_lines(name: str, lines: _BoundedLines) -> _Table:
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
        except ValueError as error:
            # Besides malformed JSON: a number of more digits than Python turns into an int.
            reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            raise NemoError(
                f"{name} line {number} is not valid JSON: {reason}",
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
        try:
            return int(text)
        except ValueError:
            # More digits than Python turns into an int (4,300 by default): only its size matters.
            return float(text)
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
        numbers = [_to_float(v) for v in present if isinstance(v, int | float)]
        kind = "int" if kinds == {"int"} else "float"
        detail = (
            f"min {_number(min(numbers))}, max {_number(max(numbers))}, "
            f"mean {_number(_mean(numbers))}"
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


def _to_float(value: int | float) -> float:
    """A number as a float; an int beyond the float range becomes infinite rather than fail."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _mean(numbers: list[float]) -> float:
    """The mean; inf or nan when the values are infinite or their sum overflows."""
    try:
        return statistics.fmean(numbers)
    except (OverflowError, ValueError):
        # fmean's exact sum refuses what a plain sum turns into inf or nan.
        return sum(numbers) / len(numbers)


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


def _headline(digest: _Digest) -> str:
    """The one-line description of the file."""
    return (
        f"Data file: {digest.name} ({digest.kind}, {_count_of(digest.total_rows, 'row')}, "
        f"{_count_of(len(digest.columns), 'column')})"
    )


def _render(digest: _Digest, shown: int | None, rows: int, top: int) -> str:
    """The summary at one level of detail."""
    columns = digest.columns
    lines = [_headline(digest)]
    sampled = digest.sampled
    if sampled < digest.total_rows:
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
    if rows and digest.first_rows:
        lines.append(f"Sample rows (first {min(rows, len(digest.first_rows))}):")
        lines.append(_sample(digest, limit, rows))
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


def _sample(digest: _Digest, limit: int, rows: int) -> str:
    """The first rows in the file's own format, clipped to the shown columns.

    JSON Lines cells are already JSON (see `_json_cell`); CSV and TSV cells are clipped here.
    """
    names = [column.name for column in digest.columns[:limit]]
    if digest.kind == "JSON Lines":
        return "\n".join(_json_row(names, row[:limit]) for row in digest.first_rows[:rows])
    picked = [[_clip(cell) for cell in row[:limit]] for row in digest.first_rows[:rows]]
    buffer = io.StringIO()
    delimiter = "\t" if digest.kind == "TSV" else ","
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
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
