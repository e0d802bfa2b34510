"""How demanding a query is (low, medium or high), with the reasons found.

The judgement is a sum of weighted signals, each a cheap pattern match, so it is deterministic
and takes well under a millisecond for a typical query:

| signal                                   | weight                  |
|------------------------------------------|-------------------------|
| length: 31-80 / 81-200 / 201-400 / 400+ words | 0.5 / 1.5 / 3 / 4.5 |
| multi-step ask (first ... then, steps)   | 2                       |
| several questions                        | 1                       |
| analytical ask (explain, compare, ...)   | 2, or 3 for two or more |
| how-to ask (how do I ...)                | 1                       |
| code in the query (fences, syntax), else | 2                       |
| programming vocabulary                   | 1                       |
| code request (write a function ...)      | 2.5                     |
| requirements (must, edge cases, tests)   | 1 each, at most 3       |
| statistics terms                         | 1.5, or 2.5 for two or more |
| clinical terms                           | 1 per term, at most 3   |
| patient vignette ("67-year-old")         | 1.5                     |
| clinical reasoning (terms plus an ask)   | 1.5                     |
| attached data                            | 2                       |
| statistics over the attached data        | 1                       |

A score below `MEDIUM_AT` is low and from `HIGH_AT` up is high. Greetings, definitions and
simple facts stay low; an explanation, comparison or short code question is medium; multi-step
analysis, statistics over data, clinical reasoning, long documents and code with requirements
are high. tests/unit/test_complexity.py holds the table of queries this was tuned on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nemo_tui.units import format_count

MEDIUM_AT = 2.0
"""The lowest score judged medium."""
HIGH_AT = 4.5
"""The lowest score judged high."""

# Terms are looked for in the start and the end of a long text only: the ask sits there,
# and a text that long is already high by its length alone.
_SCAN_HEAD = 20_000
_SCAN_TAIL = 5_000


class Complexity(StrEnum):
    """How demanding a query is, which decides the tier of model it needs."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class ComplexityAssessment:
    """The judged complexity of a query.

    Attributes:
        level: Low, medium or high.
        score: The sum of the weights of the signals found (see the module docstring).
        reasons: Short phrases naming each signal, e.g. "clinical terms: sepsis, creatinine".
    """

    level: Complexity
    score: float
    reasons: tuple[str, ...]


def _terms(words: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching any of the whitespace-separated words or phrases.

    Underscores in the list stand for a space or hyphen inside a phrase.
    """
    forms = sorted(words.split(), key=len, reverse=True)
    body = "|".join(re.escape(w).replace("_", r"[\s-]") for w in forms)
    return re.compile(rf"\b(?:{body})\b", re.IGNORECASE)


_ANALYTICAL = _terms(
    """explain why compare comparison contrast summarize summarise summary analyze analyse
    analysis evaluate assess discuss interpret critique justify differences difference_between
    pros_and_cons trade-offs tradeoffs implications recommend predict derive prove design plan
    optimize optimise diagnose investigate review"""
)
_HOW_TO = re.compile(r"\bhow (?:do|can|should|would) (?:i|we|you)\b|\bhow to\b", re.IGNORECASE)
_CODE_VOCABULARY = _terms(
    """python javascript typescript java rust golang sql regex function functions method class
    variable loop compile compiler exception stack_trace traceback bug api endpoint json yaml
    git docker bash shell script library module recursion async pandas numpy dataframe"""
)
_CODE_SYNTAX = re.compile(
    r"```|`[^`\n]+`|\bdef \w+\(|\bclass \w+[:(]|\bfunction \w*\(|=>|\w+\(\)|;\s*$|"
    r"^\s*(?:import \w|from [\w.]+ import|#include|SELECT .+ FROM|return\b)|[{}]\s*$",
    re.MULTILINE,
)
_CODE_REQUEST = re.compile(
    r"\b(?:write|implement|create|build|refactor|code|generate|develop)\b(?:\W+\w+){0,5}?\W+"
    r"(?:function|script|program|class|method|query|api|endpoint|module|parser|cli|service|app)\b",
    re.IGNORECASE,
)
_REQUIREMENTS = _terms(
    """must should_handle needs_to has_to edge_cases edge_case validate validation constraints
    requirements without_using complexity unit_tests tests type_hints error_handling thread-safe
    performance handle handles"""
)
_STATISTICS = _terms(
    """mean median average standard_deviation variance regression correlation correlate p-value
    significance significant hypothesis t-test chi-square anova confidence_interval
    distribution percentile quartile outliers outlier statistic statistics statistical dataset
    csv trend forecast histogram sample_size odds_ratio hazard_ratio kaplan-meier logistic
    cohort survival_analysis"""
)
_CLINICAL = _terms(
    """sepsis septic creatinine troponin hemoglobin haemoglobin lactate egfr potassium sodium
    diagnosis differential_diagnosis prognosis comorbidity comorbidities hypertension diabetes
    insulin antibiotic antibiotics dosage contraindication contraindications tachycardia
    bradycardia arrhythmia myocardial infarction stroke pneumonia renal hepatic kidney aki ckd
    copd asthma oncology tumor tumour metastasis chemotherapy biopsy patient patients symptoms
    clinical icu ventilator intubation triage vital_signs blood_pressure heart_rate spo2
    platelet platelets anticoagulant anticoagulation warfarin heparin bacteremia biomarker
    biomarkers gene genes genome mutation mutations protein enzyme receptor antibody placebo
    randomized adverse_event pharmacokinetics ecg ekg cholesterol glucose hba1c fever
    dialysis fluids vasopressor vasopressors"""
)
_VIGNETTE = re.compile(r"\b\d{1,3}[- ](?:year|yr)[- ]old\b", re.IGNORECASE)
_FIRST_THEN = re.compile(
    r"\b(first(?:ly)?|start by)\b.{1,300}?"
    r"\b(then|next|after that|afterwards|finally|second(?:ly)?)\b",
    re.IGNORECASE | re.DOTALL,
)
_STEP_CUES = re.compile(r"\bstep[\s-]by[\s-]step\b|\band then\b|\bfollowed by\b", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+\S", re.MULTILINE)
_CLINICAL_ASK = re.compile(
    r"\b(?:why|cause|causes|likely|manage|management|treat|treatment|next step|should|"
    r"interpret|explain|workup|work-up)\b",
    re.IGNORECASE,
)


def assess_complexity(text: str, *, data_attached: bool = False) -> ComplexityAssessment:
    """Judge how demanding a query is.

    Args:
        text: The query, including any pasted document or code.
        data_attached: True when a data file comes with the query.

    Returns:
        The level, its score and the reasons found.
    """
    scan = (
        text
        if len(text) <= _SCAN_HEAD + _SCAN_TAIL
        else f"{text[:_SCAN_HEAD]}\n{text[-_SCAN_TAIL:]}"
    )
    score = 0.0
    reasons: list[str] = []

    def add(weight: float, reason: str) -> None:
        nonlocal score
        score += weight
        reasons.append(reason)

    words = len(text.split())
    length_weight = (
        4.5
        if words > 400
        else 3.0
        if words > 200
        else 1.5
        if words > 80
        else 0.5
        if words > 30
        else 0.0
    )
    if length_weight:
        add(length_weight, f"{format_count(words)} words")

    steps = _multi_step(scan)
    if steps:
        add(2.0, f"multi-step ask ({steps})")
    questions = scan.count("?")
    if questions >= 2:
        add(1.0, f"{questions} questions")

    analytical = _found(_ANALYTICAL, scan)
    if analytical:
        add(3.0 if len(analytical) >= 2 else 2.0, "analytical ask: " + ", ".join(analytical[:3]))
    if _HOW_TO.search(scan):
        add(1.0, "how-to ask")

    vocabulary = _found(_CODE_VOCABULARY, scan)
    if _CODE_SYNTAX.search(scan):
        add(2.0, "code in the query")
    elif vocabulary:
        add(1.0, "programming: " + ", ".join(vocabulary[:3]))
    request = _CODE_REQUEST.search(scan)
    if request:
        verb, *_, thing = request.group().lower().split()
        add(2.5, f"code request ({verb} ... {thing})")
    requirements = _found(_REQUIREMENTS, scan)
    if requirements:
        add(min(3.0, float(len(requirements))), "requirements: " + ", ".join(requirements[:3]))

    statistics = _found(_STATISTICS, scan)
    if statistics:
        add(2.5 if len(statistics) >= 2 else 1.5, "statistics: " + ", ".join(statistics[:3]))

    clinical = _found(_CLINICAL, scan)
    if clinical:
        add(min(3.0, float(len(clinical))), "clinical terms: " + ", ".join(clinical[:3]))
    vignette = _VIGNETTE.search(scan)
    if vignette:
        add(1.5, "patient vignette")
    if len(clinical) >= 2 and (analytical or steps or vignette or _CLINICAL_ASK.search(scan)):
        add(1.5, "clinical reasoning")

    if data_attached:
        add(2.0, "attached data")
        if statistics:
            add(1.0, "statistics over the attached data")

    if score >= HIGH_AT:
        level = Complexity.HIGH
    elif score >= MEDIUM_AT:
        level = Complexity.MEDIUM
    else:
        level = Complexity.LOW
    if not reasons:
        reasons.append(f"short plain ask ({format_count(words)} words)")
    return ComplexityAssessment(level, score, tuple(reasons))


def _found(pattern: re.Pattern[str], text: str) -> list[str]:
    """The distinct matches of a pattern, lower-cased, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in pattern.finditer(text):
        seen.setdefault(" ".join(match.group().lower().split()), None)
    return list(seen)


def _multi_step(text: str) -> str:
    """A short description of the multi-step cue in a text, or "" when there is none."""
    first_then = _FIRST_THEN.search(text)
    if first_then:
        return f"{first_then.group(1).lower()}..., {first_then.group(2).lower()}..."
    cue = _STEP_CUES.search(text)
    if cue:
        return " ".join(cue.group().lower().split())
    items = len(_LIST_ITEM.findall(text))
    if items >= 2:
        return f"{items} listed steps"
    return ""
