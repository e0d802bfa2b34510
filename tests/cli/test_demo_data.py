"""`nemo-tui demo-data`: the cohort on stdout or in a file, and one line about what went wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_tui.cli import EXIT_FAILURE, EXIT_USAGE, main
from nemo_tui.core.analysis.demo_cohort import COLUMNS, cohort_csv


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a failed command; nothing went to stdout."""
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nemo-tui: ")
    return lines[0]


def test_without_output_the_csv_goes_to_stdout_and_nothing_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo-data", "--patients", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out == cohort_csv(5, 42)
    lines = captured.out.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == 6
    assert captured.err == ""


def test_output_writes_the_file_and_says_so_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cohort.csv"
    assert main(["demo-data", "-o", str(path)]) == 0
    text = path.read_text(encoding="ascii")
    assert text == cohort_csv(1500, 42)
    size = len(text)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"wrote 1,500 synthetic patients ({size:,} bytes) to {path}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cohort.csv"]


def test_a_file_of_a_megabyte_or_more_is_sized_in_mb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cohort.csv"
    assert main(["demo-data", "--patients", "20000", "-o", str(path)]) == 0
    assert path.stat().st_size > 2**20
    assert capsys.readouterr().err == f"wrote 20,000 synthetic patients (2 MB) to {path}\n"


def test_the_same_seed_writes_the_same_file_and_replaces_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert main(["demo-data", "--seed", "7", "-o", str(first)]) == 0
    assert main(["demo-data", "--seed", "7", "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert main(["demo-data", "--seed", "8", "-o", str(second)]) == 0
    assert first.read_bytes() != second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.csv", "second.csv"]


def test_through_a_symlink_the_file_it_points_to_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.csv"
    target.write_text("old\n", encoding="ascii")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["demo-data", "--patients", "3", "-o", str(link)]) == 0
    assert link.is_symlink()
    assert target.read_text(encoding="ascii") == cohort_csv(3, 42)


def test_a_folder_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    assert main(["demo-data", "-o", str(folder)]) == EXIT_FAILURE
    assert f"{folder} is a folder" in one_line_error(capsys)
    assert list(folder.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_missing_folder_is_one_line_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing" / "cohort.csv"
    assert main(["demo-data", "-o", str(path)]) == EXIT_FAILURE
    assert f"cannot write {path}" in one_line_error(capsys)


@pytest.mark.parametrize("patients", ["0", "-1", "1000001"])
def test_an_impossible_number_of_patients_is_a_usage_error(
    patients: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cohort.csv"
    assert main(["demo-data", "--patients", patients, "-o", str(path)]) == EXIT_USAGE
    assert "--patients from 1 to 1,000,000" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []
