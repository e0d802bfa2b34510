"""The stages that shrink an over-budget prompt, in order, until it fits.

1. whitespace: runs of blank lines and spaces are collapsed (code blocks are left alone);
2. duplicate: paragraphs, then lines and sentences, that repeat earlier text are dropped;
3. boilerplate: copyright, disclaimer, navigation and similar lines are dropped;
4. low relevance: the rest is ranked by what it shares with the question
   (`nemo_tui.core.prompt.relevance`) and the most relevant units are kept while they fit.

The instructions (the first paragraph, when small) and the question (the end of the prompt)
are pinned: no stage drops them. Only when they alone are over budget is the middle of the
longer one cut (`nemo_tui.core.prompt.elision.cut_middle`), keeping the question's last sentence
whole where the budget allows. Every decision is confirmed with an exact count of the
rendered prompt, so the result never exceeds the budget.
"""

from __future__ import annotations

import re

from nemo_tui.core.prompt.boilerplate import CUES, is_boilerplate
from nemo_tui.core.prompt.elision import CutReason, CutSpan, cut_middle, elision_marker
from nemo_tui.core.prompt.layout import PromptLayout
from nemo_tui.core.prompt.relevance import fold_case, question_terms, score_units
from nemo_tui.core.prompt.segments import BlockKind, Unit, block_units, split_blocks, split_units
from nemo_tui.core.prompt.tokens import TokenCounter

_WHITESPACE_RUN = re.compile(r"\s{2,}")
_WORD = re.compile(r"\S+")
# Lines repeated in the material are dropped only when they say something: short repeats
# such as "Yes." or "}" are usually meaningful where they stand.
_MIN_DUPLICATE_CHARS = 16
# Retries when a middle cut lands a little over budget (counts are not exactly additive).
_SHRINK_ATTEMPTS = 4


def fit_prompt(
    prompt: str, budget: int, question: str | None, count: TokenCounter, original_tokens: int
) -> tuple[str, tuple[CutSpan, ...]]:
    """Shrink an over-budget prompt to fit.

    Args:
        prompt: The prompt, over budget.
        budget: The most tokens the result may have (at least 1).
        question: The question if known (see `nemo_tui.core.prompt.optimizer.optimize_prompt`).
        count: The token counter.
        original_tokens: `count(prompt)`, which sizes the elision markers.

    Returns:
        The shrunk prompt and the spans of the original that were cut.
    """
    return _Fitter(prompt, budget, question, count, original_tokens).run()


class _Fitter:
    """One fitting of one prompt: the layout, which units are pinned, and the question."""

    def __init__(
        self, prompt: str, budget: int, question: str | None, count: TokenCounter, original: int
    ) -> None:
        self.prompt = prompt
        self.budget = budget
        self.count = count
        tail_start, found, blocks = _find_question(prompt, question)
        head = self._instructions(blocks)
        body = block_units(prompt, blocks[1:] if head else blocks)
        tail_end = len(prompt.rstrip())
        tail = Unit(tail_start, tail_end, -2, BlockKind.PROSE)
        units = ([head] if head else []) + body + [tail]
        self.layout = PromptLayout(prompt, units, count, count(elision_marker(original)))
        self.head = 0 if head else None
        self.tail = len(units) - 1
        self.body = range(1 if head else 0, self.tail)
        self.lowered = fold_case(prompt)
        asked = question if question and found else prompt[tail_start:tail_end]
        if question and not found:
            asked = f"{question}\n{asked}"
        self.terms = question_terms(asked)
        self.scores: dict[int, float] = {}

    def run(self) -> tuple[str, tuple[CutSpan, ...]]:
        """Apply the stages in order until the prompt fits; return the text and the cuts."""
        layout = self.layout
        for stage in (self._collapse_whitespace, self._drop_duplicates, self._drop_boilerplate):
            stage()
            if layout.estimated_total() <= self.budget and self._over() <= 0:
                return layout.render(), layout.cut_spans()
        self._keep_most_relevant()
        if self._over() > 0:
            self._fit_pinned()
        return layout.render(), layout.cut_spans()

    def _over(self) -> int:
        """How many tokens the prompt as it stands is over budget (negative when under)."""
        return self.count(self.layout.render()) - self.budget

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

    def _collapse_whitespace(self) -> None:
        """Collapse whitespace runs in the material and between units (not in code blocks).

        One search over the material finds every run; each lies inside a unit or a gap,
        since units start and end with visible characters.
        """
        layout = self.layout
        units = layout.units
        start = units[0].end if self.head is not None else units[0].start
        edits: dict[tuple[bool, int], list[tuple[int, int, str]]] = {}
        for match in _WHITESPACE_RUN.finditer(self.prompt, start, units[self.tail].start):
            run = match.group()
            breaks = run.count("\n")
            kept = "\n\n" if breaks >= 2 else "\n" if breaks == 1 else " "
            i = layout.unit_at(match.start())
            in_unit = match.start() < units[i].end
            if run == kept or (in_unit and units[i].kind is BlockKind.CODE):
                continue
            saved = max(0, layout.count_gap(run) - layout.count_gap(kept))
            layout.whitespace_cuts.append(
                CutSpan(match.start(), match.end(), saved, CutReason.WHITESPACE)
            )
            key = (in_unit, i if in_unit else i + 1)
            edits.setdefault(key, []).append((match.start(), match.end(), kept))
        for (in_unit, i), changes in edits.items():
            span_start = units[i].start if in_unit else (units[i - 1].end if i else 0)
            span_end = units[i].end if in_unit else units[i].start
            new = _apply(self.prompt, span_start, span_end, changes)
            if in_unit:
                layout.texts[i] = new
                layout.tokens[i] = self.count(new)
            else:
                layout.gaps[i] = new
                layout.gap_tokens[i] = layout.count_gap(new)

    def _drop_duplicates(self) -> None:
        """Drop paragraphs, then lines and sentences, that repeat earlier text."""
        layout = self.layout
        seen_blocks: set[str] = set()
        seen_units: set[str] = set()
        for i in (self.head, self.tail):
            if i is not None:
                seen_blocks.add(_normal(layout.texts[i]))
                for u in split_units(layout.texts[i]):
                    seen_units.add(_normal(layout.texts[i][u.start : u.end]))
        blocks: dict[int, list[int]] = {}
        for i in self.body:
            blocks.setdefault(layout.units[i].block, []).append(i)
        for members in blocks.values():
            key = " ".join(_normal(layout.texts[i]) for i in members)
            if key in seen_blocks:
                for i in members:
                    layout.cut[i] = CutReason.DUPLICATE
            seen_blocks.add(key)
        for i in self.body:
            if layout.cut[i] is None and layout.units[i].kind is not BlockKind.CODE:
                key = _normal(layout.texts[i])
                if len(key) >= _MIN_DUPLICATE_CHARS and key in seen_units:
                    layout.cut[i] = CutReason.DUPLICATE
                seen_units.add(key)
        self._restore_unprofitable(CutReason.DUPLICATE)

    def _drop_boilerplate(self) -> None:
        """Drop boilerplate prose that shares nothing with the question.

        Scores are computed here, once: dropping boilerplate hardly changes how rare each
        question term is, and the ranking stage reuses them.
        """
        layout = self.layout
        candidates = [i for i in self.body if layout.cut[i] is None]
        self.scores = score_units(self.lowered, layout.units, candidates, self.terms)
        for i in self._units_with_cues():
            if (
                layout.cut[i] is None
                and layout.units[i].kind is BlockKind.PROSE
                and self.scores.get(i, 0.0) <= 0
                and is_boilerplate(layout.texts[i])
            ):
                layout.cut[i] = CutReason.BOILERPLATE
        self._restore_unprofitable(CutReason.BOILERPLATE)

    def _units_with_cues(self) -> list[int]:
        """Material units holding a boilerplate cue, found by substring search of the prompt.

        One search of the whole prompt per cue is ~30x faster than testing every sentence.
        """
        if not self.body:
            return []
        units = self.layout.units
        found: set[int] = set()
        start = units[self.body.start].start
        end = units[self.body.stop - 1].end
        for cue in CUES:
            at = self.lowered.find(cue, start, end)
            while at != -1:
                i = self.layout.unit_at(at)
                found.add(i)
                at = self.lowered.find(cue, max(at + 1, units[i].end), end)
        return sorted(found)

    def _restore_unprofitable(self, reason: CutReason) -> None:
        """Un-cut runs cut only for `reason` whose marker would cost more than they save."""
        layout = self.layout
        for first, last in layout.runs():
            members = range(first, last + 1)
            only_reason = all(layout.cut[i] is reason for i in members)
            if only_reason and sum(layout.tokens[first : last + 1]) <= layout.marker_tokens:
                for i in members:
                    layout.cut[i] = None

    def _keep_most_relevant(self) -> None:
        """Cut all the material, then keep the most relevant units while they fit.

        Of equally relevant units the shorter goes first, leaving more of the budget for the
        next; units that share nothing with the question fill what is left in document order,
        so they come in one stretch rather than scattered between markers.
        """
        layout = self.layout
        candidates = [i for i in self.body if layout.cut[i] is None]
        for i in candidates:
            layout.cut[i] = CutReason.LOW_RELEVANCE
        total = layout.estimated_total()
        kept: list[int] = []
        scores = self.scores

        def rank(i: int) -> tuple[float, int, int]:
            return (-scores[i], layout.tokens[i] if scores[i] > 0 else 0, i)

        for i in sorted(candidates, key=rank):
            extra = layout.cost_of_keeping(i)
            if total + extra <= self.budget:
                layout.cut[i] = None
                total += extra
                kept.append(i)
        # The running total is a sum of parts; the exact count decides, dropping the least
        # relevant kept units until the prompt fits.
        over = self._over()
        while over > 0 and kept:
            freed = 0
            while freed < over and kept:
                i = kept.pop()
                layout.cut[i] = CutReason.LOW_RELEVANCE
                freed += layout.tokens[i]
            over = self._over()

    def _fit_pinned(self) -> None:
        """Fit when the instructions and question alone are over budget.

        The longer of the two is cut in the middle first; failing that, the instructions go
        and the question is cut, keeping its last sentence if it fits; failing that, only the
        question's last words are kept.
        """
        layout = self.layout
        for i in self.body:
            if layout.cut[i] is CutReason.LOW_RELEVANCE:
                layout.cut[i] = CutReason.OVER_BUDGET
        pinned = [self.tail] if self.head is None else [self.head, self.tail]
        pinned.sort(key=lambda i: -layout.tokens[i])
        for i in pinned:
            if self._shrink(i, protect=True):
                return
        if self.head is not None:
            layout.cut[self.head] = CutReason.OVER_BUDGET
            layout.middle_cuts.pop(self.head, None)
        if self._shrink(self.tail, protect=True) or self._shrink(self.tail, protect=False):
            return
        self._keep_question_end()

    def _shrink(self, i: int, *, protect: bool) -> bool:
        """Cut the middle of pinned unit `i`; True when the prompt then fits."""
        layout = self.layout
        unit = layout.units[i]
        original = self.prompt[unit.start : unit.end]
        keep_from = _last_sentence_start(original) if protect and i == self.tail else None
        target = layout.tokens[i] - self._over()
        for _ in range(_SHRINK_ATTEMPTS):
            cut = cut_middle(original, target, self.count, keep_from=keep_from)
            if cut is None:
                return False
            layout.texts[i] = cut.text
            layout.tokens[i] = self.count(cut.text)
            layout.middle_cuts[i] = CutSpan(
                unit.start + cut.start, unit.start + cut.end, cut.tokens, CutReason.OVER_BUDGET
            )
            over = self._over()
            if over <= 0:
                return True
            target -= over
        return False

    def _keep_question_end(self) -> None:
        """Last resort for a tiny budget: the question's last words that fit, no markers."""
        layout = self.layout
        unit = layout.units[self.tail]
        tail = self.prompt[unit.start : unit.end]
        starts = [m.start() for m in _WORD.finditer(tail)]
        low, high = 0, len(starts)
        while low < high:
            middle = (low + high) // 2
            if self.count(tail[starts[middle] :]) <= self.budget:
                high = middle
            else:
                low = middle + 1
        layout.bare = tail[starts[low] :] if low < len(starts) else ""
        cut_to = unit.end - len(layout.bare)
        first = layout.units[0].start
        tokens = self.count(self.prompt[first:cut_to])
        layout.bare_cut = CutSpan(first, cut_to, tokens, CutReason.OVER_BUDGET)


def _find_question(
    prompt: str, question: str | None
) -> tuple[int, bool, list[tuple[int, int, BlockKind]]]:
    """Where the question starts, whether the given question was found, and the blocks before.

    A question found in the prompt starts at the beginning of its line (so a "Question:"
    label stays with it); otherwise the last paragraph is the question.
    """
    if question and question.strip():
        found = prompt.rfind(question.strip())
        if found >= 0:
            start = prompt.rfind("\n", 0, found) + 1
            return start, True, split_blocks(prompt[:start])
    blocks = split_blocks(prompt)
    return (blocks[-1][0] if blocks else 0), False, blocks[:-1]


def _apply(text: str, start: int, end: int, changes: list[tuple[int, int, str]]) -> str:
    """`text[start:end]` with each (start, end, replacement) change applied, in order."""
    parts: list[str] = []
    pos = start
    for change_start, change_end, replacement in changes:
        parts += (text[pos:change_start], replacement)
        pos = change_end
    parts.append(text[pos:end])
    return "".join(parts)


def _last_sentence_start(text: str) -> int:
    """Offset of the last sentence (or line) of a text."""
    units = split_units(text)
    return units[-1].start if units else 0


def _normal(text: str) -> str:
    """Text with whitespace runs made single spaces, for spotting repeats."""
    return " ".join(text.split())
