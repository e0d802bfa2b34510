"""Server and model text on a terminal: control sequences go, whole, and readable text stays."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nemo_tui.core.text.terminal_text import TerminalTextFilter, strip_terminal_controls

OSC52 = "\x1b]52;c;aGVsbG8gZnJvbSB0aGUgbW9kZWw=\x07"
"""Writes "hello from the model" to the clipboard."""

FRAGMENTS = (
    "\x1b",
    "[",
    "]",
    "P",
    "_",
    "\\",
    "\x07",
    "\x9b",
    "\x9c",
    "\x9d",
    "\x90",
    "\r",
    "\n",
    "\t",
    "\x18",
    "\x7f",
    ";",
    "52",
    "1;1H",
    "m",
    "(B",
    "?1049h",
    OSC52,
    "\x1b[2J",
    "\x1b]0;title\x1b\\",
    "word ",
    "é",
    "\U0001f600",
)
"""Pieces of control sequences, and text around them, for the fuzzer to combine."""

hostile_text = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(max_size=8),
        st.characters(max_codepoint=0x9F),
        st.characters(categories=["Cs"]),
    ),
    max_size=40,
).map("".join)
"""Text mixing escape sequences, their pieces, control characters, lone surrogates and words."""

readable_text = st.text(st.characters(exclude_categories=["Cc", "Cs"]))
"""Text with no control characters and no lone surrogates: letters, marks, symbols, spaces."""


def is_unsafe(char: str) -> bool:
    """A character a terminal may act on, or one no terminal encoding can carry."""
    code = ord(char)
    if char in "\n\t":
        return False
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


@given(hostile_text)
def test_no_control_character_survives(text: str) -> None:
    assert not any(is_unsafe(char) for char in strip_terminal_controls(text))


@given(readable_text)
def test_readable_text_is_kept_unchanged(text: str) -> None:
    assert strip_terminal_controls(text) == text


@given(hostile_text)
def test_stripping_twice_changes_nothing_more(text: str) -> None:
    once = strip_terminal_controls(text)
    assert strip_terminal_controls(once) == once


@given(hostile_text, st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_text_fed_in_pieces_comes_out_as_when_whole(text: str, cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    pieces = [text[start:stop] for start, stop in zip(bounds, bounds[1:], strict=False)]
    stream = TerminalTextFilter()
    assert "".join(stream.feed(piece) for piece in pieces) == strip_terminal_controls(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"Sure.{OSC52} Done.", "Sure. Done."),
        ("\x9d52;c;aGk=\x9cDone.", "Done."),
        ("\x1b]0;pwned\x1b\\Title kept", "Title kept"),
        ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("top\x1b[2J\x1b[1;1Hhome\x1b[?1049h", "tophome"),
        ("\x9b31mred\x9b0m", "red"),
        ("\x1bPq#0;2;0;0;0#0~~@@\x1b\\after", "after"),
        ("\x1bcreset \x1b(Bcharset \x1b7saved", "reset charset saved"),
        ("bell\x07 back\x08 null\x00", "bell back null"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("windows\r\nline", "windows\nline"),
        ("Approved\rDenied", "Approved\nDenied"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("\x1b]52;c;never ended\nnext line", "\nnext line"),
        ("cut\x1b[31", "cut"),
        ("café \x1bé", "café é"),
    ],
    ids=[
        "osc52",
        "osc52-8bit",
        "title",
        "hyperlink",
        "cursor-and-screen",
        "csi-8bit",
        "dcs",
        "two-byte-escapes",
        "c0",
        "tab-and-newline",
        "crlf",
        "lone-cr",
        "surrogate",
        "unterminated-string",
        "unterminated-csi",
        "escape-before-text",
    ],
)
def test_control_sequences_are_removed_whole(text: str, shown: str) -> None:
    assert strip_terminal_controls(text) == shown


@pytest.mark.parametrize(
    "tokens",
    [
        ["Sure.", "\x1b", "]52;c;aGk=\x07", " Done."],
        ["Sure.\x1b]52;c;", "aGk", "=\x1b", "\\ Done."],
        ["Sure.\x1b[", "2", "J Done."],
    ],
    ids=["split-after-esc", "split-inside-payload-and-st", "split-csi"],
)
def test_a_sequence_split_across_tokens_leaves_nothing_behind(tokens: list[str]) -> None:
    stream = TerminalTextFilter()
    assert "".join(stream.feed(token) for token in tokens) == "Sure. Done."


def test_a_carriage_return_ending_one_token_pairs_with_the_next_tokens_newline() -> None:
    stream = TerminalTextFilter()
    assert [stream.feed(token) for token in ("one\r", "\ntwo")] == ["one\n", "two"]
