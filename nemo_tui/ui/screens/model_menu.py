"""The list a `ModelPicker` opens: auto, then every model (or host) that can be picked."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import OptionList

from nemo_tui.ui.server_text import literal


class ModelMenu(ModalScreen[str | None]):
    """Pick a model: Enter or a click takes the highlighted one, Esc keeps the current pick.

    Dismisses with the model's name, "" for auto (the first line), or None when cancelled.

    Args:
        labels: The lines: auto's label first, then the model names.
        current: The current pick (None is auto), highlighted when the list opens.
        title: What is picked, on the list's border.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    DEFAULT_CSS = """
    ModelMenu {
        align: center middle;
    }
    ModelMenu > OptionList, ModelMenu > OptionList:focus {
        width: 50;
        height: auto;
        max-height: 80%;
        border: round $primary;
        background: $surface;
    }
    """

    def __init__(
        self, labels: list[str], current: str | None, *, title: str = "Model for the next query"
    ) -> None:
        super().__init__()
        self._labels = labels
        self._current = current
        self._title = title

    def compose(self) -> ComposeResult:
        """The list, titled."""
        menu = OptionList(*(literal(label) for label in self._labels), id="model-menu")
        menu.border_title = self._title
        menu.border_subtitle = "enter picks · esc keeps"
        if self._current in self._labels[1:]:
            menu.highlighted = self._labels.index(self._current, 1)
        yield menu

    @on(OptionList.OptionSelected, "#model-menu")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        index = event.option_index
        self.dismiss(self._labels[index] if index > 0 else "")

    def action_cancel(self) -> None:
        """Close and keep the current pick."""
        self.dismiss(None)
