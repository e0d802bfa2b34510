"""Query complexity: the levels a user sees for everyday queries, and the reasons given."""

from __future__ import annotations

import pytest

from nemo_tui.core.models.complexity import Complexity, assess_complexity

LOW, MEDIUM, HIGH = Complexity.LOW, Complexity.MEDIUM, Complexity.HIGH

_SUMMARY_PARAGRAPH = (
    "Summarize this paragraph: The city council met on Tuesday to discuss the new bus routes. "
    "Residents from the northern districts asked for more frequent service during the morning "
    "rush, while shop owners downtown worried that moving the main stop would reduce foot "
    "traffic. The council agreed to run a three-month trial of the new routes starting in "
    "spring and to publish ridership figures every month before making a final decision."
)
_LONG_REPORT = "Read the following incident report and tell me what went wrong.\n\n" + " ".join(
    f"At {h:02d}:00 the operator logged routine readings, noted that the backup generator "
    "was tested, that the cooling loop pressure was within limits and that no alarms were "
    "raised during the shift."
    for h in range(24)
)

# (query, data attached, expected level). Greetings, definitions and simple facts are low;
# explaining, comparing, summarizing a paragraph and short code questions are medium;
# multi-step analysis, statistics over attached data, clinical reasoning, long documents and
# code writing with requirements are high.
CASES = [
    ("hi", False, LOW),
    ("Hello there! How are you today?", False, LOW),
    ("thanks, that helped", False, LOW),
    ("What is the capital of France?", False, LOW),
    ("Who wrote Pride and Prejudice?", False, LOW),
    ("What is a neural network?", False, LOW),
    ("Define photosynthesis.", False, LOW),
    ("What is sepsis?", False, LOW),
    ("How many days are in a leap year?", False, LOW),
    ("What does the word ephemeral mean?", False, LOW),
    ("What is Python?", False, LOW),
    ("Translate 'good morning' into Spanish.", False, LOW),
    ("Can you tell me a joke?", False, LOW),
    ("What is the normal range of potassium?", False, LOW),
    ("What is HTML? What is CSS?", False, LOW),
    ("Explain how TCP congestion control works.", False, MEDIUM),
    ("Compare lists and tuples in Python.", False, MEDIUM),
    ("Why is the sky blue?", False, MEDIUM),
    ("What are the pros and cons of remote work?", False, MEDIUM),
    (_SUMMARY_PARAGRAPH, False, MEDIUM),
    ("What does `git rebase -i` do?", False, MEDIUM),
    ("How do I reverse a list in Python?", False, MEDIUM),
    ("Why does my for loop print None at the end?\n```python\nprint(print(x))\n```", False, MEDIUM),
    ("Write a Python function that reverses a string.", False, MEDIUM),
    ("Explain the difference between a virus and a bacterium.", False, MEDIUM),
    ("What is the average height of an adult man?", False, LOW),
    ("Summarize the plot of Hamlet in three sentences.", False, MEDIUM),
    ("Explain what a p-value is.", False, MEDIUM),
    ("Fix this SQL: SELECT name FROM users WHERE age > 30 GROUP BY name;", False, MEDIUM),
    (
        "Which antibiotics treat community-acquired pneumonia in a penicillin-allergic "
        "patient, and why?",
        False,
        HIGH,
    ),
    (
        "First load the sales figures, then compute the monthly mean per region, and finally "
        "test whether the differences between regions are statistically significant.",
        False,
        HIGH,
    ),
    ("What is the mean age and its standard deviation by sex?", True, HIGH),
    ("Which columns have outliers?", True, HIGH),
    ("Summarize this file.", True, MEDIUM),
    (
        "A 67-year-old man with sepsis has a creatinine rising from 1.1 to 2.9 and falling urine "
        "output. What is the likely cause and how should fluids be managed?",
        False,
        HIGH,
    ),
    (
        "Interpret these labs for a diabetic patient with chest pain: troponin 0.8, potassium "
        "5.9, eGFR 38.",
        False,
        HIGH,
    ),
    (_LONG_REPORT, False, HIGH),
    (
        "Write a Python function that parses ISO 8601 dates. It must handle time zones and "
        "invalid input (raise ValueError), include type hints and come with unit tests.",
        False,
        HIGH,
    ),
    (
        "Implement a thread-safe LRU cache class in Java with O(1) get and put; it must handle "
        "concurrent eviction and edge cases such as a zero capacity.",
        False,
        HIGH,
    ),
    (
        "Analyze the trade-offs between microservices and a monolith for a team of five, then "
        "recommend one and explain the migration plan step by step.",
        False,
        HIGH,
    ),
    ("Run a logistic regression of readmission on age and comorbidities.", True, HIGH),
]


@pytest.mark.parametrize(("query", "data", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_level_matches_table(query: str, data: bool, expected: Complexity) -> None:
    assessment = assess_complexity(query, data_attached=data)
    assert assessment.level is expected, assessment.reasons


def test_table_is_large_and_varied() -> None:
    levels = [expected for _, _, expected in CASES]
    assert len(CASES) >= 30
    assert all(levels.count(level) >= 8 for level in Complexity)


def test_same_query_gets_same_assessment() -> None:
    query = _SUMMARY_PARAGRAPH
    assert assess_complexity(query) == assess_complexity(query)


def test_reasons_name_clinical_terms() -> None:
    assessment = assess_complexity(
        "Septic shock: why is lactate high and creatinine rising in sepsis?"
    )
    assert any(r.startswith("clinical terms:") and "creatinine" in r for r in assessment.reasons)


def test_reasons_name_multi_step_ask() -> None:
    assessment = assess_complexity("First clean the data, then plot it.")
    assert "multi-step ask (first..., then...)" in assessment.reasons


def test_reasons_give_word_count_for_long_text() -> None:
    assessment = assess_complexity(_LONG_REPORT)
    words = len(_LONG_REPORT.split())
    assert f"{words:,} words" in assessment.reasons


def test_attached_data_is_a_reason_and_raises_the_level() -> None:
    alone = assess_complexity("Which rows stand out?")
    with_data = assess_complexity("Which rows stand out?", data_attached=True)
    assert "attached data" in with_data.reasons
    assert with_data.score > alone.score


def test_plain_query_still_gets_a_reason() -> None:
    assessment = assess_complexity("hello")
    assert assessment.level is LOW
    assert assessment.reasons == ("short plain ask (1 word)",)


def test_empty_query_is_low() -> None:
    assert assess_complexity("").level is LOW


def test_long_text_is_judged_on_its_start_and_end() -> None:
    text = "Please analyze this log.\n" + "ok line\n" * 200_000 + "What went wrong first, then?"
    assessment = assess_complexity(text)
    assert assessment.level is HIGH
    assert any(r.startswith("analytical ask") for r in assessment.reasons)
