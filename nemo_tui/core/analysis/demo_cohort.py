"""A synthetic patient cohort as CSV, to try analysis mode on without real patient data.

Every row is made up, and says so: the first column is `synthetic_id`, `SYN-000001` onwards. The
file has no comment lines, so any CSV reader loads it as it is. Rows are drawn from
`random.Random`: the same seed gives the same file byte for byte, another seed another file.

The values are plausible and related the way they are in hospital cohorts, so an analysis has
something to find:

- The primary diagnosis (an ICD-10-CM code and its label) sets the age profile, the smoker share
  and the typical stay, and the medication is one used for that diagnosis.
- HbA1c is high in type 2 diabetes (E11.9); otherwise it is normal, rising slowly with BMI and age.
- eGFR falls with age, lower still in diabetes and heart failure, and lies within the stage's band
  in chronic kidney disease (N18.30, N18.4).
- Systolic blood pressure rises with age and BMI, more in hypertension (I10); diastolic follows
  systolic and falls in old age.
- Comorbidities accumulate with age. The length of stay grows with them, with age and with the
  diagnosis; 30-day readmission grows with comorbidities and the length of stay.
- Death follows proportional hazards in age, comorbidities, smoking, readmission and diagnosis.
  Follow-up runs from discharge to death, loss to follow-up or the end of the study (2025-06-30),
  so `follow_up_days` with `died` (1: died that day, 0: censored) is ready for survival analysis.
- A few measurements are missing (empty cells): BMI, blood pressure, eGFR outside kidney disease,
  and HbA1c, more often where no diabetes is coded, as it is tested less there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TextIO

from nemo_tui.errors import UsageError
from nemo_tui.units import format_count

COLUMNS: tuple[str, ...] = (
    "synthetic_id",
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
)
"""The CSV header, in order. Units: BMI kg/m², blood pressure mmHg, HbA1c %, eGFR
mL/min/1.73 m², days for the `_days` columns (follow-up counts from discharge); the yes/no
columns are 1 or 0."""
MAX_PATIENTS = 1_000_000
"""The largest cohort written, about 120 MB of CSV."""


@dataclass(frozen=True, slots=True)
class _Diagnosis:
    """A primary diagnosis and how it shapes a patient."""

    code: str
    label: str
    per_100: int
    """How many patients in 100 have it."""
    mean_age: float
    bmi_shift: float
    systolic_shift: float
    egfr_shift: float
    """Added to the eGFR expected at the patient's age."""
    stay_days: float
    """Typical length of stay of a patient of 60 without comorbidities."""
    log_hazard: float
    """Added to the log hazard of death."""
    log_odds_readmission: float
    smoker_share: float
    medications: tuple[str, str, str, str]
    """Prescribed in the ratio 4:3:2:1."""
    diabetic: bool = False
    egfr_band: tuple[int, int] | None = None
    """For a stage of chronic kidney disease: its eGFR band, lowest and highest, which replaces
    the age-expected value."""


_DIAGNOSES = (
    _Diagnosis(
        code="E11.9",
        label="Type 2 diabetes mellitus without complications",
        per_100=14,
        mean_age=63,
        bmi_shift=3.5,
        systolic_shift=4,
        egfr_shift=-6.0,
        stay_days=3.0,
        log_hazard=0.2,
        log_odds_readmission=0.1,
        smoker_share=0.18,
        medications=("metformin", "insulin glargine", "empagliflozin", "sitagliptin"),
        diabetic=True,
    ),
    _Diagnosis(
        code="I10",
        label="Essential (primary) hypertension",
        per_100=12,
        mean_age=64,
        bmi_shift=2.0,
        systolic_shift=18,
        egfr_shift=-2.0,
        stay_days=2.5,
        log_hazard=0.0,
        log_odds_readmission=-0.3,
        smoker_share=0.18,
        medications=("lisinopril", "amlodipine", "losartan", "hydrochlorothiazide"),
    ),
    _Diagnosis(
        code="I50.9",
        label="Heart failure, unspecified",
        per_100=10,
        mean_age=76,
        bmi_shift=1.0,
        systolic_shift=-4,
        egfr_shift=-10.0,
        stay_days=6.0,
        log_hazard=0.9,
        log_odds_readmission=0.5,
        smoker_share=0.15,
        medications=("furosemide", "carvedilol", "sacubitril-valsartan", "spironolactone"),
    ),
    _Diagnosis(
        code="I21.4",
        label="Non-ST elevation (NSTEMI) myocardial infarction",
        per_100=8,
        mean_age=67,
        bmi_shift=1.5,
        systolic_shift=2,
        egfr_shift=-3.0,
        stay_days=4.0,
        log_hazard=0.6,
        log_odds_readmission=0.3,
        smoker_share=0.32,
        medications=("atorvastatin", "clopidogrel", "metoprolol", "aspirin"),
    ),
    _Diagnosis(
        code="I48.91",
        label="Unspecified atrial fibrillation",
        per_100=9,
        mean_age=74,
        bmi_shift=1.0,
        systolic_shift=2,
        egfr_shift=-4.0,
        stay_days=3.0,
        log_hazard=0.4,
        log_odds_readmission=0.2,
        smoker_share=0.14,
        medications=("apixaban", "metoprolol", "warfarin", "diltiazem"),
    ),
    _Diagnosis(
        code="I63.9",
        label="Cerebral infarction, unspecified",
        per_100=7,
        mean_age=72,
        bmi_shift=0.5,
        systolic_shift=8,
        egfr_shift=-3.0,
        stay_days=7.0,
        log_hazard=0.9,
        log_odds_readmission=0.3,
        smoker_share=0.22,
        medications=("clopidogrel", "atorvastatin", "aspirin", "apixaban"),
    ),
    _Diagnosis(
        code="J44.1",
        label="Chronic obstructive pulmonary disease with (acute) exacerbation",
        per_100=9,
        mean_age=70,
        bmi_shift=-1.5,
        systolic_shift=0,
        egfr_shift=-2.0,
        stay_days=5.0,
        log_hazard=0.7,
        log_odds_readmission=0.6,
        smoker_share=0.55,
        medications=("tiotropium", "prednisone", "budesonide-formoterol", "salbutamol"),
    ),
    _Diagnosis(
        code="J18.9",
        label="Pneumonia, unspecified organism",
        per_100=11,
        mean_age=66,
        bmi_shift=-0.5,
        systolic_shift=-2,
        egfr_shift=-2.0,
        stay_days=5.0,
        log_hazard=0.5,
        log_odds_readmission=0.3,
        smoker_share=0.25,
        medications=("amoxicillin-clavulanate", "ceftriaxone", "azithromycin", "doxycycline"),
    ),
    _Diagnosis(
        code="N18.30",
        label="Chronic kidney disease, stage 3 unspecified",
        per_100=7,
        mean_age=71,
        bmi_shift=1.5,
        systolic_shift=8,
        egfr_shift=0.0,
        stay_days=4.0,
        log_hazard=0.5,
        log_odds_readmission=0.4,
        smoker_share=0.16,
        medications=("losartan", "dapagliflozin", "furosemide", "calcium acetate"),
        egfr_band=(30, 59),
    ),
    _Diagnosis(
        code="N18.4",
        label="Chronic kidney disease, stage 4 (severe)",
        per_100=3,
        mean_age=73,
        bmi_shift=1.0,
        systolic_shift=10,
        egfr_shift=0.0,
        stay_days=5.0,
        log_hazard=0.9,
        log_odds_readmission=0.6,
        smoker_share=0.14,
        medications=("furosemide", "dapagliflozin", "sodium bicarbonate", "epoetin alfa"),
        egfr_band=(15, 29),
    ),
    _Diagnosis(
        code="A41.9",
        label="Sepsis, unspecified organism",
        per_100=5,
        mean_age=70,
        bmi_shift=0.0,
        systolic_shift=-12,
        egfr_shift=-8.0,
        stay_days=7.0,
        log_hazard=1.3,
        log_odds_readmission=0.5,
        smoker_share=0.2,
        medications=("piperacillin-tazobactam", "meropenem", "vancomycin", "ceftriaxone"),
    ),
    _Diagnosis(
        code="K35.80",
        label="Unspecified acute appendicitis",
        per_100=5,
        mean_age=38,
        bmi_shift=0.0,
        systolic_shift=-4,
        egfr_shift=0.0,
        stay_days=2.5,
        log_hazard=-1.0,
        log_odds_readmission=-0.5,
        smoker_share=0.2,
        medications=("cefazolin", "metronidazole", "ceftriaxone", "paracetamol"),
    ),
)

_FIRST_ADMISSION = date(2023, 1, 1)
_ADMISSION_DATES = tuple(
    (_FIRST_ADMISSION + timedelta(days=day)).isoformat()
    for day in range((date(2024, 12, 31) - _FIRST_ADMISSION).days + 1)
)
_STUDY_END_DAY = (date(2025, 6, 30) - _FIRST_ADMISSION).days
_MEAN_DAYS_TO_LOSS = 2500.0
"""Mean days until a patient is lost to follow-up: about one in six is lost within the study."""
_BASE_HAZARD_PER_DAY = 1.0e-4
"""Daily hazard of death at 65 without comorbidities, smoking, readmission or a diagnosis that
adds to it: under 4% a year."""
_BLOCK_ROWS = 8192
"""Rows joined into one string before it is written: few writes, bounded memory."""


def check_patients(patients: int) -> None:
    """Check that a cohort of `patients` can be made.

    Args:
        patients: How many patients the user asked for.

    Raises:
        UsageError: `patients` is below 1 or above `MAX_PATIENTS`.
    """
    if not 1 <= patients <= MAX_PATIENTS:
        raise UsageError(
            f"cannot make a cohort of {format_count(patients)} patients",
            fix=f"choose --patients from 1 to {format_count(MAX_PATIENTS)}",
        )


def cohort_csv(patients: int, seed: int) -> str:
    """The whole cohort as CSV text: the header, then one row per patient, `\\n` line ends.

    Args:
        patients: How many patients (rows).
        seed: The same seed gives the same text.

    Returns:
        The CSV text; it is ASCII.

    Raises:
        UsageError: `patients` is out of range (see `check_patients`).
    """
    check_patients(patients)
    return "".join(_blocks(patients, seed))


def write_cohort(out: TextIO, patients: int, seed: int) -> int:
    """Write the cohort as CSV to a text stream, a block of rows at a time.

    Writes the same text as `cohort_csv` without holding all of it in memory.

    Args:
        out: Where to write; opened with `newline=""` to keep the `\\n` line ends everywhere.
        patients: How many patients (rows).
        seed: The same seed gives the same text.

    Returns:
        The bytes written, which equal the characters written: the text is ASCII.

    Raises:
        UsageError: `patients` is out of range (see `check_patients`); nothing was written.
    """
    check_patients(patients)
    written = 0
    for block in _blocks(patients, seed):
        out.write(block)
        written += len(block)
    return written


def _csv_field(text: str) -> str:
    """`text` as one CSV field: quoted when it holds a comma, quote or line break."""
    if any(character in text for character in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _standard_normal_quantiles(count: int) -> tuple[float, ...]:
    """The standard normal's quantiles at the probabilities (i + 0.5) / count, i < count.

    Found by walking a fine grid of the normal CDF (from `math.erfc`) and interpolating; they are
    within 1e-5 of the exact values. Computed here rather than with `statistics.NormalDist`,
    whose import (fractions, decimal) takes longer than writing a whole cohort.
    """
    step = 1.0 / 256
    erfc = math.erfc
    scale = math.sqrt(0.5)
    low, low_cdf = -6.0, 0.5 * erfc(6.0 * scale)
    high = low + step
    high_cdf = 0.5 * erfc(-high * scale)
    quantiles = []
    for i in range(count):
        probability = (i + 0.5) / count
        while high_cdf < probability:
            low, low_cdf = high, high_cdf
            high += step
            high_cdf = 0.5 * erfc(-high * scale)
        quantiles.append(low + step * (probability - low_cdf) / (high_cdf - low_cdf))
    return tuple(quantiles)


_STANDARD_NORMALS = _standard_normal_quantiles(4096)
"""Indexed by 12 random bits, a normal draw several times cheaper than `Random.gauss`. Within two
standard deviations of the mean, where 95% of draws fall, neighbours are under 0.005 apart, far
finer than the values are rounded; the extremes are ±3.67."""


_Slot = tuple[_Diagnosis, str, tuple[str, ...]]
"""A diagnosis, its code and label as CSV cells, and ten medication cells in the prescribing
ratio, so a weighted choice of medication is one random index."""


def _slots() -> tuple[_Slot, ...]:
    """One entry per patient in 100, so a weighted choice of diagnosis is one random index."""
    slots: list[_Slot] = []
    for dx in _DIAGNOSES:
        medications = tuple(
            _csv_field(name)
            for name, times in zip(dx.medications, (4, 3, 2, 1), strict=True)
            for _ in range(times)
        )
        slots.extend([(dx, f"{dx.code},{_csv_field(dx.label)}", medications)] * dx.per_100)
    if len(slots) != 100:
        raise ValueError(f"the diagnoses' shares add up to {len(slots)}, not 100")
    return tuple(slots)


_SLOTS = _slots()


def _blocks(patients: int, seed: int) -> Iterator[str]:
    """The header, then the rows in blocks of up to `_BLOCK_ROWS`, each block one string.

    The loop is written for speed (names bound locally, clamps as conditional expressions, each
    row one f-string): it is what `demo-data` spends its time on.
    """
    # Random seeds with an int's absolute value, so seeds S and -S would give one file; folding
    # the negative seeds onto the odd numbers gives every seed a stream of its own.
    rng = random.Random(seed * 2 if seed >= 0 else -2 * seed - 1)
    draw = rng.random
    bits = rng.getrandbits
    normals = _STANDARD_NORMALS
    exp = math.exp
    log = math.log
    slots = _SLOTS
    dates = _ADMISSION_DATES
    date_count = len(dates)
    study_end_day = _STUDY_END_DAY
    mean_days_to_loss = _MEAN_DAYS_TO_LOSS
    base_hazard = _BASE_HAZARD_PER_DAY
    yield ",".join(COLUMNS) + "\n"
    for first in range(1, patients + 1, _BLOCK_ROWS):
        rows: list[str] = []
        append = rows.append
        for number in range(first, min(first + _BLOCK_ROWS, patients + 1)):
            dx, dx_cells, medications = slots[int(draw() * 100)]
            age = int(dx.mean_age + 13.0 * normals[bits(12)])
            age = 18 if age < 18 else 100 if age > 100 else age
            sex = "F" if draw() < 0.5 else "M"
            smoker = 1 if draw() < dx.smoker_share else 0
            bmi = 27.5 + dx.bmi_shift + 4.8 * normals[bits(12)]
            bmi = 16.0 if bmi < 16.0 else 60.0 if bmi > 60.0 else bmi
            systolic = int(
                100.5
                + 0.5 * age
                + 0.8 * (bmi - 27.5)
                + dx.systolic_shift
                + 13.0 * normals[bits(12)]
            )
            systolic = 85 if systolic < 85 else 230 if systolic > 230 else systolic
            diastolic = int(20.5 + 0.45 * systolic - 0.12 * (age - 50) + 7.0 * normals[bits(12)])
            diastolic = 40 if diastolic < 40 else min(diastolic, systolic - 15)
            # HbA1c is tested less where no diabetes is coded, so it is missing more often there.
            if dx.diabetic:
                hba1c = 8.0 + 0.03 * (bmi - 31.0) + 1.4 * normals[bits(12)]
                hba1c = 5.7 if hba1c < 5.7 else 14.0 if hba1c > 14.0 else hba1c
                hba1c_cell = "" if draw() < 0.02 else f"{hba1c:.1f}"
            else:
                hba1c = 5.3 + 0.025 * (bmi - 27.5) + 0.006 * (age - 50) + 0.35 * normals[bits(12)]
                hba1c = 4.0 if hba1c < 4.0 else min(hba1c, 7.5)
                hba1c_cell = "" if draw() < 0.08 else f"{hba1c:.1f}"
            band = dx.egfr_band
            if band is None:
                egfr = int(130.5 - 0.85 * age + dx.egfr_shift + 12.0 * normals[bits(12)])
                egfr = 20 if egfr < 20 else min(egfr, 140)
                egfr_cell = "" if draw() < 0.04 else str(egfr)
            else:
                # Kidney disease is staged by its eGFR, so that is always measured.
                egfr_cell = str(band[0] + int(draw() * (band[1] - band[0] + 1)))
            # A Poisson draw by multiplying uniforms (Knuth): a mean under 4 takes few draws.
            limit = exp(-0.2 - 0.045 * (age - 18))
            comorbidities = 0
            product = draw()
            while product > limit and comorbidities < 9:
                comorbidities += 1
                product *= draw()
            stay = int(
                0.5
                + dx.stay_days
                * exp(0.12 * comorbidities + 0.008 * (age - 60) + 0.45 * normals[bits(12)])
            )
            stay = 1 if stay < 1 else min(stay, 90)
            odds_against = exp(2.9 - 0.28 * comorbidities - 0.04 * stay - dx.log_odds_readmission)
            # Below the logistic probability 1 / (1 + odds against), without dividing.
            readmitted = 1 if draw() * (1.0 + odds_against) < 1.0 else 0
            day = int(draw() * date_count)
            hazard = base_hazard * exp(
                0.045 * (age - 65)
                + 0.22 * comorbidities
                + 0.35 * smoker
                + 0.4 * readmitted
                + dx.log_hazard
            )
            to_death = -log(1.0 - draw()) / hazard
            to_censoring = min(-log(1.0 - draw()) * mean_days_to_loss, study_end_day - day - stay)
            if to_death <= to_censoring:
                follow_up, died = int(to_death), 1
            else:
                follow_up, died = int(to_censoring), 0
            bmi_cell = "" if draw() < 0.04 else f"{bmi:.1f}"
            bp_cells = "," if draw() < 0.05 else f"{systolic},{diastolic}"
            append(
                f"SYN-{number:06d},{age},{sex},{bmi_cell},{bp_cells},{hba1c_cell},{egfr_cell},"
                f"{dx_cells},{comorbidities},{smoker},{dates[day]},{stay},{readmitted},"
                f"{medications[int(draw() * 10)]},{follow_up},{died}\n"
            )
        yield "".join(rows)
