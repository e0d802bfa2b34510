"""A focusable list of one-line rows with a cursor, drawn as one piece of text."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget


class CursorList(Widget, can_focus=True):
    """Rows under an optional header line; ↑/↓, home and end move the cursor, a click moves it.

    The base of the settings and cached-models panels. Textual's `SelectionList` and
    `DataTable` bring scrolling, sorting and per-cell styling these short lists do not need,
    and cost several times as much to start; this draws all its rows at once. Subclasses give
    the rows (`rows`, and `header`) and react to a click on one (`row_clicked`).
    """

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    DEFAULT_CSS = """
    CursorList {
        height: auto;
    }
    CursorList > .cursor-list--header {
        text-style: bold;
    }
    CursorList > .cursor-list--cursor {
        background: $block-cursor-blurred-background;
    }
    CursorList:focus > .cursor-list--cursor {
        color: $block-cursor-foreground;
        background: $block-cursor-background;
        text-style: $block-cursor-text-style;
    }
    """

    COMPONENT_CLASSES = {"cursor-list--header", "cursor-list--cursor"}

    cursor: reactive[int] = reactive(0)
    """The row under the cursor (0 is the first row under the header)."""

    def rows(self) -> list[Content]:
        """The rows, one line each."""
        raise NotImplementedError

    def header(self) -> Content | None:
        """A line above the rows, or None."""
        return None

    def row_clicked(self, row: int) -> None:
        """A click landed on a row (the cursor is already on it)."""

    def validate_cursor(self, cursor: int) -> int:
        """Keep the cursor on a row."""
        return max(0, min(cursor, len(self.rows()) - 1))

    def render(self) -> Content:
        """The header, then the rows, the cursor's row highlighted across the full width."""
        width = self.content_size.width
        rows = self.rows()
        if rows:
            # The rows may have changed since the cursor was last set.
            at = min(self.cursor, len(rows) - 1)
            cursor_style = self.get_visual_style("cursor-list--cursor")
            rows[at] = rows[at].truncate(width, pad=True).stylize(cursor_style)
        header = self.header()
        if header is not None:
            rows.insert(0, header.stylize(self.get_visual_style("cursor-list--header")))
        return Content("\n").join(rows)

    def on_click(self, event: events.Click) -> None:
        """Move the cursor to the clicked row and let the subclass act on it."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        row = offset.y - (0 if self.header() is None else 1)
        if 0 <= row < len(self.rows()):
            self.cursor = row
            self.row_clicked(row)

    def action_cursor_up(self) -> None:
        """Up one row."""
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        """Down one row."""
        self.cursor += 1

    def action_first(self) -> None:
        """To the first row."""
        self.cursor = 0

    def action_last(self) -> None:
        """To the last row."""
        self.cursor = len(self.rows()) - 1
