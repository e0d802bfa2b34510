"""The analysis view: the script a model wrote, highlighted, and what running it printed.

A model wrote the script and the script wrote its output, so both are shown as written: never
read as markup, and stripped of terminal control sequences first. Nothing here runs anything;
the screen runs the script when asked (`ctrl+l`) and hands the result over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.errors import NemoError
from nemo_tui.ui.server_text import literal, template
from nemo_tui.units import format_count

if TYPE_CHECKING:
    from nemo_tui.core.analysis.run import AnalysisRun, RunLimits

SHOWN_OUTPUT_CHARS = 20_000
"""The most of each stream (stdout, stderr) drawn. All the captured output (up to the output
cap, 1 MB by default) would take seconds to lay out; stdout keeps its start, stderr its end,
where a traceback says what went wrong."""

CODE_THEMES = {True: "monokai", False: "default"}
"""The Pygments style for the code under a dark (True) or light (False) dashboard theme."""


@dataclass(frozen=True)
class ShownScript:
    """A script on screen, and what it was written for: what a repair round sends again.

    Attributes:
        code: The script, exactly as taken from the answer.
        question: The question it answers (the first one, in a repair round).
        data_file: The file it runs on.
        model: The model that wrote it; a repair round asks the same one.
        libraries: What it may import besides the standard library.
        repaired: True when a repair round wrote it; it gets no second one.
        warnings: What to know before running it.
        host: The host whose model wrote it, in a lab of several hosts: a repair round asks
            the same model there. None without other hosts (and for a cloud model).
    """

    code: str
    question: str
    data_file: Path
    model: str
    libraries: tuple[str, ...]
    repaired: bool = False
    warnings: tuple[str, ...] = ()
    host: str | None = None


def describe_limits(limits: RunLimits | NemoError) -> Content:
    """The line that says how `ctrl+l` would run the script, or why it would not now."""
    if isinstance(limits, NemoError):
        return template("[$warning]⚠ ctrl+l: $problem[/]", problem=limits.one_line())
    return template("[b]ctrl+l[/b] runs it · limits: $limits", limits=limits.summary())


def next_step(script: ShownScript, run: AnalysisRun) -> str:
    """What can be done after a run: run again, or ask for the one repair."""
    if run.ok:
        return "ctrl+l runs it again"
    if script.repaired:
        return "this was the repair round; ctrl+s asks again from scratch"
    return f"f12 sends the error to {script.model} for a corrected script"


def _shown(text: str, *, keep_end: bool) -> tuple[str, int]:
    """The part of a stream that is drawn, and how many characters were left out."""
    if len(text) <= SHOWN_OUTPUT_CHARS:
        return text, 0
    shown = text[-SHOWN_OUTPUT_CHARS:] if keep_end else text[:SHOWN_OUTPUT_CHARS]
    return shown, len(text) - SHOWN_OUTPUT_CHARS


def describe_run(script: ShownScript, run: AnalysisRun) -> Content:
    """The run's outcome (exit status, wall time, peak memory, the limit that stopped it), then
    its stdout and stderr, labelled apart."""
    mark = "[b $success]✓[/]" if run.ok else "[b $error]✗[/]"
    parts = [
        template(
            f"{mark} [b]$outcome[/b] [dim]· $next[/dim]",
            outcome=run.outcome(),
            next=next_step(script, run),
        )
    ]
    if not run.stdout and not run.stderr:
        parts.append(Content.styled("(no output)", "dim"))
    for name, text, keep_end in (("stdout", run.stdout, False), ("stderr", run.stderr, True)):
        if not text:
            continue
        shown, left_out = _shown(text.rstrip("\n"), keep_end=keep_end)
        label = "[b]stdout[/b]" if name == "stdout" else "[b $error]stderr[/]"
        parts.append(Content.from_markup(label))
        if left_out and keep_end:
            parts.append(Content.styled(f"… {format_count(left_out)} characters before", "dim"))
        if name == "stderr":
            parts.append(template("[$text-error]$text[/]", text=shown))
        else:
            parts.append(literal(shown))
        if left_out and not keep_end:
            parts.append(Content.styled(f"… {format_count(left_out)} characters more", "dim"))
    return Content("\n").join(parts)


class AnalysisView(VerticalScroll):
    """The script on screen: its notes (warnings, how it would run), the code, the last run.

    Hidden until a script is shown; the query pane shows it in place of the answer, which
    holds the same code as Markdown.
    """

    DEFAULT_CSS = """
    AnalysisView {
        height: 1fr;
        display: none;
        border: round $primary 50%;
        padding: 0 1;
    }
    AnalysisView.-shown {
        display: block;
    }
    AnalysisView:focus {
        border: round $primary;
    }
    AnalysisView > #analysis-notes {
        color: $text-muted;
    }
    AnalysisView > #analysis-output {
        display: none;
    }
    AnalysisView > #analysis-output.-shown {
        display: block;
        margin-top: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._script: ShownScript | None = None
        self._run: AnalysisRun | None = None
        self._run_active = False
        self._limits = Content()
        self.problem = ""
        """Why the last analysis answer left no script to run ("" when it did, or none came)."""
        self.border_title = "Analysis script"

    def compose(self) -> ComposeResult:
        """Notes, code, run output."""
        yield Static(id="analysis-notes")
        yield Static(id="analysis-code")
        yield Static(id="analysis-output")

    def on_mount(self) -> None:
        """The code's colours follow the dashboard's theme."""
        self.watch(self.app, "theme", self._theme_changed, init=False)

    @property
    def script(self) -> ShownScript | None:
        """The script on screen, if any."""
        return self._script

    @property
    def last_run(self) -> AnalysisRun | None:
        """The latest run of the script on screen, if it ran."""
        return self._run

    @property
    def running(self) -> bool:
        """True from `begin_run` until `end_run`."""
        return self._run_active

    def show_script(self, script: ShownScript, limits: RunLimits | NemoError) -> None:
        """Show a new script, not yet run, with how `ctrl+l` would run it."""
        self._script = script
        self._run = None
        self.problem = ""
        self.border_title = template(
            "Corrected script · $file" if script.repaired else "Analysis script · $file",
            file=script.data_file.name,
        )
        self.border_subtitle = "ctrl+l run"
        self._limits = describe_limits(limits)
        self._draw_notes()
        self._draw_code()
        self.query_one("#analysis-output", Static).remove_class("-shown")
        self.add_class("-shown")
        self.scroll_home(animate=False)

    def show_limits(self, limits: RunLimits | NemoError) -> None:
        """Say again how `ctrl+l` would run the script (the memory cap follows free memory)."""
        if self._script is None:
            return
        line = describe_limits(limits)
        if not line.is_same(self._limits):
            self._limits = line
            self._draw_notes()

    def show_problem(self, problem: str) -> None:
        """The answer held no script to run: the view hides and remembers why."""
        self.clear()
        self.problem = problem

    def clear(self) -> None:
        """No script on screen (a new question was sent): the view hides."""
        self._script = None
        self._run = None
        self.problem = ""
        self.remove_class("-shown")

    def begin_run(self) -> None:
        """The script started; its last output gives way to a running note."""
        self._run_active = True
        self.border_subtitle = "esc stop"
        self._show_output(Content.styled("running… (esc stops it)", "dim"))

    def end_run(self, outcome: AnalysisRun | NemoError | None) -> None:
        """The run ended: show what it did, or why it did not start (None: it broke, and the
        screen has said so)."""
        self._run_active = False
        self.border_subtitle = "ctrl+l run"
        output = self.query_one("#analysis-output", Static)
        if isinstance(outcome, NemoError):
            self._show_output(
                template("[b $error]✗ not run[/]: $problem", problem=outcome.one_line())
            )
        elif outcome is not None and self._script is not None:
            self._run = outcome
            if not outcome.ok and not self._script.repaired:
                self.border_subtitle = "ctrl+l run · f12 repair"
            self._show_output(describe_run(self._script, outcome))
        else:
            output.remove_class("-shown")

    def _show_output(self, content: Content) -> None:
        output = self.query_one("#analysis-output", Static)
        output.update(content)
        output.add_class("-shown")
        self.call_after_refresh(self.scroll_to_widget, output, top=True, animate=False)

    def _theme_changed(self) -> None:
        # After the refresh, the widget's background is the new theme's.
        self.call_after_refresh(self._draw_code)

    def _draw_notes(self) -> None:
        script = self._script
        if script is None:
            return
        lines = [template("[$warning]⚠ $warning_text[/]", warning_text=w) for w in script.warnings]
        lines.append(self._limits)
        self.query_one("#analysis-notes", Static).update(Content("\n").join(lines))

    def _draw_code(self) -> None:
        script = self._script
        if script is None:
            return
        # Imported when a script is first shown: Pygments costs the first frame ~15 ms.
        from rich.syntax import Syntax

        code = self.query_one("#analysis-code", Static)
        code.update(
            Syntax(
                strip_terminal_controls(script.code).rstrip("\n"),
                "python",
                theme=CODE_THEMES[self.app.current_theme.dark],
                line_numbers=True,
                word_wrap=True,
                # The theme's background rather than the code style's own (or the terminal's).
                background_color=code.background_colors[1].hex,
            )
        )
