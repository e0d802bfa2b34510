"""The model for the next query: `auto` (the recommendation) or one picked by hand."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.widget import Widget

from nemo_tui.ui.server_text import literal

AUTO_LABEL = "auto (recommended)"


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
            raise ValueError(f"{name!r} is not one of the offered models")
        if name != self._value:
            self._value = name
            self.refresh()
            self.post_message(self.Changed(self, name))

    def set_options(self, names: list[str]) -> None:
        """Offer these models; a pick that is no longer offered goes back to auto."""
        self._options = list(names)
        if self._value not in self._options:
            self.value = None
        self.refresh()

    def render(self) -> Content:
        """The picked model, and the arrow that says it opens."""
        label = self._value or AUTO_LABEL
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

        self.app.push_screen(ModelMenu([AUTO_LABEL, *self._options], self._value), picked)
