"""The answer area: Markdown that streams in without stalling the UI, however fast tokens come."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Static

from nemo_tui.core.text.terminal_text import TerminalTextFilter, strip_terminal_controls
from nemo_tui.ui.collector import Pause, pause_collection, resume_collection

if TYPE_CHECKING:
    from textual.widgets import Markdown
    from textual.widgets.markdown import MarkdownStream

FLUSH_S = 0.05
"""Tokens are gathered for this long before the Markdown is updated: at 2,000 tokens/s that is
about 100 tokens per update and 20 updates a second, which keeps typing responsive."""


class AnswerView(VerticalScroll):
    """A scrolling Markdown answer that follows the end while it streams.

    The answer is drawn without the terminal control sequences a model may write (they would
    reach the terminal through the Markdown); `text` keeps it exactly as received.
    """

    DEFAULT_CSS = """
    AnswerView {
        height: 1fr;
        border: round $primary 50%;
        padding: 0 1;
    }
    AnswerView:focus {
        border: round $primary;
    }
    AnswerView > Markdown {
        margin: 0;
        padding: 0;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._pending: list[str] = []
        self._text = ""
        self._display_filter = TerminalTextFilter()
        self._drawn_any = False
        self._stream: MarkdownStream | None = None
        self._timer: Timer | None = None
        self.border_title = "Answer"

    def compose(self) -> ComposeResult:
        """A hint until the first answer brings the Markdown document."""
        yield Static(
            "[dim]The answer appears here (ctrl+s sends the question).[/]", id="answer-hint"
        )

    async def _markdown(self) -> Markdown:
        """The Markdown document, created on first use.

        Textual's Markdown brings markdown-it and Pygments (about 3 MB and 30 ms); the
        dashboard's first frame does not need them.
        """
        from textual.widgets import Markdown

        found = self.query(Markdown)
        if found:
            return found.first()
        await self.query("#answer-hint").remove()
        markdown = Markdown(id="answer")
        await self.mount(markdown)
        return markdown

    @property
    def text(self) -> str:
        """Everything received so far, including what waits for the next update."""
        return self._text + "".join(self._pending)

    @property
    def streaming(self) -> bool:
        """True between `begin` and `finish`."""
        return self._stream is not None

    async def begin(self, title: str) -> None:
        """Clear the answer and start a new stream."""
        await self.finish()
        self._text = ""
        self._pending.clear()
        self._display_filter = TerminalTextFilter()
        self._drawn_any = False
        markdown = await self._markdown()
        await markdown.update("")
        self.border_title = title
        self.anchor()
        self._stream = type(markdown).get_stream(markdown)
        pause_collection(Pause.ANSWER)

    def feed(self, text: str) -> None:
        """Queue text; it is drawn at the next flush, at most `FLUSH_S` from now."""
        if self._stream is None:
            return
        if not self._text and not self._pending:
            # Models often open with blank lines; streamed Markdown would keep them as empty
            # blocks above the answer.
            text = text.lstrip()
            if not text:
                return
        self._pending.append(text)
        if self._timer is None:
            self._timer = self.set_timer(FLUSH_S, self._flush)

    async def finish(self, final_text: str | None = None) -> None:
        """Draw what is pending and end the stream.

        Args:
            final_text: The complete answer as the engine has it; replaces what was streamed
                when it differs (so nothing is lost even if a token event was).
        """
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        await self._flush()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
            resume_collection(Pause.ANSWER)
        if final_text is not None and final_text.lstrip() != self._text:
            self._text = final_text.lstrip()
            shown = strip_terminal_controls(self._text).lstrip()
            await (await self._markdown()).update(shown)

    async def _flush(self) -> None:
        self._timer = None
        if not self._pending or self._stream is None:
            return
        chunk = "".join(self._pending)
        self._pending.clear()
        self._text += chunk
        shown = self._display_filter.feed(chunk)
        if not self._drawn_any:
            # `feed` drops the blank lines an answer opens with, but not those behind a control
            # sequence at its very start.
            shown = shown.lstrip()
        if shown:
            self._drawn_any = True
            await self._stream.write(shown)
