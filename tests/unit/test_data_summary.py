"""Data-file summaries: what the model is told about a CSV, TSV or JSON Lines attachment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_tui.core import data_summary
from nemo_tui.core.data_summary import build_prompt, summarize_data
from nemo_tui.core.optimizer import estimate_tokens
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
