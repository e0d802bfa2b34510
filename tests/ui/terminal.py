"""A terminal for Pilot tests: the bytes the app writes to it, and what it then shows.

`run_test` drives the app with Textual's headless driver, which drops every screen update rather
than writing it. `Terminal.attach` keeps them: each update is turned into terminal output by the
same call Textual makes for a real terminal (`render_segments`), counted, and applied to a grid
of cells as a terminal would apply it. A test then observes the dashboard where a user (or an
SSH link) does: the bytes sent, the text and colours on screen, and which cells were rewritten.

It hooks `App._display`, the one place Textual hands a screen update to its driver; nothing
public carries the updates of a headless app.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console
from textual.app import App

_OUTPUT = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[([0-9;]*)m|\x1b\[[0-9;?]*[A-Za-z]|([^\x1b\r\n]+)")

RGB = tuple[int, int, int]


@dataclass
class Terminal:
    """A terminal of `width` x `height` cells that the app under test writes to."""

    width: int
    height: int
    bytes_written: int = 0
    """Every byte written since the start (or the last `clear_counts`)."""
    rewritten: set[tuple[int, int]] = field(default_factory=set, repr=False)
    """(row, column) of every cell written since the last `clear_counts`, from 0."""
    _text: list[list[str]] = field(default_factory=list, repr=False)
    _colour: list[list[RGB | None]] = field(default_factory=list, repr=False)

    @classmethod
    def attach(cls, app: App[None], size: tuple[int, int]) -> Terminal:
        """Record what `app` writes from its first frame on; call before `run_test(size=size)`."""
        terminal = cls(*size)
        terminal._text = [[" "] * terminal.width for _ in range(terminal.height)]
        terminal._colour = [[None] * terminal.width for _ in range(terminal.height)]
        display = app._display
        # The app's own console has the colours of the environment the tests run in (often
        # none); a true-colour terminal keeps the theme's colours exact.
        console = Console(
            file=io.StringIO(),
            force_terminal=True,
            color_system="truecolor",
            legacy_windows=False,
            safe_box=False,
        )

        def record(screen: object, renderable: object) -> None:
            render = getattr(renderable, "render_segments", None)
            # A batch of changes is displayed once, when it ends, not update by update.
            if render is not None and not app._batch_count:
                terminal.write(render(console))
            display(screen, renderable)  # type: ignore[arg-type]

        app._display = record  # type: ignore[method-assign]
        return terminal

    def write(self, output: str) -> None:
        """Apply output as a terminal would: cursor moves, foreground colours, text."""
        self.bytes_written += len(output.encode())
        row = column = 0
        colour: RGB | None = None
        for match in _OUTPUT.finditer(output):
            move_row, move_column, sgr, text = match.groups()
            if move_row is not None:
                row, column = int(move_row) - 1, int(move_column) - 1
            elif sgr is not None:
                colour = _foreground(sgr, colour)
            elif text is not None:
                for char in text:
                    if 0 <= row < self.height and 0 <= column < self.width:
                        self._text[row][column] = char
                        self._colour[row][column] = colour
                        self.rewritten.add((row, column))
                    column += cell_len(char)

    def clear_counts(self) -> None:
        """Start counting bytes and rewritten cells afresh."""
        self.bytes_written = 0
        self.rewritten.clear()

    def report(self) -> str:
        """Which rows were written since the last `clear_counts`, and the screen: for a failure."""
        rows = sorted({row for row, _ in self.rewritten})
        return f"{self.bytes_written} bytes to rows {rows} of:\n" + "\n".join(self.lines())

    def lines(self) -> list[str]:
        """The screen's text, row by row."""
        return ["".join(row) for row in self._text]

    def shows(self, text: str) -> bool:
        """Whether a row of the screen shows `text`."""
        return any(text in line for line in self.lines())

    def row_of(self, text: str) -> int:
        """The first row showing `text` (fails if none does)."""
        for index, line in enumerate(self.lines()):
            if text in line:
                return index
        raise AssertionError(f"{text!r} is not on screen:\n" + "\n".join(self.lines()))

    def colours(self, row: int, start: int, end: int) -> set[RGB | None]:
        """The foreground colours of the cells `start` to `end` (excluded) of a row."""
        return set(self._colour[row][start:end])


def _foreground(sgr: str, current: RGB | None) -> RGB | None:
    """The foreground colour after a Select Graphic Rendition sequence (truecolour only)."""
    codes = [int(code) if code else 0 for code in sgr.split(";")]
    index = 0
    while index < len(codes):
        code = codes[index]
        if code == 0 or code == 39:
            current = None
        elif code in (38, 48) and codes[index + 1 : index + 2] == [2]:
            if code == 38:
                red, green, blue = codes[index + 2 : index + 5]
                current = (red, green, blue)
            index += 4
        index += 1
    return current
