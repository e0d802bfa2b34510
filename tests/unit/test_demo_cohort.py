"""The synthetic cohort of `demo-data`: marked synthetic, repeatable, plausible, and related the
way a real cohort is, so an analysis of it finds something."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from nemo_tui.core.analysis.demo_cohort import COLUMNS, MAX_PATIENTS, cohort_csv, write_cohort
from nemo_tui.core.prompt.data_summary import summarize_data
from nemo_tui.errors import UsageError

Row = dict[str, str]
MEASUREMENTS = ("bmi", "systolic_bp", "diastolic_bp", "hba1c_pct", "egfr")
"""The columns that may be missing, as measurements are in real records."""
DIABETES_DRUGS = {"metformin", "insulin glargine", "empagliflozin", "sitagliptin"}


def read(text: str) -> list[Row]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def cohort() -> list[Row]:
    """What `nemo-tui demo-data` writes by default."""
    return read(cohort_csv(1500, 42))


def number(row: Row, column: str) -> float:
    return float(row[column])


def mean_of(rows: list[Row], column: str) -> float:
    return statistics.fmean(number(row, column) for row in rows if row[column])


def death_rate(rows: list[Row]) -> float:
    return mean_of(rows, "died")


def subset(rows: list[Row], keep: Callable[[Row], bool]) -> list[Row]:
    chosen = [row for row in rows if keep(row)]
    assert len(chosen) >= 50, "too few rows to compare"
    return chosen


# -- the file ------------------------------------------------------------------------------------


def test_the_header_names_every_field_of_the_spec() -> None:
    header = cohort_csv(1, 42).splitlines()[0]
    assert header == ",".join(COLUMNS)
    assert COLUMNS[0] == "synthetic_id"
    assert set(COLUMNS) >= {
        "age",
        "sex",
        "bmi",
        "systolic_bp",
        "diastolic_bp",
        "hba1c_pct",
        "egfr",
        "dx_code",
        "dx_label",
        "comorbidities",
        "smoker",
        "admission_date",
        "length_of_stay_days",
        "readmitted_30d",
        "medication",
        "follow_up_days",
        "died",
    }


@pytest.mark.parametrize("patients", [1, 37, 9000])
def test_one_row_per_patient_each_marked_synthetic_and_numbered(patients: int) -> None:
    rows = read(cohort_csv(patients, 42))
    assert [row["synthetic_id"] for row in rows] == [f"SYN-{n:06d}" for n in range(1, patients + 1)]


def test_every_row_has_every_column_and_the_text_is_ascii_with_newline_ends() -> None:
    text = cohort_csv(500, 3)
    assert text.isascii()
    assert "\r" not in text and text.endswith("\n")
    for cells in csv.reader(io.StringIO(text)):
        assert len(cells) == len(COLUMNS)


def test_the_same_seed_gives_the_same_text_and_another_seed_another() -> None:
    assert cohort_csv(300, 7) == cohort_csv(300, 7)
    assert cohort_csv(300, 7) != cohort_csv(300, 8)
    assert cohort_csv(300, 7) != cohort_csv(300, -7)
    assert cohort_csv(300, 0) != cohort_csv(300, -1)


def test_a_larger_cohort_begins_with_the_smaller_one() -> None:
    small, large = cohort_csv(100, 5), cohort_csv(200, 5)
    assert large.startswith(small)


def test_writing_gives_the_same_text_and_counts_its_bytes() -> None:
    out = io.StringIO()
    written = write_cohort(out, 9000, 11)
    assert out.getvalue() == cohort_csv(9000, 11)
    assert written == len(out.getvalue().encode("utf-8"))


@pytest.mark.parametrize("patients", [0, -5, MAX_PATIENTS + 1])
def test_a_cohort_size_out_of_range_is_a_usage_error_and_nothing_is_written(
    patients: int,
) -> None:
    with pytest.raises(UsageError) as caught:
        cohort_csv(patients, 42)
    assert "1 to 1,000,000" in caught.value.fix
    out = io.StringIO()
    with pytest.raises(UsageError):
        write_cohort(out, patients, 42)
    assert out.getvalue() == ""


# -- plausible values ----------------------------------------------------------------------------


def test_values_lie_in_plausible_ranges(cohort: list[Row]) -> None:
    for row in cohort:
        assert 18 <= int(row["age"]) <= 100
        assert row["sex"] in {"F", "M"}
        if row["bmi"]:
            assert 15 <= number(row, "bmi") <= 60
        if row["systolic_bp"]:
            assert 80 <= int(row["systolic_bp"]) <= 230
            assert 40 <= int(row["diastolic_bp"]) < int(row["systolic_bp"])
        if row["hba1c_pct"]:
            assert 4.0 <= number(row, "hba1c_pct") <= 15.0
        if row["egfr"]:
            assert 5 <= int(row["egfr"]) <= 150
        assert 0 <= int(row["comorbidities"]) <= 10
        assert int(row["length_of_stay_days"]) >= 1
        assert int(row["follow_up_days"]) >= 0
        for flag in ("smoker", "readmitted_30d", "died"):
            assert row[flag] in {"0", "1"}


def test_measurements_are_rounded_as_a_lab_reports_them(cohort: list[Row]) -> None:
    for row in cohort:
        for column in ("bmi", "hba1c_pct"):
            if row[column]:
                assert len(row[column].split(".")[1]) == 1
        for column in ("systolic_bp", "diastolic_bp", "egfr"):
            if row[column]:
                assert row[column].isdigit()


def test_dates_and_follow_up_stay_within_the_study(cohort: list[Row]) -> None:
    study_end = date(2025, 6, 30)
    for row in cohort:
        admitted = date.fromisoformat(row["admission_date"])
        assert date(2023, 1, 1) <= admitted <= date(2024, 12, 31)
        stay, follow_up = int(row["length_of_stay_days"]), int(row["follow_up_days"])
        assert admitted + timedelta(days=stay + follow_up) <= study_end


def test_codes_are_icd10_and_each_has_one_label(cohort: list[Row]) -> None:
    labels: dict[str, set[str]] = {}
    for row in cohort:
        code = row["dx_code"]
        assert code[0].isalpha() and code[1:3].isdigit()
        labels.setdefault(code, set()).add(row["dx_label"])
    assert len(labels) >= 8
    assert all(len(names) == 1 for names in labels.values())


def test_the_medication_matches_the_diagnosis(cohort: list[Row]) -> None:
    medications: dict[str, set[str]] = {}
    for row in cohort:
        medications.setdefault(row["dx_code"], set()).add(row["medication"])
    assert medications["E11.9"] <= DIABETES_DRUGS
    assert not medications["K35.80"] & DIABETES_DRUGS
    assert all(1 <= len(names) <= 4 for names in medications.values())


def test_some_measurements_are_missing_but_never_the_basics(cohort: list[Row]) -> None:
    for column in COLUMNS:
        missing = sum(1 for row in cohort if row[column] == "") / len(cohort)
        if column in MEASUREMENTS:
            assert 0.01 <= missing <= 0.15, column
        else:
            assert missing == 0, column


# -- related as in a real cohort -----------------------------------------------------------------


def test_hba1c_is_higher_in_diabetes(cohort: list[Row]) -> None:
    diabetic = subset(cohort, lambda row: row["dx_code"].startswith("E11"))
    others = subset(cohort, lambda row: not row["dx_code"].startswith("E11"))
    assert mean_of(diabetic, "hba1c_pct") >= mean_of(others, "hba1c_pct") + 1.5
    assert mean_of(diabetic, "hba1c_pct") >= 6.5


def test_egfr_is_lower_in_kidney_disease_and_falls_with_age(cohort: list[Row]) -> None:
    kidney = subset(cohort, lambda row: row["dx_code"].startswith("N18"))
    others = subset(cohort, lambda row: not row["dx_code"].startswith("N18"))
    assert all(int(row["egfr"]) < 60 for row in kidney)
    assert mean_of(kidney, "egfr") <= mean_of(others, "egfr") - 20
    young = subset(others, lambda row: int(row["age"]) < 50)
    old = subset(others, lambda row: int(row["age"]) >= 75)
    assert mean_of(old, "egfr") <= mean_of(young, "egfr") - 20


def test_blood_pressure_rises_with_age_and_bmi(cohort: list[Row]) -> None:
    measured = [row for row in cohort if row["systolic_bp"] and row["bmi"]]
    systolic = [number(row, "systolic_bp") for row in measured]
    assert statistics.correlation([number(row, "age") for row in measured], systolic) > 0.2
    assert statistics.correlation([number(row, "bmi") for row in measured], systolic) > 0.1
    hypertensive = subset(cohort, lambda row: row["dx_code"] == "I10")
    assert mean_of(hypertensive, "systolic_bp") >= mean_of(cohort, "systolic_bp") + 5


def test_more_deaths_with_age(cohort: list[Row]) -> None:
    young = subset(cohort, lambda row: int(row["age"]) < 50)
    old = subset(cohort, lambda row: int(row["age"]) >= 75)
    assert death_rate(old) >= death_rate(young) + 0.2


def test_comorbidities_raise_deaths_stays_and_readmissions(cohort: list[Row]) -> None:
    few = subset(cohort, lambda row: int(row["comorbidities"]) <= 1)
    some = subset(cohort, lambda row: 2 <= int(row["comorbidities"]) <= 3)
    many = subset(cohort, lambda row: int(row["comorbidities"]) >= 4)
    assert death_rate(few) < death_rate(some) < death_rate(many)
    assert mean_of(few, "length_of_stay_days") < mean_of(many, "length_of_stay_days")
    assert mean_of(few, "readmitted_30d") < mean_of(many, "readmitted_30d")


def test_comorbidities_accumulate_with_age(cohort: list[Row]) -> None:
    young = subset(cohort, lambda row: int(row["age"]) < 50)
    old = subset(cohort, lambda row: int(row["age"]) >= 75)
    assert mean_of(old, "comorbidities") >= mean_of(young, "comorbidities") + 1


def test_rates_are_those_of_a_hospital_cohort(cohort: list[Row]) -> None:
    assert 0.08 <= death_rate(cohort) <= 0.35
    assert 0.08 <= mean_of(cohort, "readmitted_30d") <= 0.30
    assert 0.10 <= mean_of(cohort, "smoker") <= 0.35
    assert 3 <= statistics.median(int(row["length_of_stay_days"]) for row in cohort) <= 8


# -- read by the data summary --------------------------------------------------------------------


def test_the_data_summary_lists_every_column_with_its_range(tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    with path.open("w", encoding="ascii", newline="") as out:
        write_cohort(out, 1500, 42)
    summary = summarize_data(path, 100_000)
    assert summary.startswith("Data file: cohort.csv (CSV, 1,500 rows, 18 columns)")
    lines = {line.split(" (")[0][2:]: line for line in summary.splitlines() if line[:2] == "- "}
    assert list(lines) == list(COLUMNS)
    for column in ("age", "comorbidities", "length_of_stay_days", "follow_up_days", "died"):
        assert f"- {column} (int): none missing; min " in lines[column]
    for column in ("bmi", "hba1c_pct"):
        assert f"- {column} (float): " in lines[column]
    for column in MEASUREMENTS:
        assert " missing (" in lines[column] and "min " in lines[column]
    assert "(date): none missing; from 2023-" in lines["admission_date"]
