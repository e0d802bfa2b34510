"""The help screen: every key binding of the dashboard on one screen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


@dataclass(frozen=True)
class KeyHelp:
    """One line of the help table."""

    keys: str
    """The keys, as the footer shows them, e.g. `f1 / ?`."""
    description: str
    where: str
    """Where the keys work: `anywhere`, or the panel that must have focus."""


def key_help(
    bindings: Iterable[BindingType], where: str, display: dict[str, str] | None = None
) -> list[KeyHelp]:
    """Lines for a list of bindings; several keys for one action share a line.

    Args:
        bindings: A `BINDINGS` list.
        where: Where they work.
        display: Key names to show differently (e.g. `question_mark` -> `?`).
    """
    names = display or {}
    grouped: dict[str, tuple[list[str], str]] = {}
    for binding in Binding.make_bindings(bindings):
        keys, text = grouped.setdefault(
            binding.action, ([], binding.tooltip or binding.description)
        )
        keys.append(names.get(binding.key, binding.key))
    return [KeyHelp(" / ".join(keys), text, where) for keys, text in grouped.values()]


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
