"""A small dialog asking for a file path (attach a data file, save the answer)."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PathPrompt(ModalScreen[str | None]):
    """Ask for a path; Enter accepts it (expanded, as text), Esc cancels (dismissing with None).

    Args:
        title: What the path is for.
        hint: One line under the title.
        value: The path to start from.
        must_exist: Refuse paths that are not existing files.
        allow_empty: Accept an empty entry (dismissing with ""), e.g. to detach a file.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    DEFAULT_CSS = """
    PathPrompt {
        align: center middle;
    }
    PathPrompt > Vertical {
        width: 80%;
        max-width: 90;
        height: auto;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    PathPrompt #path-problem {
        color: $error;
        height: auto;
    }
    """

    def __init__(
        self,
        title: str,
        hint: str,
        *,
        value: str = "",
        must_exist: bool = False,
        allow_empty: bool = False,
    ) -> None:
        super().__init__()
        self._title = title
        self._hint = hint
        self._value = value
        self._must_exist = must_exist
        self._allow_empty = allow_empty

    def compose(self) -> ComposeResult:
        """Hint, input, and a line for problems."""
        with Vertical() as box:
            box.border_title = self._title
            yield Static(self._hint)
            yield Input(value=self._value, id="path-input")
            yield Static("", id="path-problem")

    @on(Input.Submitted, "#path-input")
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            if self._allow_empty:
                self.dismiss("")
            else:
                self.query_one("#path-problem", Static).update("Type a path, or Esc to cancel.")
            return
        path = Path(text).expanduser()
        if self._must_exist and not path.is_file():
            self.query_one("#path-problem", Static).update(f"No such file: {path}")
            return
        self.dismiss(str(path))

    def action_cancel(self) -> None:
        """Close without a path."""
        self.dismiss(None)
