"""Data-file summaries: what the model is told about a CSV, TSV or JSON Lines attachment."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from nemo_tui.core.prompt import data_summary
from nemo_tui.core.prompt.data_summary import DataSummaries, build_prompt, summarize_data
from nemo_tui.core.prompt.optimizer import estimate_tokens
from nemo_tui.errors import NemoError

ROWS = [
    ["patient_id", "age", "sex", "admitted", "creatinine", "diagnosis", "icu"],
    ["1001", "67", "M", "2024-03-02", "1.10", "sepsis", "true"],
    ["1002", "NA", "F", "2024-03-05", "2.90", "pneumonia", "false"],
    ["1003", "45", "F", "2024-02-28", "", "sepsis", "false"],
    ["1004", "81", "M", "2024-03-11", "0.80", "stroke", "true"],
    ["1005", "59", "F", "", "1.40", "sepsis", "false"],
]


def write_delimited(path: Path, delimiter: str, rows: list[list[str]] = ROWS) -> Path:
    path.write_text("\n".join(delimiter.join(row) for row in rows) + "\n", encoding="utf-8")
    return path


def column_line(summary: str, name: str) -> str:
    return next(line for line in summary.splitlines() if line.startswith(f"- {name} ("))


@pytest.fixture(params=["csv", "tsv", "jsonl"])
def patients(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    kind = request.param
    if kind == "csv":
        return write_delimited(tmp_path / "patients.csv", ",")
    if kind == "tsv":
        return write_delimited(tmp_path / "patients.tsv", "\t")
    lines = []
    for row in ROWS[1:]:
        item: dict[str, object] = {
            "patient_id": int(row[0]),
            "age": None if row[1] == "NA" else int(row[1]),
            "sex": row[2],
            "creatinine": float(row[4]) if row[4] else None,
            "diagnosis": row[5],
            "icu": row[6] == "true",
        }
        if row[3]:
            item["admitted"] = row[3]
        lines.append(json.dumps(item))
    path = tmp_path / "patients.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_summary_names_file_rows_and_columns(patients: Path) -> None:
    summary = summarize_data(patients, 2000)
    first = summary.splitlines()[0]
    assert first.startswith(f"Data file: {patients.name} (")
    assert "5 rows, 7 columns" in first


def test_summary_infers_column_types(patients: Path) -> None:
    summary = summarize_data(patients, 2000)
    assert "(int)" in column_line(summary, "patient_id")
    assert "(int)" in column_line(summary, "age")
    assert "(text)" in column_line(summary, "sex")
    assert "(date)" in column_line(summary, "admitted")
    assert "(float)" in column_line(summary, "creatinine")
    assert "(bool)" in column_line(summary, "icu")


def test_summary_counts_missing_values(patients: Path) -> None:
    summary = summarize_data(patients, 2000)
    assert "1 missing (20.0%)" in column_line(summary, "age")
    assert "1 missing" in column_line(summary, "creatinine")
    assert "1 missing" in column_line(summary, "admitted")
    assert "none missing" in column_line(summary, "sex")


def test_summary_gives_ranges_for_numbers_and_dates(patients: Path) -> None:
    summary = summarize_data(patients, 2000)
    assert "min 45, max 81, mean 63" in column_line(summary, "age")
    assert "min 0.8, max 2.9, mean 1.55" in column_line(summary, "creatinine")
    assert "from 2024-02-28 to 2024-03-11" in column_line(summary, "admitted")


def test_summary_gives_top_values_for_categories(patients: Path) -> None:
    summary = summarize_data(patients, 2000)
    assert "top: sepsis (3), pneumonia (1), stroke (1)" in column_line(summary, "diagnosis")
    assert "true 2, false 3" in column_line(summary, "icu")


def test_summary_shows_sample_rows_in_the_files_format(patients: Path) -> None:
    summary = summarize_data(patients, 2000)
    assert "Sample rows (first 5):" in summary
    if patients.suffix == ".jsonl":
        assert '{"patient_id": 1001, "age": 67, "sex": "M"' in summary
    else:
        separator = "\t" if patients.suffix == ".tsv" else ","
        assert separator.join(ROWS[1]) in summary


def test_small_budget_gets_fewer_rows_then_fewer_columns(tmp_path: Path) -> None:
    header = [f"measure_{n}" for n in range(30)]
    rows = [header] + [[str(r * n) for n in range(30)] for r in range(1, 50)]
    path = write_delimited(tmp_path / "wide.csv", ",", rows)
    roomy = summarize_data(path, 5000)
    tight = summarize_data(path, 400)
    tiny = summarize_data(path, 20)
    assert "Sample rows (first 5):" in roomy
    assert "Sample rows" not in tight
    assert "more columns: " in tight
    assert estimate_tokens(tight) <= 400
    assert tiny == "Data file: wide.csv (CSV, 49 rows, 30 columns)"


def test_summary_uses_the_given_token_counter(patients: Path) -> None:
    summary = summarize_data(patients, 60, count_tokens=lambda text: len(text.split()))
    assert len(summary.split()) <= 60


def test_every_row_is_counted_but_statistics_come_from_a_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_summary, "SAMPLE_CHARS", 200)
    rows = [["id", "value"]] + [[str(n), str(n * 10)] for n in range(1000)]
    path = write_delimited(tmp_path / "long.csv", ",", rows)
    summary = summarize_data(path, 2000)
    assert "1,000 rows" in summary.splitlines()[0]
    assert "Column statistics are from the first " in summary
    assert "max 9990" not in summary


def test_quoted_fields_with_commas_and_newlines_are_one_cell(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('id,note\n1,"fever, then\nchills"\n2,plain\n', encoding="utf-8")
    summary = summarize_data(path, 2000)
    assert "2 rows, 2 columns" in summary.splitlines()[0]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = write_delimited(tmp_path / "empty_rows.csv", ",", [["a", "b"]])
    summary = summarize_data(path, 2000)
    assert "0 rows, 2 columns" in summary
    assert "no values" in column_line(summary, "a")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.xlsx", b"PK\x03\x04", "not a CSV, TSV or JSON Lines file"),
        ("empty.csv", b"", "is empty"),
        ("latin.csv", "name\nJos\xe9\n".encode("latin-1"), "not UTF-8"),
        ("broken.jsonl", b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        ("list.jsonl", b"[1, 2]\n", "line 1 is not a JSON object"),
        ("blank.jsonl", b"\n\n", "is empty"),
    ],
)
def test_unreadable_files_raise_an_error_with_a_fix(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NemoError) as raised:
        summarize_data(path, 2000)
    assert message in raised.value.message
    assert raised.value.fix


def test_missing_file_and_folder_raise_an_error_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(NemoError, match="does not exist"):
        summarize_data(tmp_path / "nope.csv", 2000)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(NemoError, match="is a folder"):
        summarize_data(folder, 2000)


def test_prompt_puts_data_first_and_question_last() -> None:
    prompt = build_prompt("Which diagnosis is most common?", "Data file: x.csv (CSV, 5 rows)")
    assert prompt.index("Data file: x.csv") < prompt.index("Which diagnosis")
    assert prompt.endswith("Question: Which diagnosis is most common?")


def test_prompt_without_data_is_the_query() -> None:
    assert build_prompt("hello", None) == "hello"


# -- bounded reading -------------------------------------------------------------------------

GB = 1024**3


def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` zero bytes that takes no disk space: one line with no line end."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def test_a_file_over_the_size_limit_is_refused_without_being_read(tmp_path: Path) -> None:
    huge = sparse_file(tmp_path / "export.csv", 20 * GB)
    started = time.perf_counter()
    with pytest.raises(NemoError) as raised:
        summarize_data(huge, 2000)
    assert time.perf_counter() - started < 1.0
    assert "export.csv is 20.0 GB, over the 512 MB limit" in raised.value.message
    assert "preferences.max_data_file_mb" in raised.value.fix


def test_the_size_limit_is_the_one_given(tmp_path: Path) -> None:
    path = write_delimited(tmp_path / "patients.csv", ",")
    sparse_file(tmp_path / "big.csv", 3 * 1024 * 1024)
    assert summarize_data(path, 2000, max_file_mb=1).startswith("Data file: patients.csv")
    with pytest.raises(NemoError, match="big.csv is 3 MB, over the 1 MB limit"):
        summarize_data(tmp_path / "big.csv", 2000, max_file_mb=1)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_that_is_one_huge_line_is_refused_with_bounded_memory(
    tmp_path: Path, suffix: str
) -> None:
    huge = sparse_file(tmp_path / f"dump{suffix}", 64 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(NemoError) as raised:
            summarize_data(huge, 2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"dump{suffix} line 1 is longer than 1,048,576 characters" in raised.value.message
    assert "one record per line" in raised.value.fix
    assert peak < 8 * 1024 * 1024


def test_a_line_as_long_as_the_cap_is_read_and_a_longer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    line = json.dumps({"id": 1, "note": ""})
    line = line[:-2] + "x" * (data_summary.MAX_LINE_CHARS - len(line)) + line[-2:]
    assert len(line) == data_summary.MAX_LINE_CHARS
    path.write_text(f"{line}\r\n{line}\r\n", encoding="utf-8")
    assert "2 rows, 2 columns" in summarize_data(path, 2000).splitlines()[0]
    longer = line[:-2] + "x" + line[-2:]
    path.write_text(f"{line}\r\n{line}\r\n{longer}\r\n", encoding="utf-8")
    with pytest.raises(NemoError, match="notes.jsonl line 3 is longer than 1,048,576 characters"):
        summarize_data(path, 2000)


def test_a_long_run_of_digits_in_a_cell_is_read_quickly(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(f"id,code\n1,{'7' * 100_000}x\n2,ab\n", encoding="utf-8")
    started = time.perf_counter()
    summary = summarize_data(path, 2000)
    assert time.perf_counter() - started < 2.0
    assert "(text)" in column_line(summary, "code")


# -- summaries kept per version of a file -------------------------------------------------------


def rewrite_keeping_size_and_time(path: Path, text: str) -> None:
    """Change a file's content only, as an editor that keeps timestamps might: a file read again
    shows the new content, one remembered shows the old."""
    before = path.stat()
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_second_summary_of_an_unchanged_file_does_not_read_it_again(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("name,score\nada,90\nbob,70\n", encoding="utf-8")
    summaries = DataSummaries()
    first = summaries.summarize(path, 2000)
    rewrite_keeping_size_and_time(path, "name,score\neve,10\nzed,20\n")
    assert summaries.summarize(path, 2000) == first
    # Another budget (a fallback model's context) is written from what was read, too.
    assert summaries.summarize(path, 20) == "Data file: scores.csv (CSV, 2 rows, 2 columns)"
    assert "ada" in summaries.summarize(path, 2000)


def test_a_file_changed_on_disk_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("name,score\nada,90\nbob,70\n", encoding="utf-8")
    summaries = DataSummaries()
    summaries.summarize(path, 2000)
    rewrite_keeping_size_and_time(path, "name,score\neve,10\nzed,20\n")
    later = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(later, later))
    assert "eve" in summaries.summarize(path, 2000)
    modified = path.stat().st_mtime_ns
    path.write_text("name,score\neve,10\nzed,20\nkim,30\n", encoding="utf-8")
    os.utime(path, ns=(modified, modified))
    assert "3 rows" in summaries.summarize(path, 2000).splitlines()[0]


def test_what_made_a_file_unusable_is_kept_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n{"a": }\n', encoding="utf-8")
    summaries = DataSummaries()
    for _ in range(2):
        with pytest.raises(NemoError, match="events.jsonl line 2 is not valid JSON"):
            summaries.summarize(path, 2000)
        rewrite_keeping_size_and_time(path, '{"a": 1}\n{"a":2}\n')
    later = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(later, later))
    assert "2 rows" in summaries.summarize(path, 2000).splitlines()[0]


def test_a_file_that_could_not_be_opened_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_delimited(tmp_path / "patients.csv", ",")
    summaries = DataSummaries()

    def no_permission(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # As if the file had no read permission (which root, running tests in CI, would ignore).
    with monkeypatch.context() as patched:
        patched.setattr(Path, "open", no_permission)
        with pytest.raises(NemoError, match="cannot be read"):
            summaries.summarize(path, 2000)
    assert summaries.summarize(path, 2000).startswith("Data file: patients.csv")


def test_only_the_files_used_last_are_remembered(tmp_path: Path) -> None:
    summaries = DataSummaries(capacity=2)
    paths = [write_delimited(tmp_path / f"f{n}.csv", ",") for n in range(3)]
    first = [summaries.summarize(p, 2000) for p in paths]
    for path in paths:
        rewrite_keeping_size_and_time(path, path.read_text().replace("sepsis", "sEPSIS"))
    # f0 was pushed out by f1 and f2, so it is read again; the other two are remembered.
    assert [summaries.summarize(p, 2000) for p in reversed(paths)] == [
        first[2],
        first[1],
        first[0].replace("sepsis", "sEPSIS"),
    ]
