"""A prompt laid out as units and the whitespace between them, with what has been cut.

The optimizer's stages (`nemo_tui.core.prompt.fitter`) decide what to cut; this module keeps the
bookkeeping: the current text and token count of every unit and gap, which units are cut and
why, how the prompt renders (one marker per run of cut units), what it is estimated to cost,
and the cuts as spans of the original prompt.
"""

from __future__ import annotations

import sys
from bisect import bisect_right

from nemo_tui.core.prompt.elision import CutReason, CutSpan, elision_marker
from nemo_tui.core.prompt.segments import Unit
from nemo_tui.core.prompt.tokens import TokenCounter


class PromptLayout:
    """The units of one prompt, what is cut, and how the result reads.

    Attributes:
        prompt: The original prompt.
        units: Its units in order; together with the gaps they cover the whole prompt.
        texts: The current text of each unit (whitespace may have been collapsed).
        tokens: The token count of each unit's current text.
        gaps: The whitespace before each unit (after the previous one).
        gap_tokens: The token count of each gap.
        trailing: The whitespace after the last unit.
        cut: Why each unit is cut, or None while it is kept.
        whitespace_cuts: Whitespace runs collapsed inside kept text.
        middle_cuts: For units shortened in the middle, the span cut out of them.
        bare: When set, the whole result (the last resort for tiny budgets), cutting everything
            before it as `bare_cut`.
    """

    def __init__(self, prompt: str, units: list[Unit], count: TokenCounter, marker_tokens: int):
        self.prompt = prompt
        self.units = units
        self.count = count
        self.marker_tokens = marker_tokens
        self._gap_counts: dict[str, int] = {}
        self.starts = [u.start for u in units]
        self.texts = [prompt[u.start : u.end] for u in units]
        self.tokens = [count(t) for t in self.texts]
        ends = [0] + [u.end for u in units]
        self.gaps = [prompt[ends[i] : u.start] for i, u in enumerate(units)]
        self.gap_tokens = [self.count_gap(g) for g in self.gaps]
        self.trailing = prompt[ends[-1] :]
        self.cut: list[CutReason | None] = [None] * len(units)
        self.whitespace_cuts: list[CutSpan] = []
        self.middle_cuts: dict[int, CutSpan] = {}
        self.bare: str | None = None
        self.bare_cut = CutSpan(0, 0, 0, CutReason.OVER_BUDGET)

    def count_gap(self, gap: str) -> int:
        """Token count of a stretch of whitespace; the same few gaps recur, so memoized."""
        if gap not in self._gap_counts:
            self._gap_counts[gap] = self.count(gap)
        return self._gap_counts[gap]

    def unit_at(self, offset: int) -> int:
        """Index of the unit that starts at or before an offset of the prompt."""
        return bisect_right(self.starts, offset) - 1

    def runs(self) -> list[tuple[int, int]]:
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

    def estimated_total(self) -> int:
        """The result's tokens as a sum of parts: kept units with their gaps, and markers.

        Counts are not exactly additive, so callers confirm with `count(render())`.
        """
        total = self.count_gap(self.trailing)
        previous_cut = False
        for i, reason in enumerate(self.cut):
            if reason is None:
                total += self.tokens[i] + self.gap_tokens[i]
                previous_cut = False
            elif not previous_cut:
                total += self.gap_tokens[i] + self.marker_tokens
                previous_cut = True
        return total

    def cost_of_keeping(self, i: int) -> int:
        """Change in `estimated_total` if unit `i`, now cut, were kept."""
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

    def render(self) -> str:
        """The prompt as it stands: kept units and gaps, one marker per run of cut units.

        After a marker comes the widest gap the run spanned, so a cut across paragraphs
        still leaves a paragraph break.
        """
        if self.bare is not None:
            return self.bare
        parts: list[str] = []
        runs = dict(self.runs())
        i = 0
        while i < len(self.units):
            if i not in runs:
                parts += (self.gaps[i], self.texts[i])
                i += 1
                continue
            last = runs[i]
            removed = sum(self.tokens[i : last + 1]) + sum(self.gap_tokens[i + 1 : last + 1])
            after = self.gaps[last + 1] if last + 1 < len(self.units) else self.trailing
            for gap in self.gaps[i + 1 : last + 1]:
                if gap.count("\n") > after.count("\n"):
                    after = gap
            parts += (self.gaps[i], elision_marker(removed), after)
            if last + 1 == len(self.units):
                return "".join(parts)
            parts.append(self.texts[last + 1])
            i = last + 2
        parts.append(self.trailing)
        return "".join(parts)

    def cut_spans(self) -> tuple[CutSpan, ...]:
        """The cuts as spans of the original prompt, merging neighbours cut for one reason."""
        if self.bare is not None:
            return (self.bare_cut,)
        spans: list[CutSpan] = []
        for first, last in self.runs():
            start = first
            for j in range(first + 1, last + 2):
                if j <= last and self.cut[j] is self.cut[start]:
                    continue
                reason = self.cut[start]
                if reason is not None:
                    tokens = sum(self.tokens[start:j]) + sum(self.gap_tokens[start + 1 : j])
                    end = self.units[j - 1].end
                    spans.append(CutSpan(self.units[start].start, end, tokens, reason))
                start = j
        spans.extend(s for i, s in self.middle_cuts.items() if self.cut[i] is None)
        covered = sorted((s.start, s.end) for s in spans)
        spans.extend(s for s in self.whitespace_cuts if not _inside(s, covered))
        return tuple(sorted(spans, key=lambda s: s.start))


def _inside(span: CutSpan, covered: list[tuple[int, int]]) -> bool:
    """True when `span` lies within one of the sorted, non-overlapping `covered` ranges."""
    slot = bisect_right(covered, (span.start, sys.maxsize)) - 1
    return slot >= 0 and span.end <= covered[slot][1]
