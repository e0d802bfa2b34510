"""A small dialog asking for a file path (attach a data file, save the answer)."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from nemo_tui.core.text.text_file import TextNotSaved, would_replace
from nemo_tui.ui.server_text import literal


class PathPrompt(ModalScreen[str | None]):
    """Ask for a path; Enter accepts it (expanded, as text), Esc cancels (dismissing with None).

    Args:
        title: What the path is for.
        hint: One line under the title.
        value: The path to start from.
        must_exist: Refuse paths that are not existing files.
        allow_empty: Accept an empty entry (dismissing with ""), e.g. to detach a file.
        ask_before_replacing: The path is to be written: refuse what is not a regular file, and
            accept an existing file only when Enter is pressed again on the same path.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    replace_agreed = False
    """Set when the accepted path is an existing file the user agreed to replace."""

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
        ask_before_replacing: bool = False,
    ) -> None:
        super().__init__()
        self._title = title
        self._hint = hint
        self._value = value
        self._must_exist = must_exist
        self._allow_empty = allow_empty
        self._ask_before_replacing = ask_before_replacing
        # The existing file the problem line asks about replacing, until the path is edited.
        self._replace_asked: Path | None = None

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
            self.query_one("#path-problem", Static).update(literal(f"No such file: {path}"))
            return
        if self._ask_before_replacing and not self._may_write(path):
            return
        self.dismiss(str(path))

    @on(Input.Changed, "#path-input")
    def _path_edited(self) -> None:
        self._replace_asked = None

    def _may_write(self, path: Path) -> bool:
        """Whether `path` may be written now; if not, the problem line says why or asks."""
        problem = self.query_one("#path-problem", Static)
        try:
            exists = would_replace(path)
        except TextNotSaved as exc:
            problem.update(literal(exc.one_line()))
            return False
        if exists and path != self._replace_asked:
            self._replace_asked = path
            problem.update(
                literal(f"{path} already exists: Enter again replaces it, or change the name.")
            )
            return False
        self.replace_agreed = exists
        return True

    def action_cancel(self) -> None:
        """Close without a path."""
        self.dismiss(None)
