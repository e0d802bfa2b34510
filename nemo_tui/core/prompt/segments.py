"""Splitting a prompt into the pieces the optimizer keeps or drops whole.

A prompt is read as blocks (paragraphs, fenced code blocks, tables) and each block as units:
a code block is one unit so it is never split; a table gives one unit per row, its header
row marked; prose gives one unit per sentence, with list items and headings on their own.
Units never start or end inside a word, so dropping units can never cut one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class BlockKind(StrEnum):
    """What a block of a prompt holds."""

    PROSE = "prose"
    CODE = "code"
    TABLE = "table"


@dataclass(frozen=True)
class Unit:
    """The smallest piece of a prompt that is kept or dropped whole.

    Attributes:
        start: Offset of its first character in the text it was split from.
        end: Offset just past its last character (trailing whitespace excluded).
        block: Index of the block it belongs to.
        kind: The kind of that block.
        header: True for a table's header row (and its Markdown rule line).
    """

    start: int
    end: int
    block: int
    kind: BlockKind
    header: bool = False


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST_OR_HEADING = re.compile(r"\s*(?:[-*+•]\s|\d{1,3}[.)]\s|#{1,6}\s|>\s?)")
_TABLE_RULE = re.compile(r"\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
# A sentence ends at . ! or ? (optionally followed by closing quotes or brackets) before
# whitespace and a capital, digit, quote or bracket; that keeps "e.g. the" and "3.5" together.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+(?=[A-Z0-9\"'(\[])")
_SPACE = re.compile(r"\s")
# Longest prose unit; longer runs without a sentence end are split into lines, long lines
# at spaces.
_MAX_UNIT_CHARS = 800


def split_blocks(text: str) -> list[tuple[int, int, BlockKind]]:
    """Split a text into blocks separated by blank lines, each fenced code block being one.

    An unclosed fence is read as plain text so it cannot swallow the rest of the prompt.

    Args:
        text: The text to split.

    Returns:
        (start, end, kind) for each block in order; `end` excludes the trailing newline.
    """
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    blocks: list[tuple[int, int, BlockKind]] = []
    para_start: int | None = None
    para_lines: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        close = _closing_fence(lines, i, fence.group(1)) if fence else None
        if close is not None or not line.strip():
            if para_start is not None:
                blocks.append(_paragraph(text, para_start, offsets[i], para_lines))
                para_start, para_lines = None, []
            if close is not None:
                blocks.append((offsets[i], _strip_end(text, offsets[close + 1]), BlockKind.CODE))
                i = close + 1
                continue
        else:
            if para_start is None:
                para_start = offsets[i]
            para_lines.append(line)
        i += 1
    if para_start is not None:
        blocks.append(_paragraph(text, para_start, offsets[-1], para_lines))
    return blocks


def split_units(text: str, base: int = 0) -> list[Unit]:
    """Split a text into units (see the module docstring).

    Args:
        text: The text to split.
        base: Added to every offset, for a text cut out of a larger one.

    Returns:
        The units in order, with offsets into the larger text.
    """
    return block_units(text, split_blocks(text), base)


def block_units(text: str, blocks: list[tuple[int, int, BlockKind]], base: int = 0) -> list[Unit]:
    """Split already-found blocks of a text into units.

    Args:
        text: The text the blocks were found in.
        blocks: (start, end, kind) blocks from `split_blocks`, or some of them.
        base: Added to every offset, for a text cut out of a larger one.

    Returns:
        The units in order; `Unit.block` is the index in `blocks`.
    """
    units: list[Unit] = []
    for index, (start, end, kind) in enumerate(blocks):
        if kind is BlockKind.CODE:
            units.append(Unit(base + start, base + end, index, kind))
        elif kind is BlockKind.TABLE:
            units.extend(_table_rows(text, start, end, index, base))
        else:
            for s, e in _prose_pieces(text, start, end):
                units.append(Unit(base + s, base + e, index, kind))
    return units


def _closing_fence(lines: list[str], opener: int, marker: str) -> int | None:
    """Index of the line that closes the fence opened at `opener`, or None if it never closes."""
    char = marker[0]
    for j in range(opener + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(marker) and not stripped.strip(char):
            return j
    return None


def _strip_end(text: str, end: int) -> int:
    """Move `end` back over trailing whitespace."""
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end


def _paragraph(text: str, start: int, end: int, lines: list[str]) -> tuple[int, int, BlockKind]:
    """A paragraph block, recognised as a table when its lines look like rows."""
    return (start, _strip_end(text, end), BlockKind.TABLE if _is_table(lines) else BlockKind.PROSE)


def _is_table(lines: list[str]) -> bool:
    """True for Markdown/pipe tables, tab-separated rows, or three or more CSV-like lines."""
    if len(lines) < 2:
        return False
    piped = sum(1 for line in lines if "|" in line or "\t" in line)
    if piped >= 0.8 * len(lines):
        return True
    commas = {line.count(",") for line in lines}
    return len(lines) >= 3 and len(commas) == 1 and commas.pop() >= 1


def _table_rows(text: str, start: int, end: int, block: int, base: int) -> list[Unit]:
    """One unit per row; the first row, and a Markdown rule right under it, are headers."""
    rows: list[Unit] = []
    pos = start
    for number, line in enumerate(text[start:end].split("\n")):
        row_end = pos + len(line.rstrip())
        if row_end > pos:
            header = number == 0 or (number == 1 and bool(_TABLE_RULE.match(line)))
            rows.append(Unit(base + pos, base + row_end, block, BlockKind.TABLE, header))
        pos += len(line) + 1
    return rows


def _prose_pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentences of a paragraph; list items and headings start a new piece of their own."""
    groups: list[tuple[int, int]] = []
    pos = start
    group_start = start
    for line in text[start:end].split("\n"):
        if pos > group_start and _LIST_OR_HEADING.match(line):
            groups.append((group_start, _strip_end(text, pos)))
            group_start = pos
        pos += len(line) + 1
    groups.append((group_start, end))
    pieces: list[tuple[int, int]] = []
    for g_start, g_end in groups:
        piece_start = g_start
        for match in _SENTENCE_END.finditer(text, g_start, g_end):
            pieces += _bounded(text, _skip_space(text, piece_start), _strip_end(text, match.end()))
            piece_start = match.end()
        pieces += _bounded(text, _skip_space(text, piece_start), g_end)
    return [(s, e) for s, e in pieces if e > s]


def _bounded(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A piece over `_MAX_UNIT_CHARS` split into its lines, and long lines at spaces.

    Text without sentence ends (logs, lists without markers) would otherwise be one unit,
    kept or dropped whole however large.
    """
    if end - start <= _MAX_UNIT_CHARS:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    pos = start
    for line in text[start:end].split("\n"):
        line_end = pos + len(line.rstrip())
        line_start = _skip_space(text, pos)
        while line_end - line_start > _MAX_UNIT_CHARS:
            limit = line_start + _MAX_UNIT_CHARS
            cut = max(
                text.rfind(" ", line_start + 1, limit), text.rfind("\t", line_start + 1, limit)
            )
            if cut == -1:
                # One word longer than the limit: cut after it, never inside it.
                found = _SPACE.search(text, limit, line_end)
                cut = found.start() if found else line_end
            pieces.append((line_start, _strip_end(text, cut)))
            line_start = _skip_space(text, cut)
        if line_end > line_start:
            pieces.append((line_start, line_end))
        pos += len(line) + 1
    return pieces


def _skip_space(text: str, pos: int) -> int:
    """Move `pos` forward over whitespace."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
