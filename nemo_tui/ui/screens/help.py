"""The help screen: every key binding of the dashboard on one screen.

Imported when it is first opened, not at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from nemo_tui.ui.key_help import KeyHelp


class HelpScreen(ModalScreen[None]):
    """All bindings in a table; Esc, q, f1 or ? closes it."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close", show=False)]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 90%;
        max-width: 100;
        height: 90%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen DataTable {
        height: 1fr;
    }
    """

    def __init__(self, lines: Sequence[KeyHelp]) -> None:
        super().__init__()
        self._lines = lines

    def compose(self) -> ComposeResult:
        """The table, with a line on how to close it."""
        with Vertical() as box:
            box.border_title = "Keys"
            yield Static("Every action is also in the command palette (ctrl+p). Esc closes.")
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "Action", "Works")
            for line in self._lines:
                table.add_row(line.keys, line.description, line.where)
            yield table
