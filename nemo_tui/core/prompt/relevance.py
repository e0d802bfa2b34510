"""How much each unit of a prompt bears on the question, for deciding what to keep.

A unit scores by the question terms it shares, each weighted by how rare it is in the prompt
(inverse document frequency over units), so the one sentence naming "coolant pump serial" beats
the hundred that say "number". Numbers and names in the question weigh more, because a question
about "Smith" or "2019" is answered where those appear. Code blocks and table headers get a small
bonus: they are what the surrounding text refers to.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Sequence

from nemo_tui.core.prompt.segments import BlockKind, Unit

_QUESTION_WORD = re.compile(r"[A-Za-z0-9]+")
_STOPWORD_LIST = """
    a about above according after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once only or other our out over own please same she
    should so some such than that the their them then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you
    your tell give show list find say said says describe explain text document passage answer
    question based given following mentioned stated according
"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
MAX_TERMS = 40
"""The most question terms looked for; each is one search of the prompt."""
# Only the end of a very long question is read for terms: MAX_TERMS fit in far less.
_QUESTION_CHARS = 4000
# Weight of a term that is a number or a name, relative to a plain word.
_SPECIFIC_WEIGHT = 1.5
# Bonus for code blocks and table headers, about the weight of one shared common word.
_STRUCTURE_BONUS = 0.5


def question_terms(question: str) -> dict[str, float]:
    """The content words of a question with their weights.

    Args:
        question: The question text.

    Returns:
        Each term (lower case, plural stripped) mapped to its weight; for a long question,
        only the `MAX_TERMS` that appear last, where the ask usually is.
    """
    if len(question) > _QUESTION_CHARS:
        tail = question[-_QUESTION_CHARS:]
        question = tail[tail.find(" ") + 1 :]
    terms: dict[str, float] = {}
    for index, match in enumerate(_QUESTION_WORD.finditer(question)):
        word = match.group()
        lower = word.lower()
        if lower in _STOPWORDS or (len(lower) < 2 and not lower.isdigit()):
            continue
        specific = lower.isdigit() or (index > 0 and word[0].isupper())
        stem = _stem(lower)
        # Re-inserting keeps the dict ordered by each term's last appearance.
        weight = max(terms.pop(stem, 0.0), _SPECIFIC_WEIGHT if specific else 1.0)
        terms[stem] = weight
    return dict(list(terms.items())[-MAX_TERMS:])


def fold_case(text: str) -> str:
    """Lower-case a text without changing its length, so offsets into it still hold.

    U+0130 (dotted capital I) is the only character whose lower case is two characters long.
    """
    return text.replace("\u0130", "I").lower()


def score_units(
    lowered: str, units: Sequence[Unit], candidates: Sequence[int], terms: dict[str, float]
) -> dict[int, float]:
    """Score candidate units by the question terms they share.

    Args:
        lowered: The prompt the units were split from, passed through `fold_case`.
        units: All units of the prompt, in order.
        candidates: Indexes of the units to score, in order.
        terms: Question terms and weights from `question_terms`.

    Returns:
        A score for every candidate; higher means more relevant.
    """
    found: dict[int, set[str]] = {}
    if terms and candidates:
        starts = [units[i].start for i in candidates]
        first = units[candidates[0]].start
        last = units[candidates[-1]].end
        for term, pattern in _term_patterns(terms):
            for match in pattern.finditer(lowered, first, last):
                at = match.start()
                if at and (lowered[at - 1].isalnum() or lowered[at - 1] == "_"):
                    continue
                index = candidates[bisect_right(starts, at) - 1]
                if match.end() <= units[index].end:
                    found.setdefault(index, set()).add(term)
    frequency: dict[str, int] = {}
    for shared in found.values():
        for term in shared:
            frequency[term] = frequency.get(term, 0) + 1
    total = len(candidates)
    idf = {t: math.log((total + 1) / (n + 0.5)) for t, n in frequency.items()}
    scores = dict.fromkeys(candidates, 0.0)
    for index, shared in found.items():
        scores[index] = sum(terms[t] * idf[t] for t in shared)
    best_row: dict[int, float] = {}
    headers: list[int] = []
    for index in candidates:
        unit = units[index]
        if unit.kind is BlockKind.CODE:
            scores[index] += _STRUCTURE_BONUS
        elif unit.header:
            headers.append(index)
        elif unit.kind is BlockKind.TABLE:
            best_row[unit.block] = max(best_row.get(unit.block, 0.0), scores[index])
    for index in headers:
        # Just above the best row of its table, so a kept row always comes with its header.
        scores[index] = best_row.get(units[index].block, 0.0) + _STRUCTURE_BONUS
    return scores


def _stem(word: str) -> str:
    """Strip a plural ending so "pumps" and "pump" match; "batteries" becomes "battery"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _term_patterns(terms: dict[str, float]) -> list[tuple[str, re.Pattern[str]]]:
    """A pattern per term, matching it with or without a plural ending.

    The start-of-word check is left to the caller: a pattern that begins with a literal lets
    the regex engine skip ahead with a fast substring search, about 10x faster on 1 MB.
    """
    patterns = []
    for term in terms:
        if term.endswith("y") and len(term) > 2:
            form = re.escape(term[:-1]) + r"(?:y|ies)"
        else:
            form = re.escape(term) + r"(?:e?s)?"
        patterns.append((term, re.compile(form + r"\b")))
    return patterns
