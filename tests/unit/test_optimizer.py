"""Prompt optimization: what a user's prompt looks like after it is fitted to a model's budget."""

from __future__ import annotations

import random
import re

import pytest

from nemo_tui.core.prompt.optimizer import (
    ELISION_TEMPLATE,
    CutReason,
    OptimizedPrompt,
    estimate_tokens,
    optimize_prompt,
)
from nemo_tui.errors import NemoError

INSTRUCTIONS = "You are a careful assistant. Answer only from the report below."
QUESTION = "What is the serial number of the reactor coolant pump?"
FACT = "The reactor coolant pump serial number is QX-4471."
MARKER = re.compile(re.escape(ELISION_TEMPLATE).replace(r"\{tokens\}", r"[\d,]+"))
CODE = "```python\ndef flow_rate(valve):\n\n    return valve.area * 2.5\n```"

_NOUNS = ("team", "budget", "supplier", "warehouse", "inspection", "shift", "invoice", "valve")
_VERBS = ("reviewed", "delayed", "approved", "updated", "discussed", "measured", "replaced")


def filler(rng: random.Random, sentences: int) -> str:
    """A paragraph of plausible prose that says nothing about the question."""
    return " ".join(
        f"The {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the {rng.choice(_NOUNS)} "
        f"after the {rng.choice(_NOUNS)} meeting."
        for _ in range(sentences)
    )


def report(seed: int = 1, paragraphs: int = 40, fact_at: int = 23) -> str:
    """A long prompt: instructions, a report with one planted fact and a code block, a question."""
    rng = random.Random(seed)
    body = [filler(rng, rng.randint(3, 7)) for _ in range(paragraphs)]
    body[fact_at] = f"{filler(rng, 2)} {FACT} {filler(rng, 2)}"
    body.insert(paragraphs // 3, CODE)
    return "\n\n".join([INSTRUCTIONS, *body, QUESTION])


def without_markers(text: str) -> str:
    return MARKER.sub(" ", text)


def test_prompt_within_budget_is_unchanged() -> None:
    prompt = report(paragraphs=5, fact_at=2)
    result = optimize_prompt(prompt, estimate_tokens(prompt))
    assert result.text == prompt
    assert not result.truncated
    assert result.cuts == ()
    assert result.reduction_pct == 0.0


def test_truncation_disabled_returns_prompt_unchanged_even_over_budget() -> None:
    prompt = report()
    result = optimize_prompt(prompt, 50, enabled=False)
    assert result.text == prompt
    assert result.truncated is False
    assert result.original_tokens == result.optimized_tokens == estimate_tokens(prompt)


@pytest.mark.parametrize("budget", [1, 2, 5, 9, 12, 16, 25, 40, 64, 100, 180, 300, 700, 1500])
@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param(report(), id="report"),
        pytest.param(report(seed=2, paragraphs=10, fact_at=9), id="short-report"),
        pytest.param("word " * 3000, id="one-paragraph"),
        pytest.param(f"{INSTRUCTIONS}\n\n{'Why? ' * 800}{QUESTION}", id="huge-question"),
        pytest.param(
            f"{'Rule. ' * 300}\n\n{filler(random.Random(3), 40)}\n\n{QUESTION}", id="long-rules"
        ),
        pytest.param("Explain:\n\n```\n" + "x = 1\n" * 400 + f"```\n\n{QUESTION}", id="code-only"),
        pytest.param("| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 500 + f"\n{QUESTION}", id="table"),
        pytest.param("日本語のテキスト。" * 400 + f"\n\n{QUESTION}", id="non-ascii"),
    ],
)
def test_result_never_exceeds_budget(prompt: str, budget: int) -> None:
    result = optimize_prompt(prompt, budget, question=QUESTION)
    assert result.optimized_tokens <= budget
    assert estimate_tokens(result.text) == result.optimized_tokens


@pytest.mark.parametrize("budget", [60, 120, 250, 500])
def test_result_never_exceeds_budget_with_exact_counter(budget: int) -> None:
    def count_words(text: str) -> int:
        return len(text.split())

    result = optimize_prompt(report(), budget, count_tokens=count_words)
    assert result.optimized_tokens == count_words(result.text) <= budget
    assert result.original_tokens == count_words(report())


@pytest.mark.parametrize("budget", [80, 150, 400])
def test_instructions_and_question_are_kept_whole(budget: int) -> None:
    result = optimize_prompt(report(), budget, question=QUESTION)
    assert result.text.startswith(INSTRUCTIONS + "\n\n")
    assert result.text.endswith(QUESTION)


def test_last_paragraph_is_the_question_when_none_is_given() -> None:
    result = optimize_prompt(report(), 150)
    assert result.text.endswith("\n\n" + QUESTION)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fact_at", [0, 7, 20, 39])
def test_planted_fact_sharing_question_terms_survives(seed: int, fact_at: int) -> None:
    prompt = report(seed=seed, fact_at=fact_at)
    result = optimize_prompt(prompt, estimate_tokens(prompt) // 10, question=QUESTION)
    assert FACT in result.text


def test_paraphrased_question_still_finds_the_fact() -> None:
    question = "Which serial does the coolant pump carry?"
    prompt = report().replace(QUESTION, question)
    result = optimize_prompt(prompt, 150, question=question)
    assert FACT in result.text


@pytest.mark.parametrize("budget", [60, 100, 140, 200, 300, 450, 700])
def test_code_block_is_kept_or_dropped_whole(budget: int) -> None:
    result = optimize_prompt(report(), budget, question=QUESTION)
    fences = result.text.count("```")
    assert fences in (0, 2)
    if fences:
        assert CODE in result.text


def test_no_cut_falls_inside_a_word() -> None:
    prompt = report()
    words = set(prompt.split())
    result = optimize_prompt(prompt, 200, question=QUESTION)
    assert set(without_markers(result.text).split()) <= words


def test_every_cut_is_marked() -> None:
    result = optimize_prompt(report(), 200, question=QUESTION)
    markers = MARKER.findall(result.text)
    content_cuts = [c for c in result.cuts if c.reason is not CutReason.WHITESPACE]
    assert markers
    assert 1 <= len(markers) <= len(content_cuts)


def test_marker_counts_the_omitted_tokens() -> None:
    result = optimize_prompt(report(), 200, question=QUESTION)
    counts = [int(m.replace(",", "")) for m in re.findall(r"\[… ([\d,]+) tokens", result.text)]
    omitted = sum(c.tokens for c in result.cuts if c.reason is not CutReason.WHITESPACE)
    assert all(n > 0 for n in counts)
    assert abs(sum(counts) - omitted) <= len(counts) * 3


def test_cut_offsets_point_at_removed_text() -> None:
    prompt = report()
    result = optimize_prompt(prompt, 200, question=QUESTION)
    assert result.cuts
    previous_end = 0
    for cut in result.cuts:
        assert previous_end <= cut.start < cut.end <= len(prompt)
        previous_end = cut.end
        removed = prompt[cut.start : cut.end]
        if cut.reason is CutReason.WHITESPACE:
            assert removed.isspace()
        else:
            assert removed not in result.text
            assert removed[0] != " " and removed[-1] != " "


def test_duplicates_are_removed_before_relevant_text() -> None:
    rng = random.Random(5)
    repeated = filler(rng, 6)
    body = [filler(rng, 5) for _ in range(8)]
    body[4] = f"{filler(rng, 1)} {FACT}"
    prompt = "\n\n".join([INSTRUCTIONS, repeated, *body, repeated, repeated, QUESTION])
    budget = estimate_tokens(prompt) - estimate_tokens(repeated)
    result = optimize_prompt(prompt, budget, question=QUESTION)
    reasons = {c.reason for c in result.cuts}
    assert CutReason.DUPLICATE in reasons
    assert CutReason.LOW_RELEVANCE not in reasons
    assert result.text.count(repeated) == 1
    assert all(paragraph in result.text for paragraph in body)


def test_boilerplate_goes_before_relevant_text() -> None:
    rng = random.Random(6)
    boilerplate = "Copyright © 2024 Northwind Industrial Ltd. All rights reserved."
    body = [filler(rng, 4) for _ in range(6)]
    prompt = "\n\n".join([INSTRUCTIONS, boilerplate, *body, FACT, boilerplate + " ", QUESTION])
    budget = estimate_tokens(prompt) - 12
    result = optimize_prompt(prompt, budget, question=QUESTION)
    assert boilerplate not in result.text
    assert any(c.reason is CutReason.BOILERPLATE for c in result.cuts)
    assert FACT in result.text


def test_whitespace_runs_are_collapsed_first() -> None:
    prompt = f"{INSTRUCTIONS}\n\n\n\n\n\n{FACT}        It   was   checked.\n\n\n\n\n{QUESTION}"
    result = optimize_prompt(prompt, estimate_tokens(prompt) - 4, question=QUESTION)
    assert result.text == f"{INSTRUCTIONS}\n\n{FACT} It was checked.\n\n{QUESTION}"
    assert {c.reason for c in result.cuts} == {CutReason.WHITESPACE}


def test_table_header_is_kept_with_a_relevant_row() -> None:
    rng = random.Random(7)
    rows = [f"| {rng.choice(_NOUNS)} | {n} |" for n in range(60)]
    rows[41] = "| reactor coolant pump | QX-4471 |"
    table = "| part | serial number |\n|---|---|\n" + "\n".join(rows)
    prompt = "\n\n".join([INSTRUCTIONS, filler(rng, 20), table, filler(rng, 20), QUESTION])
    result = optimize_prompt(prompt, 120, question=QUESTION)
    assert result.original_tokens > 900
    assert "| part | serial number |" in result.text
    assert "| reactor coolant pump | QX-4471 |" in result.text


def test_text_without_sentence_ends_is_still_cut_in_pieces() -> None:
    rng = random.Random(9)
    lines = [
        f"12:{n % 60:02d} INFO {rng.choice(_NOUNS)} {rng.choice(_VERBS)} ok" for n in range(800)
    ]
    lines[517] = "12:37 ERROR reactor coolant pump serial QX-4471 tripped"
    prompt = "\n\n".join([INSTRUCTIONS, "\n".join(lines), QUESTION])
    result = optimize_prompt(prompt, 300, question=QUESTION)
    assert "12:37 ERROR reactor coolant pump serial QX-4471 tripped" in result.text
    assert result.optimized_tokens > 200


def test_long_question_is_cut_in_the_middle_keeping_its_last_sentence() -> None:
    preamble = " ".join(f"Context sentence number {n} about the plant." for n in range(300))
    question = f"{preamble} {QUESTION}"
    prompt = f"{INSTRUCTIONS}\n\n{filler(random.Random(8), 30)}\n\n{question}"
    result = optimize_prompt(prompt, 120, question=question)
    assert result.optimized_tokens <= 120
    assert result.text.endswith(QUESTION)
    assert result.text.count("Context sentence number 0 ") == 1
    assert any(c.reason is CutReason.OVER_BUDGET for c in result.cuts)


def test_report_numbers_and_json() -> None:
    result = optimize_prompt(report(), 200, question=QUESTION)
    data = result.to_json()
    assert set(data) == {
        "original_tokens",
        "optimized_tokens",
        "reduction_pct",
        "truncated",
        "optimized_prompt",
        "cuts",
    }
    assert data["optimized_prompt"] == result.text
    assert data["truncated"] is True
    assert 80 < result.reduction_pct < 100
    cuts = data["cuts"]
    assert isinstance(cuts, list)
    assert {"start", "end", "tokens", "reason"} == set(cuts[0])
    assert {c["reason"] for c in cuts} <= {r.value for r in CutReason}


def test_reduction_pct_of_empty_prompt_is_zero() -> None:
    assert OptimizedPrompt("", 0, 0, False, ()).reduction_pct == 0.0


def test_budget_below_one_is_an_error_with_a_fix() -> None:
    with pytest.raises(NemoError) as raised:
        optimize_prompt("hello", 0)
    assert "num_ctx" in raised.value.fix


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("Hello world, this is a test.", 7, 10),
        ("1234567890", 9, 12),
        ("def f(x):\n    return x * 2\n", 9, 14),
        ("", 0, 0),
    ],
)
def test_token_estimate_is_in_a_plausible_range(text: str, low: int, high: int) -> None:
    assert low <= estimate_tokens(text) <= high


def test_token_estimate_counts_digits_and_punctuation_more_than_prose() -> None:
    prose = "the quick brown fox jumps over the lazy dog and runs away " * 4
    numbers = "3.14159, 2.71828, 1.41421, 1.73205; " * 4
    assert estimate_tokens(numbers) / len(numbers) > 2 * estimate_tokens(prose) / len(prose)


def test_of_equally_relevant_units_the_shorter_is_kept_first() -> None:
    # Each sentence shares one question word, used once in the prompt, so both score the same;
    # the budget holds either but not both, and the long one comes first.
    long = (
        "The reactor hall was repainted last spring by a contractor who also replaced the "
        "windows, the doors, the gutters, the railings and the lights along the access road."
    )
    short = "Pump QX-4471 passed its test."
    rng = random.Random(10)
    body = [filler(rng, 4), long, filler(rng, 4), short, filler(rng, 4)]
    prompt = "\n\n".join([INSTRUCTIONS, *body, QUESTION])
    marker = ELISION_TEMPLATE.format(tokens="1,000")
    with_long = f"{INSTRUCTIONS}\n\n{marker}\n\n{long}\n\n{marker}\n\n{QUESTION}"
    budget = estimate_tokens(with_long) + 2
    result = optimize_prompt(prompt, budget, question=QUESTION)
    assert short in result.text
