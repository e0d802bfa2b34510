"""A line of status text that takes no room while it is empty."""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


class InfoLine(Static):
    """Static text that hides itself when set to an empty string, so a small pane keeps its rows."""

    DEFAULT_CSS = """
    InfoLine {
        height: auto;
    }
    InfoLine.-blank {
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="-blank")

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        """Show the text; an empty text hides the line."""
        super().update(content, layout=layout)
        self.set_class(not content, "-blank")
