"""The line at the top of a screen: the app's title and what the screen says about itself."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget


class TitleBar(Widget):
    """The screen's title and sub-title on one line, in a single widget.

    Textual's `Header` is four widgets with a clock and an icon; the dashboard only needs the
    text, and each widget less is start-up time saved.
    """

    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        width: 100%;
        height: 1;
        background: $panel;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        content-align: center middle;
    }
    """

    def on_mount(self) -> None:
        """Redraw whenever the app's or the screen's title or sub-title changes."""
        for owner in (self.app, self.screen):
            self.watch(owner, "title", self._title_changed, init=False)
            self.watch(owner, "sub_title", self._title_changed, init=False)

    def _title_changed(self) -> None:
        self.refresh()

    def render(self) -> Content:
        """The title and sub-title the way the app formats them; a screen's own win."""
        screen, app = self.screen, self.app
        title = screen.title if screen.title is not None else app.title
        sub_title = screen.sub_title if screen.sub_title is not None else app.sub_title
        return app.format_title(title, sub_title)
