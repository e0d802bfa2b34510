"""The line at the bottom of a screen: the keys that work right now, and what they do."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

GAP = "  "
"""Between two hints."""


class KeyBar(Widget):
    """A footer in one widget: a hint per active binding, the command palette on the right.

    Textual's `Footer` mounts a widget per key and rebuilds them all whenever the bindings
    change (each focus change); this draws the same hints as one line of text. A hint is
    dimmed while its action is unavailable, hints that do not fit are left out from the end,
    and clicking a hint presses its key.
    """

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        width: 100%;
        height: 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    KeyBar > .key-bar--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyBar > .key-bar--disabled {
        text-style: dim;
    }
    """

    COMPONENT_CLASSES = {"key-bar--key", "key-bar--disabled"}

    def __init__(self) -> None:
        super().__init__()
        self._targets: list[tuple[int, int, str]] = []
        """Where each drawn hint starts and ends, and the key it stands for."""

    def on_mount(self) -> None:
        """Redraw when the screen's bindings change (focus moves, an action is enabled)."""
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, _screen: Screen[object]) -> None:
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        """A click on a hint presses its key."""
        for start, end, key in self._targets:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return

    def hints(self) -> list[tuple[Binding, bool]]:
        """The bindings to show, one per action, with whether each is enabled now.

        The focused widget's own keys come first, then the screen's, then the app's, each in
        the order its `BINDINGS` lists them.
        """
        screen, app = self.screen, self.app
        seen: set[str] = set()
        declared: dict[int, list[str]] = {}
        shown: list[tuple[tuple[int, int], Binding, bool]] = []
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.show or key == app.COMMAND_PALETTE_BINDING or binding.action in seen:
                continue
            seen.add(binding.action)
            node = active.node
            rank = 2 if node is app else 1 if node is screen else 0
            actions = declared.setdefault(
                id(node), [b.action for b in Binding.make_bindings(node.BINDINGS)]
            )
            place = actions.index(binding.action) if binding.action in actions else len(actions)
            shown.append(((rank, place), binding, active.enabled))
        shown.sort(key=lambda hint: hint[0])
        return [(binding, enabled) for _, binding, enabled in shown]

    def render(self) -> Content:
        """The hints that fit, left to right, and the command palette hint at the far right."""
        width = self.content_size.width
        palette = self._palette_binding()
        palette_hint = Content("") if palette is None else self._hint(palette, True) + " "
        room = width - palette_hint.cell_length - len(GAP)
        line = Content(" ")
        targets: list[tuple[int, int, Binding]] = []
        for binding, enabled in self.hints():
            hint = self._hint(binding, enabled)
            if line.cell_length + hint.cell_length > room:
                break
            targets.append((line.cell_length, line.cell_length + hint.cell_length, binding))
            line = line + hint + GAP
        padding = max(0, width - line.cell_length - palette_hint.cell_length)
        if palette is not None:
            start = line.cell_length + padding
            targets.append((start, start + palette_hint.cell_length, palette))
        # A binding may list several keys ("f1,question_mark"); a click presses the first.
        self._targets = [(start, end, b.key.split(",")[0]) for start, end, b in targets]
        return line + " " * padding + palette_hint

    def _palette_binding(self) -> Binding | None:
        app = self.app
        palette = self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
        if not app.ENABLE_COMMAND_PALETTE or palette is None:
            return None
        return palette.binding

    def _hint(self, binding: Binding, enabled: bool) -> Content:
        hint = Content.assemble(
            (self.app.get_key_display(binding), self.get_visual_style("key-bar--key")),
            " ",
            binding.description,
        )
        return hint if enabled else hint.stylize(self.get_visual_style("key-bar--disabled"))
