"""The record of a cut, the visible marker left in its place, and cutting a text's middle out.

The middle cut is the last resort of the optimizer, for when the instructions and the question
alone exceed the budget: it keeps the start and the end of the text, cuts only between words,
and can keep a protected tail (the question's last sentence) whole.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from nemo_tui.core.prompt.tokens import TokenCounter
from nemo_tui.units import format_count

ELISION_TEMPLATE = "[… {tokens} tokens omitted …]"
"""The marker put in place of each cut; `{tokens}` is the count removed, such as `1,204`."""

_WORD = re.compile(r"\S+")
# Retries after a cut that the token counter finds a little over target (counts are not
# exactly additive); each retry aims lower by the overshoot.
_ATTEMPTS = 8


class CutReason(StrEnum):
    """Why a span of the prompt was cut."""

    WHITESPACE = "whitespace"
    DUPLICATE = "duplicate"
    BOILERPLATE = "boilerplate"
    LOW_RELEVANCE = "low relevance"
    OVER_BUDGET = "over budget"


@dataclass(frozen=True)
class CutSpan:
    """A span of the original prompt that was cut.

    Attributes:
        start: Offset of the first cut character in the original prompt.
        end: Offset just past the last cut character.
        tokens: Tokens the span held.
        reason: Why it was cut. A `whitespace` span is a run of whitespace that was collapsed
            to one space, line break or blank line; every other span was replaced by a marker.
    """

    start: int
    end: int
    tokens: int
    reason: CutReason


def elision_marker(tokens: int) -> str:
    """The marker for a cut of `tokens` tokens, e.g. `[… 312 tokens omitted …]`."""
    return ELISION_TEMPLATE.format(tokens=format_count(tokens))


@dataclass(frozen=True)
class MiddleCut:
    """A text with its middle replaced by an elision marker.

    Attributes:
        text: The shortened text.
        start: Offset in the original text where the removed part begins.
        end: Offset in the original text where the removed part ends.
        tokens: Tokens in the removed part.
    """

    text: str
    start: int
    end: int
    tokens: int


def cut_middle(
    text: str, target: int, count: TokenCounter, *, keep_from: int | None = None
) -> MiddleCut | None:
    """Cut the middle out of a text, at word boundaries, so it fits `target` tokens.

    The room left after the protected end goes half to the start and half to the end.

    Args:
        text: The text to shorten; it is assumed to be over `target`.
        target: The most tokens the result may have.
        count: The token counter.
        keep_from: Offset from which the text must be kept whole (a last sentence), or None.

    Returns:
        The cut, or None when even the protected end and the marker do not fit.
    """
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        return None
    limit = len(words) if keep_from is None else bisect_left([s for s, _ in words], keep_from)
    protected_start = words[limit][0] if limit < len(words) else len(text)
    protected_tokens = count(text[protected_start:])
    marker_tokens = count(elision_marker(count(text)))

    def front_cost(n: int) -> int:
        return count(text[: words[n - 1][1]]) if n else 0

    def back_cost(n: int) -> int:
        return count(text[words[limit - n][0] : protected_start]) if n else 0

    aim = target
    for _ in range(_ATTEMPTS):
        room = aim - protected_tokens - marker_tokens - 1
        if room < 0:
            return None
        front = _last_fitting(limit, room // 2, front_cost)
        back = limit - _last_fitting(limit - front, room - front_cost(front), back_cost)
        start = words[front - 1][1] if front else 0
        end = words[back][0] if back < len(words) else len(text)
        removed = count(text[start:end])
        head = text[:start]
        tail = text[end:]
        marker = elision_marker(removed)
        result = " ".join(part for part in (head, marker, tail) if part)
        over = count(result) - target
        if over <= 0:
            return MiddleCut(result, start, end, removed)
        aim -= over
    return None


def _last_fitting(most: int, room: int, cost: Callable[[int], int]) -> int:
    """The largest n in 0..most with cost(n) <= room, for a cost that grows with n.

    Gallops up from 1 before bisecting, so the counter only ever sees texts about as long
    as the answer, not the whole text (which may be megabytes).
    """
    low, high = 0, 1
    while high <= most and cost(high) <= room:
        low, high = high, high * 2
    high = min(high - 1, most)
    while low < high:
        middle = (low + high + 1) // 2
        if cost(middle) <= room:
            low = middle
        else:
            high = middle - 1
    return low
