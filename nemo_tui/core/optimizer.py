"""Fitting a prompt into a model's token budget, and reporting exactly what was cut.

When a prompt is over budget (and `context_truncation` is on), it is shrunk in this order,
stopping as soon as it fits:

1. whitespace: runs of blank lines and spaces are collapsed (code blocks are left alone);
2. duplicate: paragraphs and lines that repeat an earlier one are dropped;
3. boilerplate: copyright, disclaimer, navigation and similar lines are dropped;
4. low relevance: the rest is ranked by how much it shares with the question
   (`nemo_tui.core.relevance`) and the least relevant text is dropped.

The instructions (the first paragraph, when it is small) and the question (the end of the
prompt) are never dropped. Text is cut in whole sentences, table rows and code blocks
(`nemo_tui.core.segments`), so no cut falls inside a word or a code block, and every run of
dropped text is replaced by a visible marker (`ELISION_TEMPLATE`). Only when the instructions
and the question alone are over budget is the middle of the longer one cut, at word boundaries,
keeping the question's last sentence whole where possible. The result never exceeds the budget.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_right
from dataclasses import dataclass
from enum import StrEnum

from nemo_tui.core.elision import ELISION_TEMPLATE, cut_middle, elision_marker
from nemo_tui.core.relevance import fold_case, question_terms, score_units
from nemo_tui.core.segments import BlockKind, Unit, block_units, split_blocks, split_units
from nemo_tui.core.tokens import TokenCounter, estimate_tokens
from nemo_tui.errors import NemoError

__all__ = [
    "ELISION_TEMPLATE",
    "CutReason",
    "CutSpan",
    "OptimizedPrompt",
    "estimate_tokens",
    "optimize_prompt",
]


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


@dataclass(frozen=True)
class OptimizedPrompt:
    """The prompt to send, with what was done to it.

    Attributes:
        text: The prompt to send.
        original_tokens: Tokens in the prompt as given.
        optimized_tokens: Tokens in `text`.
        truncated: True when `text` differs from the prompt as given.
        cuts: The spans of the original prompt that were cut, in order.
    """

    text: str
    original_tokens: int
    optimized_tokens: int
    truncated: bool
    cuts: tuple[CutSpan, ...]

    @property
    def reduction_pct(self) -> float:
        """How much smaller the prompt got, in percent (0 to 100)."""
        if self.original_tokens <= 0:
            return 0.0
        saved = 1 - self.optimized_tokens / self.original_tokens
        return min(100.0, max(0.0, saved * 100))

    def to_json(self) -> dict[str, object]:
        """The result as JSON-ready data, for `--json` output and logs."""
        return {
            "original_tokens": self.original_tokens,
            "optimized_tokens": self.optimized_tokens,
            "reduction_pct": round(self.reduction_pct, 1),
            "truncated": self.truncated,
            "optimized_prompt": self.text,
            "cuts": [
                {"start": c.start, "end": c.end, "tokens": c.tokens, "reason": c.reason.value}
                for c in self.cuts
            ],
        }


def optimize_prompt(
    prompt: str,
    budget_tokens: int,
    *,
    question: str | None = None,
    enabled: bool = True,
    count_tokens: TokenCounter | None = None,
) -> OptimizedPrompt:
    """Fit a prompt into a token budget, keeping what the question is about.

    Args:
        prompt: The full prompt: instructions, material, then the question.
        budget_tokens: The most tokens the prompt may have (the context size less the room
            kept for the answer).
        question: The question, if known; it must appear in the prompt to be kept whole as
            its end. None takes the last paragraph of the prompt as the question.
        enabled: False returns the prompt unchanged even when it is over budget, leaving the
            decision to the caller (the `context_truncation` setting).
        count_tokens: An exact token counter from the backend; None uses `estimate_tokens`.

    Returns:
        The prompt to send; never more than `budget_tokens` when `enabled` is true.

    Raises:
        NemoError: `budget_tokens` is below 1.
    """
    if budget_tokens < 1:
        raise NemoError(
            f"the prompt budget is {budget_tokens} tokens, so no prompt can fit",
            fix="raise the model's context size (num_ctx) or lower the room kept for the answer",
        )
    count = count_tokens or estimate_tokens
    original = count(prompt)
    if not enabled or original <= budget_tokens:
        return OptimizedPrompt(prompt, original, original, False, ())
    text, cuts = _Shrinker(prompt, budget_tokens, question, count, original).run()
    return OptimizedPrompt(text, original, count(text), text != prompt, cuts)


_WHITESPACE_RUN = re.compile(r"\s{2,}")
_BOILERPLATE = re.compile(
    r"©|\(c\)\s*\d{4}|\bcopyright\b|all rights reserved|\bdisclaimer\b|"
    r"for informational purposes only|does not constitute .{0,20}advice|"
    r"privacy policy|terms of (?:use|service)|\bcookies?\b|unsubscribe|subscribe to our|"
    r"newsletter|click here|skip to (?:main )?content|back to top|follow us on|"
    r"share (?:this|on)\b|all trademarks|this (?:e-?mail|message) .{0,40}confidential|"
    r"^page \d+ of \d+$",
    re.IGNORECASE,
)
# Every boilerplate line contains one of these (lower case); see `_units_with_cues`.
_BOILERPLATE_CUES = (
    "©",
    "(c)",
    "copyright",
    "rights reserved",
    "disclaimer",
    "informational",
    "constitute",
    "privacy",
    "terms of",
    "cookie",
    "subscribe",
    "newsletter",
    "click here",
    "skip to",
    "back to top",
    "follow us",
    "share ",
    "trademark",
    "confidential",
    "page ",
)
_NAV_SEPARATOR = re.compile(r"\s(?:[|»›•·>/])\s")
# Lines repeated in the material are dropped only when they say something: short repeats
# such as "Yes." or "}" are usually meaningful where they stand.
_MIN_DUPLICATE_CHARS = 16


class _Shrinker:
    """One optimization of one prompt; holds the units and what has been cut so far."""

    def __init__(
        self, prompt: str, budget: int, question: str | None, count: TokenCounter, original: int
    ) -> None:
        self.prompt = prompt
        self.budget = budget
        self.count = count
        self._gap_counts: dict[str, int] = {}
        tail_start, found = _find_question(prompt, question)
        blocks = split_blocks(prompt[:tail_start])
        head = self._instructions(blocks)
        body = block_units(prompt, blocks[1:] if head else blocks)
        tail_end = len(prompt.rstrip())
        tail = Unit(tail_start, tail_end, -2, BlockKind.PROSE)
        self.units: list[Unit] = ([head] if head else []) + body + [tail]
        self.head = 0 if head else None
        self.tail = len(self.units) - 1
        self.body = range(1 if head else 0, self.tail)
        self.starts = [u.start for u in self.units]
        self.lowered = fold_case(prompt)
        self.texts = [prompt[u.start : u.end] for u in self.units]
        self.tokens = [count(t) for t in self.texts]
        ends = [0] + [u.end for u in self.units]
        self.gaps = [prompt[ends[i] : u.start] for i, u in enumerate(self.units)]
        self.gap_tokens = [self._count_gap(g) for g in self.gaps]
        self.trailing = prompt[tail_end:]
        self.cut: list[CutReason | None] = [None] * len(self.units)
        self.whitespace_cuts: list[CutSpan] = []
        self.middle_cuts: dict[int, CutSpan] = {}
        self.marker_tokens = count(elision_marker(original))
        asked = prompt[tail_start:tail_end] if not found or not question else question
        if question and not found:
            asked = f"{question}\n{asked}"
        self.terms = question_terms(asked)
        self.scores: dict[int, float] = {}
        self.bare: str | None = None
        self.bare_cut = CutSpan(0, 0, 0, CutReason.OVER_BUDGET)

    def run(self) -> tuple[str, tuple[CutSpan, ...]]:
        """Apply the stages in order until the prompt fits; return the text and the cuts."""
        for stage in (self._collapse_whitespace, self._drop_duplicates, self._drop_boilerplate):
            stage()
            if self._estimated_total() <= self.budget and self.count(self._render()) <= self.budget:
                return self._render(), self._cut_spans()
        self._keep_most_relevant()
        if self.count(self._render()) > self.budget:
            self._fit_instructions_and_question()
        return self._render(), self._cut_spans()

    def _instructions(self, blocks: list[tuple[int, int, BlockKind]]) -> Unit | None:
        """The first paragraph as the instructions, if it is small enough to be them.

        An opening paragraph over a quarter of the budget is material, not instructions,
        so it is ranked and cut like the rest.
        """
        if not blocks:
            return None
        start, end, kind = blocks[0]
        if self.count(self.prompt[start:end]) > self.budget // 4:
            return None
        return Unit(start, end, -1, kind)

    def _count_gap(self, gap: str) -> int:
        """Token count of a stretch of whitespace; the same few gaps recur, so memoize."""
        if gap not in self._gap_counts:
            self._gap_counts[gap] = self.count(gap)
        return self._gap_counts[gap]

    def _collapse_whitespace(self) -> None:
        """Collapse whitespace runs in the material (not in code blocks, not in pinned parts)."""
        for i in self.body:
            if self.units[i].kind is not BlockKind.CODE:
                new = self._collapse(self.texts[i], self.units[i].start)
                if new != self.texts[i]:
                    self.texts[i] = new
                    self.tokens[i] = self.count(new)
        for i in range(1, len(self.units)):
            new = self._collapse(self.gaps[i], self.units[i - 1].end)
            if new != self.gaps[i]:
                self.gaps[i] = new
                self.gap_tokens[i] = self._count_gap(new)

    def _collapse(self, text: str, base: int) -> str:
        """Collapse each whitespace run in `text` and record it as a cut."""
        parts: list[str] = []
        pos = 0
        for match in _WHITESPACE_RUN.finditer(text):
            run = match.group()
            breaks = run.count("\n")
            kept = "\n\n" if breaks >= 2 else "\n" if breaks == 1 else " "
            if run == kept:
                continue
            saved = max(0, self._count_gap(run) - self._count_gap(kept))
            self.whitespace_cuts.append(
                CutSpan(base + match.start(), base + match.end(), saved, CutReason.WHITESPACE)
            )
            parts.append(text[pos : match.start()])
            parts.append(kept)
            pos = match.end()
        if not parts:
            return text
        parts.append(text[pos:])
        return "".join(parts)

    def _drop_duplicates(self) -> None:
        """Drop paragraphs, then lines and sentences, that repeat earlier text."""
        seen_blocks: set[str] = set()
        seen_units: set[str] = set()
        for i in (self.head, self.tail):
            if i is not None:
                seen_blocks.add(_normal(self.texts[i]))
                for u in split_units(self.texts[i]):
                    seen_units.add(_normal(self.texts[i][u.start : u.end]))
        blocks: dict[int, list[int]] = {}
        for i in self.body:
            blocks.setdefault(self.units[i].block, []).append(i)
        for members in blocks.values():
            key = " ".join(_normal(self.texts[i]) for i in members)
            if key in seen_blocks:
                for i in members:
                    self.cut[i] = CutReason.DUPLICATE
            seen_blocks.add(key)
        for i in self.body:
            if self.cut[i] is None and self.units[i].kind is not BlockKind.CODE:
                key = _normal(self.texts[i])
                if len(key) >= _MIN_DUPLICATE_CHARS and key in seen_units:
                    self.cut[i] = CutReason.DUPLICATE
                seen_units.add(key)
        self._restore_unprofitable(CutReason.DUPLICATE)

    def _drop_boilerplate(self) -> None:
        """Drop boilerplate prose that shares nothing with the question.

        Scores are computed here, once: dropping boilerplate hardly changes how rare each
        question term is, and the ranking stage reuses them.
        """
        self._score()
        for i in self._units_with_cues():
            if (
                self.cut[i] is None
                and self.units[i].kind is BlockKind.PROSE
                and self.scores.get(i, 0.0) <= 0
                and _is_boilerplate(self.texts[i])
            ):
                self.cut[i] = CutReason.BOILERPLATE
        self._restore_unprofitable(CutReason.BOILERPLATE)

    def _units_with_cues(self) -> list[int]:
        """Body units containing a boilerplate cue, found by substring search over the prompt.

        Searching the whole prompt once per cue is ~30x faster than testing every sentence.
        """
        if not self.body:
            return []
        found: set[int] = set()
        start = self.units[self.body.start].start
        end = self.units[self.body.stop - 1].end
        for cue in _BOILERPLATE_CUES:
            at = self.lowered.find(cue, start, end)
            while at != -1:
                i = bisect_right(self.starts, at) - 1
                found.add(i)
                at = self.lowered.find(cue, max(at + 1, self.units[i].end), end)
        return sorted(found)

    def _restore_unprofitable(self, reason: CutReason) -> None:
        """Un-cut runs cut only for `reason` whose marker would cost more than they save."""
        for first, last in self._runs():
            members = range(first, last + 1)
            if all(self.cut[i] is reason for i in members):
                saved = sum(self.tokens[i] for i in members)
                if saved <= self.marker_tokens:
                    for i in members:
                        self.cut[i] = None

    def _score(self) -> None:
        """Score the material still kept against the question."""
        candidates = [i for i in self.body if self.cut[i] is None]
        self.scores = score_units(self.lowered, self.units, candidates, self.terms)

    def _keep_most_relevant(self) -> None:
        """Cut all the material, then keep the most relevant units while they fit."""
        candidates = [i for i in self.body if self.cut[i] is None]
        for i in candidates:
            self.cut[i] = CutReason.LOW_RELEVANCE
        order = sorted(candidates, key=lambda i: (-self.scores[i], i))
        total = self._estimated_total()
        kept: list[int] = []
        for i in order:
            extra = self._cost_of_keeping(i)
            if total + extra <= self.budget:
                self.cut[i] = None
                total += extra
                kept.append(i)
        # The running total is an estimate; the exact count decides, dropping the least
        # relevant kept units until the prompt fits.
        over = self.count(self._render()) - self.budget
        while over > 0 and kept:
            freed = 0
            while freed < over and kept:
                i = kept.pop()
                self.cut[i] = CutReason.LOW_RELEVANCE
                freed += self.tokens[i]
            over = self.count(self._render()) - self.budget

    def _cost_of_keeping(self, i: int) -> int:
        """Change in the estimated total when unit `i`, now cut, is kept."""
        left_cut = i > 0 and self.cut[i - 1] is not None
        right_cut = i + 1 < len(self.units) and self.cut[i + 1] is not None
        cost = self.tokens[i]
        if left_cut and right_cut:
            return cost + self.gap_tokens[i] + self.gap_tokens[i + 1] + self.marker_tokens
        if left_cut:
            return cost + self.gap_tokens[i]
        if right_cut:
            return cost + self.gap_tokens[i + 1]
        return cost - self.marker_tokens

    def _fit_instructions_and_question(self) -> None:
        """Cut the middle of the longer pinned part, then the other; never exceed the budget."""
        for i in self.body:
            if self.cut[i] is CutReason.LOW_RELEVANCE:
                self.cut[i] = CutReason.OVER_BUDGET
        pinned = [self.tail] if self.head is None else [self.head, self.tail]
        pinned.sort(key=lambda i: -self.tokens[i])
        for i in pinned:
            if self._shrink(i, protect=True):
                return
        if self.head is not None:
            self.cut[self.head] = CutReason.OVER_BUDGET
            self.middle_cuts.pop(self.head, None)
        if self._shrink(self.tail, protect=True) or self._shrink(self.tail, protect=False):
            return
        self._keep_only_question_end()

    def _shrink(self, i: int, *, protect: bool) -> bool:
        """Cut the middle of pinned unit `i` to fit; True when the prompt then fits."""
        unit = self.units[i]
        original = self.prompt[unit.start : unit.end]
        keep_from = _last_sentence_start(original) if protect and i == self.tail else None
        target = self.budget - (self.count(self._render()) - self.tokens[i])
        for _ in range(4):
            cut = cut_middle(original, target, self.count, keep_from=keep_from)
            if cut is None:
                return False
            self.texts[i] = cut.text
            self.tokens[i] = self.count(cut.text)
            span = CutSpan(
                unit.start + cut.start, unit.start + cut.end, cut.tokens, CutReason.OVER_BUDGET
            )
            self.middle_cuts[i] = span
            over = self.count(self._render()) - self.budget
            if over <= 0:
                return True
            target -= over
        return False

    def _keep_only_question_end(self) -> None:
        """Last resort for a tiny budget: the question's last words that fit, no markers."""
        unit = self.units[self.tail]
        tail = self.prompt[unit.start : unit.end]
        starts = [m.start() for m in re.finditer(r"\S+", tail)]
        low, high = 0, len(starts)
        while low < high:
            middle = (low + high) // 2
            if self.count(tail[starts[middle] :]) <= self.budget:
                high = middle
            else:
                low = middle + 1
        self.bare = tail[starts[low] :] if low < len(starts) else ""
        cut_to = unit.end - len(self.bare)
        first = self.units[0].start
        self.bare_cut = CutSpan(
            first, cut_to, self.count(self.prompt[first:cut_to]), CutReason.OVER_BUDGET
        )

    def _runs(self) -> list[tuple[int, int]]:
        """(first, last) index of each run of consecutive cut units."""
        runs: list[tuple[int, int]] = []
        first: int | None = None
        for i, reason in enumerate(self.cut):
            if reason is not None and first is None:
                first = i
            elif reason is None and first is not None:
                runs.append((first, i - 1))
                first = None
        if first is not None:
            runs.append((first, len(self.cut) - 1))
        return runs

    def _estimated_total(self) -> int:
        """The prompt's token count as a sum of parts: kept units, their gaps, markers."""
        total = self._count_gap(self.trailing)
        previous_cut = False
        for i, reason in enumerate(self.cut):
            if reason is None:
                total += self.tokens[i] + self.gap_tokens[i]
                previous_cut = False
            elif not previous_cut:
                total += self.gap_tokens[i] + self.marker_tokens
                previous_cut = True
        return total

    def _render(self) -> str:
        """The prompt as it stands: kept units and gaps, a marker for each run of cuts."""
        if self.bare is not None:
            return self.bare
        parts: list[str] = []
        runs = dict(self._runs())
        i = 0
        while i < len(self.units):
            if i in runs:
                last = runs[i]
                removed = sum(self.tokens[j] for j in range(i, last + 1))
                removed += sum(self.gap_tokens[j] for j in range(i + 1, last + 1))
                parts.append(self.gaps[i])
                parts.append(elision_marker(removed))
                after = self.gaps[last + 1] if last + 1 < len(self.units) else self.trailing
                for j in range(i + 1, last + 1):
                    if self.gaps[j].count("\n") > after.count("\n"):
                        after = self.gaps[j]
                if last + 1 < len(self.units):
                    parts.append(after)
                    parts.append(self.texts[last + 1])
                    i = last + 2
                else:
                    parts.append(after)
                    return "".join(parts)
            else:
                parts.append(self.gaps[i])
                parts.append(self.texts[i])
                i += 1
        parts.append(self.trailing)
        return "".join(parts)

    def _cut_spans(self) -> tuple[CutSpan, ...]:
        """The cuts as spans of the original prompt, merging neighbours cut for one reason."""
        if self.bare is not None:
            return (self.bare_cut,)
        spans: list[CutSpan] = []
        for first, last in self._runs():
            start = first
            for j in range(first, last + 2):
                if j > last or self.cut[j] is not self.cut[start]:
                    reason = self.cut[start]
                    assert reason is not None
                    end = self.units[j - 1].end
                    tokens = sum(self.tokens[k] for k in range(start, j))
                    tokens += sum(self.gap_tokens[k] for k in range(start + 1, j))
                    spans.append(CutSpan(self.units[start].start, end, tokens, reason))
                    start = j
        spans.extend(s for i, s in self.middle_cuts.items() if self.cut[i] is None)
        covered = sorted((s.start, s.end) for s in spans)
        spans.extend(s for s in self.whitespace_cuts if not _inside(s, covered))
        return tuple(sorted(spans, key=lambda s: s.start))


def _find_question(prompt: str, question: str | None) -> tuple[int, bool]:
    """Where the question starts in the prompt, and whether the given question was found.

    A question found in the prompt starts at the beginning of its line (so a "Question:"
    label stays with it); otherwise the last paragraph is the question.
    """
    if question and question.strip():
        found = prompt.rfind(question.strip())
        if found >= 0:
            return prompt.rfind("\n", 0, found) + 1, True
    blocks = split_blocks(prompt)
    return (blocks[-1][0] if blocks else 0), False


def _last_sentence_start(text: str) -> int:
    """Offset of the last sentence (or line) of a text."""
    units = split_units(text)
    return units[-1].start if units else 0


def _normal(text: str) -> str:
    """Text with whitespace runs made single spaces, for spotting repeats."""
    return " ".join(text.split())


def _is_boilerplate(text: str) -> bool:
    """True for copyright, disclaimer, cookie, navigation and similar lines."""
    if _BOILERPLATE.search(text):
        return True
    pieces = _NAV_SEPARATOR.split(text)
    return len(pieces) >= 4 and all(len(p.split()) <= 4 for p in pieces)


def _inside(span: CutSpan, covered: list[tuple[int, int]]) -> bool:
    """True when `span` lies within one of the sorted, non-overlapping `covered` ranges."""
    slot = bisect_right(covered, (span.start, sys.maxsize)) - 1
    return slot >= 0 and span.end <= covered[slot][1]
