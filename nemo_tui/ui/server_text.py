"""Text from model servers and models on the dashboard: shown as written, never read as markup.

Model names (llama.cpp's are file paths such as `/models/foo[Q4].gguf`), server messages and
errors reach widgets that read a string as Textual markup, where `x[/]` raises MarkupError and
`[Q4]` vanishes. `textual.markup.escape` misses both, and a trailing backslash, so such text is
never pasted into markup: it goes in as a template variable or as `Content`. It is also stripped
of terminal control sequences, which `Content` would pass on to the terminal.
"""

from __future__ import annotations

from textual.content import Content

from nemo_tui.core.text.terminal_text import strip_terminal_controls


def literal(text: str) -> Content:
    """Server- or model-supplied text as content shown exactly as written."""
    return Content(strip_terminal_controls(text))


def template(markup: str, **values: str) -> Content:
    """Content from markup written here, with server- or model-supplied values put in literally.

    Args:
        markup: Markup with `$name` placeholders, e.g. `"[b]$model[/b] is loading"`.
        **values: The text for each placeholder; it is never parsed as markup.
    """
    return Content.from_markup(
        markup, **{name: strip_terminal_controls(value) for name, value in values.items()}
    )
