"""The model for the next query: `auto` (the recommendation) or one picked by hand; and, in a
lab of several hosts, the host: `auto` (routing picks) or one pinned by hand."""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget

from nemo_tui.ui.server_text import literal

AUTO_LABEL = "auto (recommended)"
HOST_AUTO_LABEL = "auto"
"""The host picker's label while routing picks the host."""


class ModelPicker(Widget, can_focus=True):
    """One line naming the model; enter, space, ↓ or a click opens the list to pick from.

    Textual's `Select` mounts its drop-down list with the screen; this one builds the list
    (and imports it) only when it is opened, which keeps it out of the start-up time.
    """

    BINDINGS = [
        Binding("enter,space,down", "open", "Pick model", show=False),
    ]

    DEFAULT_CSS = """
    ModelPicker {
        width: 1fr;
        max-width: 44;
        height: 1;
        padding: 0 1;
        background: $surface;
        color: $foreground;
    }
    ModelPicker:focus {
        background: $block-cursor-blurred-background;
    }
    ModelPicker:hover {
        background: $block-hover-background;
    }
    """

    class Changed(Message):
        """The picked model changed (None is auto)."""

        def __init__(self, picker: ModelPicker, value: str | None) -> None:
            super().__init__()
            self.picker = picker
            self.value = value

        @property
        def control(self) -> ModelPicker:
            """The picker that changed."""
            return self.picker

    MENU_TITLE = "Model for the next query"
    """The title of the list it opens."""
    AUTO = AUTO_LABEL
    """What it shows, and the list's first line, while nothing is picked by hand."""
    PREFIX = ""
    """Shown before the pick, to say what is picked."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._options: list[str] = []
        self._value: str | None = None

    @property
    def options(self) -> list[str]:
        """The models offered besides auto."""
        return list(self._options)

    @property
    def value(self) -> str | None:
        """The model picked by hand, or None for auto."""
        return self._value

    @value.setter
    def value(self, name: str | None) -> None:
        if name is not None and name not in self._options:
            raise ValueError(f"{name!r} is not one of the offered choices")
        if name != self._value:
            self._value = name
            # The host picker is as wide as its label.
            self.refresh(layout=True)
            self.post_message(self.Changed(self, name))

    def set_options(self, names: list[str]) -> None:
        """Offer these models; a pick that is no longer offered goes back to auto."""
        self._options = list(names)
        if self._value not in self._options:
            self.value = None
        self.refresh()

    def render(self) -> Content:
        """The picked model, and the arrow that says it opens."""
        label = self.PREFIX + (self._value or self.AUTO)
        room = max(0, self.content_size.width - 2)
        return literal(label).truncate(room, ellipsis=True, pad=True) + " ▼"

    def on_click(self, _event: events.Click) -> None:
        """A click opens the list."""
        self.action_open()

    def action_open(self) -> None:
        """Show the list of models, the current one highlighted."""
        from nemo_tui.ui.screens.model_menu import ModelMenu

        def picked(choice: str | None) -> None:
            if choice is not None:
                self.value = choice or None

        self.app.push_screen(
            ModelMenu([self.AUTO, *self._options], self._value, title=self.MENU_TITLE), picked
        )


class HostPicker(ModelPicker):
    """One line naming the host the next query is pinned to, or `auto` while routing picks it;
    opens like the model picker. Shown only when the lab has other hosts."""

    BINDINGS = [
        Binding("enter,space,down", "open", "Pick host", show=False),
    ]

    DEFAULT_CSS = """
    HostPicker {
        width: auto;
        max-width: 24;
        margin-left: 1;
    }
    """

    MENU_TITLE = "Host for the next query"
    AUTO = HOST_AUTO_LABEL
    PREFIX = "host: "

    def get_content_width(self, container: Size, viewport: Size) -> int:
        """As wide as the label and the arrow: the query pane beside the side panels is narrow,
        and the model picker takes what this one leaves."""
        return cell_len(self.PREFIX + (self.value or self.AUTO)) + 2
