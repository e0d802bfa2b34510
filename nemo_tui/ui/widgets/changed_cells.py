"""Which cells of a widget's drawing changed, so that a refresh repaints only those.

Textual sends every cell of a refreshed region to the terminal, changed or not. A panel
refreshed whole on every gauge tick writes kilobytes a second to an idle terminal, and over SSH
every byte travels. A widget that keeps its last drawing as lines compares the next drawing with
it and refreshes only the span of each line that differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rich.cells import cell_len
from textual.geometry import Region
from textual.widget import Widget


class StyledSpan(Protocol):
    """A style over a range of characters, as in `Content.spans` and `rich.text.Text.spans`."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def style(self) -> object: ...


class StyledLine(Protocol):
    """One line of text with its styles: a Textual `Content` or a Rich `Text`."""

    @property
    def plain(self) -> str: ...

    @property
    def spans(self) -> Sequence[StyledSpan]: ...


Cell = tuple[str, tuple[object, ...]]
"""A character and the styles over it, in the order the spans give them."""


def cells(line: StyledLine) -> list[Cell]:
    """The characters of a line, each with the styles that cover it."""
    plain = line.plain
    styles: list[list[object]] = [[] for _ in plain]
    for span in line.spans:
        for index in range(max(0, span.start), min(len(plain), span.end)):
            styles[index].append(span.style)
    return [(char, tuple(style)) for char, style in zip(plain, styles, strict=True)]


def changed_regions(
    before: Sequence[StyledLine], after: Sequence[StyledLine], width: int
) -> list[Region]:
    """The regions to refresh so the screen shows `after` where it showed `before`.

    One region per line that differs, from its first to its last differing cell, in the widget's
    content coordinates. A line holding wide characters (where characters and cells do not
    line up) is refreshed across `width`. Styles are compared span by span, so the same look
    built from other spans counts as a change: at worst a repaint too many, never one too few.

    Args:
        before: The lines on screen, top to bottom.
        after: The lines to show.
        width: The widget's content width.
    """
    regions: list[Region] = []
    for y in range(max(len(before), len(after))):
        old = before[y] if y < len(before) else None
        new = after[y] if y < len(after) else None
        old_cells = cells(old) if old is not None else []
        new_cells = cells(new) if new is not None else []
        if old_cells == new_cells:
            continue
        if any(line is not None and cell_len(line.plain) != len(line.plain) for line in (old, new)):
            regions.append(Region(0, y, width, 1))
            continue
        # Cells are compared column by column: a line that grew or shrank moves what follows.
        columns = max(len(old_cells), len(new_cells))
        differing = [
            x
            for x in range(columns)
            if x >= len(old_cells) or x >= len(new_cells) or old_cells[x] != new_cells[x]
        ]
        regions.append(Region(differing[0], y, differing[-1] - differing[0] + 1, 1))
    return regions


def repaint_changes(
    widget: Widget,
    previous: tuple[int, Sequence[StyledLine]] | None,
    lines_at: Callable[[int], Sequence[StyledLine]],
) -> None:
    """Repaint only the cells of `widget` that differ from the lines it drew last.

    Args:
        widget: The widget to repaint.
        previous: The width it last drew at and the lines it drew, or None when it has not drawn
            yet.
        lines_at: Builds the lines it would draw now at a width.
    """
    width = widget.content_size.width
    if previous is None or previous[0] != width:
        # Not drawn yet at this width: the next layout draws it whole.
        widget.refresh(layout=True)
        return
    lines = lines_at(width)
    if len(lines) != len(previous[1]):
        # The height follows the number of lines.
        widget.refresh(layout=True)
    elif regions := changed_regions(previous[1], lines, width):
        widget.refresh(*regions)
