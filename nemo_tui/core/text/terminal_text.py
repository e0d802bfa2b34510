"""Text from model servers and models made safe to show on a terminal.

An answer, a model name or a server's error text can hold control sequences a terminal obeys:
OSC 52 writes the clipboard, OSC 0 retitles the window, CSI sequences move the cursor or clear
the screen, and a bare carriage return overwrites the line already shown. Everything such a
source supplies goes through `strip_terminal_controls` (or, for text that arrives in pieces, a
`TerminalTextFilter`) before it reaches a terminal.

Whole sequences are removed, not just their ESC, so no payload such as `]52;c;aGk=` is left
behind as visible garbage: CSI (`ESC [` … final byte), the strings OSC, DCS, SOS, PM and APC
(`ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _` … up to BEL or ST), two-byte escapes such as `ESC c`,
and the 8-bit C1 forms of the same introducers (U+009B for CSI, U+009D for OSC...). Every other
C0 and C1 control character and DEL is dropped; newlines and tabs are kept. Lone surrogates
(which JSON `\\ud800` escapes can produce) cannot be encoded for any terminal and become U+FFFD.
"""

from __future__ import annotations

import re
from enum import Enum, auto

REPLACEMENT_CHARACTER = "\ufffd"
"""Stands in for a lone surrogate."""

# Everything that is not plain text: C0 controls except tab and newline, DEL, the C1 controls,
# and the surrogate range (a str holds surrogates only when they are unpaired).
_NOT_PLAIN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# A string (OSC, DCS...) ends at BEL, ST (8-bit, or ESC \), or is cancelled by CAN or SUB. It
# also ends at a newline, which is kept: no payload this filter removes spans lines, and a stray
# introducer then hides at most the rest of its line rather than the rest of the answer.
_STRING_END = re.compile("[\x07\x18\x1a\x1b\x9c\n]")
# The first byte of a CSI sequence that is neither a parameter byte (`0` to `?`) nor an
# intermediate byte (space to `/`): the final byte, or one that cannot be in the sequence.
_CSI_END = re.compile("[^\x20-\x3f]")

_STRING_INTRODUCERS = "]PX^_"
"""After ESC: OSC, DCS, SOS, PM and APC."""
_C1_STRING_INTRODUCERS = "\x9d\x90\x98\x9e\x9f"
"""The same as single 8-bit C1 characters."""


class _Mode(Enum):
    """Where the filter is in a control sequence."""

    TEXT = auto()
    AFTER_CR = auto()
    """A carriage return was just shown as a newline; a newline right after it is its pair."""
    ESCAPE = auto()
    """After ESC."""
    ESCAPE_INTERMEDIATE = auto()
    """After ESC and one or more intermediate bytes, as in `ESC ( B`."""
    CSI = auto()
    STRING = auto()
    """Inside an OSC, DCS, SOS, PM or APC string."""
    STRING_ESCAPE = auto()
    """After an ESC inside a string: `\\` makes ST, anything else starts a new sequence."""


class TerminalTextFilter:
    """Strips terminal control sequences from text that arrives in pieces, such as tokens.

    The filter remembers an unfinished sequence between pieces, so `ESC ]52;c;` in one token
    and its payload and BEL in the next are removed as one sequence: feeding the pieces one by
    one gives exactly what `strip_terminal_controls` gives for the whole text. A sequence still
    unfinished when the text ends is dropped. Use one filter per stream.
    """

    def __init__(self) -> None:
        self._mode = _Mode.TEXT

    def feed(self, text: str) -> str:
        """The next piece of text, with control sequences and characters removed.

        Args:
            text: The next piece, exactly as the server sent it.

        Returns:
            What is safe to show of it; it may be empty while a sequence is still open.
        """
        kept: list[str] = []
        mode = self._mode
        position = 0
        end = len(text)
        while position < end:
            if mode is _Mode.TEXT:
                found = _NOT_PLAIN.search(text, position)
                if found is None:
                    kept.append(text[position:])
                    break
                stop = found.start()
                kept.append(text[position:stop])
                mode = _control(text[stop], kept)
                position = stop + 1
            elif mode is _Mode.AFTER_CR:
                if text[position] == "\n":
                    position += 1
                mode = _Mode.TEXT
            elif mode is _Mode.CSI:
                found = _CSI_END.search(text, position)
                if found is None:
                    break
                position = found.start()
                if "@" <= text[position] <= "~":
                    position += 1
                # Any other byte cannot be in a CSI sequence: it ends it and is read as text.
                mode = _Mode.TEXT
            elif mode is _Mode.STRING:
                found = _STRING_END.search(text, position)
                if found is None:
                    break
                position = found.start()
                terminator = text[position]
                mode = _Mode.STRING_ESCAPE if terminator == "\x1b" else _Mode.TEXT
                if terminator != "\n":  # a newline that ends a string is kept, as text
                    position += 1
            elif mode is _Mode.STRING_ESCAPE:
                if text[position] == "\\":
                    mode = _Mode.TEXT
                    position += 1
                else:
                    mode = _Mode.ESCAPE
            else:
                mode, consumed = _after_escape(text[position], mode)
                position += consumed
        self._mode = mode
        return "".join(kept)


def _control(char: str, kept: list[str]) -> _Mode:
    """Act on one control character or surrogate met in plain text; return the next mode."""
    if char == "\r":
        # A lone carriage return would move back over the line and let later text overwrite
        # what is shown; as a newline the text stays visible and CRLF line ends stay one break.
        kept.append("\n")
        return _Mode.AFTER_CR
    if char == "\x1b":
        return _Mode.ESCAPE
    if char == "\x9b":
        return _Mode.CSI
    if char in _C1_STRING_INTRODUCERS:
        return _Mode.STRING
    if "\ud800" <= char <= "\udfff":
        kept.append(REPLACEMENT_CHARACTER)
    return _Mode.TEXT


def _after_escape(char: str, mode: _Mode) -> tuple[_Mode, int]:
    """The next mode after ESC (and any intermediates) meets `char`, and whether it is used."""
    if mode is _Mode.ESCAPE:
        if char == "[":
            return _Mode.CSI, 1
        if char in _STRING_INTRODUCERS:
            return _Mode.STRING, 1
        if char == "\x1b":
            return _Mode.ESCAPE, 1
    if " " <= char <= "/":
        return _Mode.ESCAPE_INTERMEDIATE, 1
    if "0" <= char <= "~":
        return _Mode.TEXT, 1
    # Not part of an escape sequence: the sequence ends and the character is read as text.
    return _Mode.TEXT, 0


def strip_terminal_controls(text: str) -> str:
    """The text without terminal control sequences or control characters, newlines and tabs kept.

    Carriage returns become newlines (a CRLF pair one newline) and lone surrogates U+FFFD; text
    with none of these is returned unchanged.

    Args:
        text: Text a server or a model supplied.
    """
    if _NOT_PLAIN.search(text) is None:
        return text
    return TerminalTextFilter().feed(text)
