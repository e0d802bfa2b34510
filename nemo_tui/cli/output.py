"""The commands' human-readable output, on its way to a terminal.

Answers, model names, versions, health details and error texts come from model servers and
models, and may hold control sequences a terminal would obey (OSC 52 writes the clipboard,
others retitle the window or move the cursor), or lone surrogates no stream can encode. Every
line a command prints for people goes through here and is stripped of them.

`--json` output does not: `json.dumps` writes control characters and, ASCII-only by default,
lone surrogates as `\\u` escapes, so it is exact and safe as it is.
"""

from __future__ import annotations

import sys

from nemo_tui.core.text.terminal_text import TerminalTextFilter, strip_terminal_controls


def show(text: str = "") -> None:
    """Print text and a newline to stdout, without terminal control sequences."""
    print(strip_terminal_controls(text))


def note(text: str) -> None:
    """Print text and a newline to stderr at once, without terminal control sequences."""
    print(strip_terminal_controls(text), file=sys.stderr, flush=True)


class AnswerWriter:
    """Streams an answer to stdout token by token, without terminal control sequences.

    A sequence split across tokens is still removed whole (see `TerminalTextFilter`).
    """

    def __init__(self) -> None:
        self._filter = TerminalTextFilter()
        self._line_open = False

    def write(self, text: str) -> None:
        """Show the next piece of the answer now."""
        shown = self._filter.feed(text)
        if shown:
            sys.stdout.write(shown)
            sys.stdout.flush()
            self._line_open = not shown.endswith("\n")

    def end_line(self) -> None:
        """End the answer's last line, unless the answer already did (or nothing was shown)."""
        if self._line_open:
            sys.stdout.write("\n")
            self._line_open = False
