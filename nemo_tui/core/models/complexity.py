"""How demanding a query is (low, medium or high), with the reasons found.

The judgement is a sum of weighted signals, found in one pass over the words plus a few
patterns, so it is deterministic and takes well under a millisecond for a typical query:

| signal                                              | weight                      |
|-----------------------------------------------------|-----------------------------|
| length: over 30 / 80 / 200 / 400 words              | 0.5 / 1.5 / 3 / 4.5         |
| multi-step ask (first ... then, step by step, list) | 2                           |
| several questions                                   | 1                           |
| analytical ask (explain, compare, summarize, ...)   | 2, or 3 for two or more     |
| how-to ask (how do I ...)                           | 1                           |
| code in the query (fences, inline code, syntax)     | 2                           |
| or else programming words (python, loop, ...)       | 1                           |
| code request (write ... function)                   | 2.5                         |
| requirements (must, edge cases, tests, ...)         | 1 each, at most 3           |
| statistics terms (mean, regression, ...)            | 1.5, or 2.5 for two or more |
| clinical terms (sepsis, creatinine, ...)            | 1 each, at most 3           |
| patient vignette ("67-year-old")                    | 1.5                         |
| clinical reasoning (two clinical terms and an ask)  | 1.5                         |
| attached data                                       | 2                           |
| statistics over the attached data                   | 1                           |

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
_SCAN_HEAD = 8_000
_SCAN_TAIL = 2_000


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


class _Kind(StrEnum):
    """The vocabularies a query's words are looked up in."""

    ANALYTICAL = "analytical"
    HOW_TO = "how-to"
    PROGRAMMING = "programming"
    CODE_VERB = "code verb"
    CODE_THING = "code thing"
    REQUIREMENT = "requirement"
    STATISTICS = "statistics"
    CLINICAL = "clinical"
    CLINICAL_ASK = "clinical ask"
    STEPS = "steps"


# Word lists per vocabulary. An underscore joins the words of a phrase, which may be written
# with spaces or hyphens ("step by step", "step-by-step").
_VOCABULARIES = {
    _Kind.ANALYTICAL: """explain why compare comparison contrast summarize summarise summary
        analyze analyse analysis evaluate assess discuss interpret critique justify differences
        difference_between pros_and_cons trade-offs tradeoffs implications recommend predict
        derive prove design plan optimize optimise diagnose investigate review""",
    _Kind.HOW_TO: """how_do_i how_can_i how_should_i how_would_i how_do_we how_can_we how_do_you
        how_can_you how_to""",
    _Kind.PROGRAMMING: """python javascript typescript java rust golang sql regex function
        functions method class variable loop compile compiler exception stack_trace traceback
        bug api endpoint json yaml git docker bash shell script library module recursion async
        pandas numpy dataframe""",
    _Kind.CODE_VERB: "write implement create build refactor code generate develop",
    _Kind.CODE_THING: """function script program class method query api endpoint module parser
        cli service app""",
    _Kind.REQUIREMENT: """must should_handle needs_to has_to edge_cases edge_case validate
        validation constraints requirements without_using complexity unit_tests tests
        type_hints error_handling thread-safe performance handle handles""",
    _Kind.STATISTICS: """mean median average standard_deviation variance regression correlation
        correlate p-value significance significant hypothesis t-test chi-square anova
        confidence_interval distribution percentile quartile outliers outlier statistic
        statistics statistical dataset csv trend forecast histogram sample_size odds_ratio
        hazard_ratio kaplan-meier logistic cohort survival_analysis""",
    _Kind.CLINICAL: """sepsis septic creatinine troponin hemoglobin haemoglobin lactate egfr
        potassium sodium diagnosis differential_diagnosis prognosis comorbidity comorbidities
        hypertension diabetes diabetic insulin antibiotic antibiotics dosage contraindication
        contraindications tachycardia bradycardia arrhythmia myocardial infarction stroke
        pneumonia renal hepatic kidney aki ckd copd asthma oncology tumor tumour metastasis
        chemotherapy biopsy patient patients symptoms clinical icu ventilator intubation triage
        vital_signs blood_pressure heart_rate spo2 platelet platelets anticoagulant
        anticoagulation warfarin heparin bacteremia biomarker biomarkers gene genes genome
        mutation mutations protein enzyme receptor antibody placebo randomized adverse_event
        pharmacokinetics ecg ekg cholesterol glucose hba1c fever dialysis fluids vasopressor
        vasopressors""",
    _Kind.CLINICAL_ASK: """why cause causes likely manage managed management treat treatment
        next_step should interpret explain workup work-up""",
    _Kind.STEPS: "step_by_step and_then followed_by",
}


_Entry = tuple[_Kind, tuple[str, ...], str]
"""A lexicon entry: its vocabulary, the words that must follow, and the term as shown."""


def _lexicon() -> dict[str, list[_Entry]]:
    """Index every word and phrase of the vocabularies by its first word."""
    lexicon: dict[str, list[_Entry]] = {}
    for kind, text in _VOCABULARIES.items():
        for entry in text.split():
            spaced = entry.split("_")
            name = " ".join(spaced)
            lexicon.setdefault(spaced[0], []).append((kind, tuple(spaced[1:]), name))
            if len(spaced) > 1:
                lexicon.setdefault("-".join(spaced), []).append((kind, (), name))
    return lexicon


_LEXICON = _lexicon()
_WORD = re.compile(r"[a-z0-9][a-z0-9'+-]*[a-z0-9+]|[a-z0-9]")
# How many words may stand between a code verb and its object ("write a small Python function").
_CODE_REQUEST_SPAN = 6
_CODE_SYNTAX = re.compile(
    r"`[^`\n]+`|(?:def|class|function) \w*[:(]|\w\(\)|;[ \t]*$|"
    r"^[ \t]*(?:import \w|from [\w.]+ import|#include|SELECT .+ FROM|return\b)|[{}][ \t]*$",
    re.MULTILINE,
)
_VIGNETTE = re.compile(r"\b\d{1,3}[- ](?:year|yr)[- ]old\b", re.IGNORECASE)
_FIRST_THEN = re.compile(
    r"\b(first(?:ly)?|start by)\b.{1,300}?"
    r"\b(then|next|after that|afterwards|finally|second(?:ly)?)\b",
    re.IGNORECASE | re.DOTALL,
)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+\S", re.MULTILINE)
# (more than this many words, weight), longest first.
_LENGTH_WEIGHTS = ((400, 4.5), (200, 3.0), (80, 1.5), (30, 0.5))


def assess_complexity(text: str, *, data_attached: bool = False) -> ComplexityAssessment:
    """Judge how demanding a query is.

    Args:
        text: The query, including any pasted document or code.
        data_attached: True when a data file comes with the query.

    Returns:
        The level, its score and the reasons found.
    """
    if len(text) > _SCAN_HEAD + _SCAN_TAIL:
        scan = f"{text[:_SCAN_HEAD]}\n{text[-_SCAN_TAIL:]}"
    else:
        scan = text
    hits, code_request = _vocabulary_hits(_WORD.findall(scan.lower()))
    score = 0.0
    reasons: list[str] = []

    def add(weight: float, reason: str) -> None:
        nonlocal score
        score += weight
        reasons.append(reason)

    def terms(kind: _Kind) -> str:
        return ", ".join(hits[kind][:3])

    words = len(text.split())
    length = next((weight for least, weight in _LENGTH_WEIGHTS if words > least), 0.0)
    if length:
        add(length, _count_of(words, "word"))

    steps = _multi_step(scan, hits[_Kind.STEPS][0] if hits[_Kind.STEPS] else "")
    if steps:
        add(2.0, f"multi-step ask ({steps})")
    questions = scan.count("?")
    if questions >= 2:
        add(1.0, f"{questions} questions")

    analytical = hits[_Kind.ANALYTICAL]
    if analytical:
        add(3.0 if len(analytical) >= 2 else 2.0, f"analytical ask: {terms(_Kind.ANALYTICAL)}")
    if hits[_Kind.HOW_TO]:
        add(1.0, "how-to ask")

    if "```" in scan or "=>" in scan or _CODE_SYNTAX.search(scan):
        add(2.0, "code in the query")
    elif hits[_Kind.PROGRAMMING]:
        add(1.0, f"programming: {terms(_Kind.PROGRAMMING)}")
    if code_request:
        add(2.5, f"code request ({code_request})")
    requirements = hits[_Kind.REQUIREMENT]
    if requirements:
        add(min(3.0, float(len(requirements))), f"requirements: {terms(_Kind.REQUIREMENT)}")

    statistics = hits[_Kind.STATISTICS]
    if statistics:
        add(2.5 if len(statistics) >= 2 else 1.5, f"statistics: {terms(_Kind.STATISTICS)}")

    clinical = hits[_Kind.CLINICAL]
    if clinical:
        add(min(3.0, float(len(clinical))), f"clinical terms: {terms(_Kind.CLINICAL)}")
    vignette = _VIGNETTE.search(scan)
    if vignette:
        add(1.5, "patient vignette")
    clinical_ask = analytical or steps or vignette or hits[_Kind.CLINICAL_ASK]
    if len(clinical) >= 2 and clinical_ask:
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
        reasons.append(f"short plain ask ({_count_of(words, 'word')})")
    return ComplexityAssessment(level, score, tuple(reasons))


def _vocabulary_hits(words: list[str]) -> tuple[dict[_Kind, list[str]], str]:
    """Look the words up in the vocabularies, in one pass.

    Returns:
        The distinct terms found per vocabulary, in order of appearance, and a description of
        the first code request ("write ... function"), or "" when there is none.
    """
    found: dict[_Kind, dict[str, None]] = {kind: {} for kind in _Kind}
    code_request = ""
    for i, word in enumerate(words):
        for kind, rest, name in _LEXICON.get(word, ()):
            if tuple(words[i + 1 : i + 1 + len(rest)]) == rest:
                found[kind].setdefault(name, None)
                if kind is _Kind.CODE_VERB and not code_request:
                    code_request = _code_request(word, words[i + 1 : i + 1 + _CODE_REQUEST_SPAN])
    return {kind: list(terms) for kind, terms in found.items()}, code_request


def _code_request(verb: str, following: list[str]) -> str:
    """The code request ("write ... function") if a code object follows the verb closely."""
    for word in following:
        if any(entry[0] is _Kind.CODE_THING for entry in _LEXICON.get(word, ())):
            return f"{verb} ... {word}"
    return ""


def _multi_step(text: str, cue: str) -> str:
    """A short description of the multi-step ask in a text, or "" when there is none.

    Args:
        text: The text.
        cue: The first step phrase found ("step by step", "and then"), or "".
    """
    first_then = _FIRST_THEN.search(text)
    if first_then:
        return f"{first_then.group(1).lower()}..., {first_then.group(2).lower()}..."
    if cue:
        return cue
    items = len(_LIST_ITEM.findall(text))
    if items >= 2:
        return f"{items} listed steps"
    return ""


def _count_of(n: int, noun: str) -> str:
    """A count with its noun, singular for one: 1 word, 412 words."""
    return f"{format_count(n)} {noun}{'' if n == 1 else 's'}"
