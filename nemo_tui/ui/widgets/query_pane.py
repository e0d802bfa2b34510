"""The query pane: the question, the model override, the plan preview, the answer and its stats."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Label, Static, TextArea

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.errors import NemoError
from nemo_tui.ui.server_text import literal, template
from nemo_tui.ui.widgets.answer_view import AnswerView
from nemo_tui.ui.widgets.info_line import InfoLine
from nemo_tui.ui.widgets.model_picker import ModelPicker
from nemo_tui.units import format_count, format_pct, format_rate, format_seconds

if TYPE_CHECKING:
    from nemo_tui.engine import Engine, QueryHandle, QueryPlan
    from nemo_tui.events import Done, EngineEvent, Query

STARTING = "[dim]starting the engine…[/]"
"""What the plan line says while there is no engine to plan with."""

ENGINE_STARTING = "The engine is still starting; try again in a moment."
"""The notice for a key that needs the engine before it exists (or has probed its backends)."""

PLAN_DELAY_S = 0.4
"""The plan preview waits until typing pauses this long, so it is not rebuilt per key."""

CURSOR_BLINK_S = 10.0
"""The question box's cursor stops blinking this long after the last key, and stays shown.
Every blink repaints the cursor's line, about 300 bytes a second to the terminal, which an
unattended dashboard should not send (over SSH every byte travels); desktop toolkits stop the
blink after about as long."""


def describe_plan(plan: QueryPlan) -> Content:
    """The preview line: complexity, model, and how much the prompt shrinks."""
    rec = plan.recommendation
    how = "your pick" if plan.override else "auto"
    opt = plan.optimized
    size = f"{format_count(opt.original_tokens)} tokens"
    if opt.truncated:
        size = (
            f"{format_count(opt.original_tokens)} → {format_count(opt.optimized_tokens)} tokens,"
            f" {format_pct(opt.reduction_pct / 100)} smaller (ctrl+r shows the cuts)"
        )
    line = literal(f"{plan.complexity.level.value} complexity · {rec.model} ({how}) · {size}")
    if plan.warning:
        line += template("\n[$warning]⚠ $warning_text[/]", warning_text=plan.warning)
    return line


def describe_done(done: Done) -> Content:
    """The stats line after an answer."""
    parts = [
        f"{done.model} ({done.backend})",
        f"{format_count(done.tokens_in)} in / {format_count(done.tokens_out)} out",
        format_rate(done.tokens_per_s),
    ]
    if done.load_s is not None:
        parts.append(f"load {format_seconds(done.load_s)}")
    parts.append(f"first token {format_seconds(done.first_token_s)}")
    parts.append(f"total {format_seconds(done.total_s)}")
    if done.cache_hit is not None:
        parts.append("cache hit" if done.cache_hit else "cold start")
    elif done.local:
        parts.append("cache hit unknown")
    if done.reduction_pct > 0:
        parts.append(f"prompt {format_pct(done.reduction_pct / 100)} smaller")
    if done.fallbacks:
        parts.append(f"fallback from {', '.join(done.fallbacks)}")
    return literal(" · ".join(parts))


def describe_error(error: NemoError) -> Content:
    """An engine error as the pane shows it: what went wrong, then how to fix it."""
    text = template("[b]✗ $title[/b]: $message", title=error.title, message=error.message)
    if error.fix:
        text += template("\n[b]Fix[/b]: $fix", fix=error.fix)
    return text


class QueryPane(Vertical):
    """Ask a question and watch the answer stream in.

    Args:
        engine: The engine queries are submitted to; None until it is built (see
            `attach_engine`), and meanwhile the plan line says so.
    """

    DEFAULT_CSS = """
    QueryPane {
        height: 1fr;
    }
    QueryPane > #query-controls {
        height: auto;
    }
    QueryPane #data-file {
        padding: 0 1;
        color: $text-muted;
    }
    QueryPane > #query-input {
        height: 5;
    }
    QueryPane > #query-plan, QueryPane > #query-activity, QueryPane > #query-stats {
        height: auto;
        color: $text-muted;
        padding: 0 1;
    }

    QueryPane > #query-error {
        height: auto;
        display: none;
        border: round $error;
        padding: 0 1;
    }
    QueryPane > #query-error.-shown {
        display: block;
    }
    """

    def __init__(self, engine: Engine | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = engine
        self._handle: QueryHandle | None = None
        self._data_file: Path | None = None
        self._plan: QueryPlan | None = None
        self._plan_timer: Timer | None = None
        self._answering = False
        self._model = ""
        self._error = ""
        self._blink_timer: Timer | None = None
        self._blink_stopped = False
        """True when the blink was stopped here (not by whoever set `cursor_blink`)."""

    def compose(self) -> ComposeResult:
        """Model selector and data file, the question, the plan, the answer, its stats."""
        with Horizontal(id="query-controls"):
            yield ModelPicker(id="model-select")
            yield Label("no data file (ctrl+t)", id="data-file")
        yield TextArea(
            id="query-input",
            soft_wrap=True,
            show_line_numbers=False,
            placeholder="Ask a question, then ctrl+s to send",
        )
        yield InfoLine(id="query-plan")
        yield AnswerView(id="answer-view")
        yield InfoLine(id="query-activity")
        yield Static("", id="query-error")
        yield InfoLine(id="query-stats")

    @property
    def ready(self) -> bool:
        """True once there is an engine to plan and send with."""
        return self._engine is not None

    @property
    def running(self) -> bool:
        """True while a submitted query has not ended."""
        return self._handle is not None

    @property
    def plan(self) -> QueryPlan | None:
        """The latest preview, for the cuts view."""
        return self._plan

    @property
    def answer(self) -> str:
        """The answer so far (or the last one)."""
        return self.query_one(AnswerView).text

    @property
    def data_file(self) -> Path | None:
        """The attached data file."""
        return self._data_file

    @property
    def model_override(self) -> str | None:
        """The model picked by hand, or None for auto."""
        return self.query_one(ModelPicker).value

    def attach_engine(self, engine: Engine) -> None:
        """Use this engine from now on, and preview the question typed while it was built."""
        self._engine = engine
        self.refresh_plan()

    def set_model_choices(self, names: list[str]) -> None:
        """Fill the selector, keeping the current pick when it is still offered."""
        self.query_one(ModelPicker).set_options(names)

    def choose_model(self, name: str) -> None:
        """Select a model in the selector, adding it when it is not offered yet."""
        picker = self.query_one(ModelPicker)
        if name not in picker.options:
            picker.set_options([*picker.options, name])
        picker.value = name

    def attach(self, path: Path | None) -> None:
        """Attach a data file to the next query (None detaches)."""
        self._data_file = path
        label = f"data: {path.name}" if path else "no data file (ctrl+t)"
        self.query_one("#data-file", Label).update(literal(label))
        self._schedule_plan()

    def current_query(self) -> Query | None:
        """The query the input describes, or None when the input is empty."""
        # The events module (and the core modules it carries) is imported on first use, not
        # with this module: the first frame does not need it.
        from nemo_tui.events import Query

        text = self.query_one("#query-input", TextArea).text.strip()
        if not text:
            return None
        return Query(text, model=self.model_override, data_file=self._data_file)

    async def send(self) -> bool:
        """Submit the question; False (with a notification) when there is nothing to send."""
        if self._engine is None:
            self.notify(ENGINE_STARTING, severity="warning")
            return False
        if self.running:
            self.notify("A query is running; press Esc to cancel it first.", severity="warning")
            return False
        query = self.current_query()
        if query is None:
            self.notify("Type a question first.", severity="warning")
            return False
        if self._plan_timer is not None:
            self._plan_timer.stop()
        self.refresh_plan()  # the line then shows the plan this query runs with
        self._clear_error()
        self.query_one("#query-stats", InfoLine).update("")
        self.query_one("#query-activity", InfoLine).update("Sending…")
        await self.query_one(AnswerView).begin("Answer")
        self._answering = False
        self._handle = self._engine.submit(query)
        return True

    def cancel(self) -> bool:
        """Stop the running query; False when none runs."""
        if self._handle is None:
            return False
        self._handle.cancel()
        self.query_one("#query-activity", InfoLine).update("Cancelling…")
        return True

    def feed(self, query_id: int, text: str) -> None:
        """Answer text for a query (ignored unless it is the one this pane sent)."""
        if self._handle is not None and self._handle.query.id == query_id:
            if not self._answering:
                self._answering = True
                self.query_one("#query-activity", InfoLine).update(
                    literal(f"{self._model} is answering… (esc cancels)")
                )
            self.query_one(AnswerView).feed(text)

    async def show_event(self, event: EngineEvent) -> None:
        """Show one engine event about the pane's query (others are ignored)."""
        from nemo_tui.events import (
            Cancelled,
            Done,
            Evicting,
            Failed,
            Fallback,
            Loading,
            Notice,
            PromptOptimized,
            Queued,
            Recommended,
        )

        if self._handle is None or event.query_id != self._handle.query.id:
            return
        activity = self.query_one("#query-activity", InfoLine)
        match event:
            case Queued(position=position) if position > 0:
                activity.update(f"Waiting behind {format_count(position)} other queries…")
            case Recommended():
                self._model = event.recommendation.model
                note = "your pick" if event.override else event.recommendation.reason
                activity.update(literal(f"Using {event.recommendation.model}: {note}"))
                if event.warning:
                    self.notify(
                        strip_terminal_controls(event.warning),
                        title="Model may not fit",
                        severity="warning",
                        markup=False,
                    )
            case PromptOptimized():
                opt = event.result
                if opt.truncated:
                    activity.update(
                        f"Prompt fitted to {format_count(event.budget_tokens)} tokens:"
                        f" {format_count(opt.original_tokens)}"
                        f" → {format_count(opt.optimized_tokens)}"
                    )
            case Loading():
                activity.update(literal(f"Loading {event.model} on {event.backend} (cold start)…"))
            case Evicting():
                activity.update(literal(f"Unloading {event.model}: {event.reason}"))
            case Fallback():
                self._model = event.to_model
                self._answering = False
                activity.update(
                    literal(f"{event.from_model} failed ({event.why}); trying {event.to_model}")
                )
            case Notice():
                activity.update(
                    template("[$warning]⚠ [/]$message", message=event.message)
                    if event.warning
                    else literal(event.message)
                )
            case Done():
                await self._end(event.text)
                activity.update("")
                self.query_one("#query-stats", InfoLine).update(describe_done(event))
            case Failed():
                await self._end(None)
                activity.update("The partial answer is kept above." if event.partial_text else "")
                self._error = f"{event.error.title}: {event.error.one_line()}"
                error = self.query_one("#query-error", Static)
                error.update(describe_error(event.error))
                error.add_class("-shown")
            case Cancelled():
                await self._end(None)
                activity.update("Cancelled; the partial answer is kept.")

    @property
    def error_text(self) -> str:
        """The error shown in the pane, or an empty string."""
        return self._error

    async def _end(self, final_text: str | None) -> None:
        # `running` stays true until the answer is drawn in full and its stream closed (which
        # awaits the Markdown), so nothing waiting for the end of the query sees it early.
        await self.query_one(AnswerView).finish(final_text)
        self._handle = None

    def _clear_error(self) -> None:
        self._error = ""
        self.query_one("#query-error", Static).remove_class("-shown")

    def on_mount(self) -> None:
        """The cursor blinks for `CURSOR_BLINK_S` from the start."""
        self._blink_timer = self.set_timer(CURSOR_BLINK_S, self._stop_blinking)

    @on(TextArea.Changed, "#query-input")
    @on(TextArea.SelectionChanged, "#query-input")
    def _keep_blinking(self) -> None:
        """Typing, or moving the cursor, makes it blink again for `CURSOR_BLINK_S`."""
        if self._blink_stopped:
            self._blink_stopped = False
            self.query_one("#query-input", TextArea).cursor_blink = True
        if self._blink_timer is not None:
            self._blink_timer.stop()
        self._blink_timer = self.set_timer(CURSOR_BLINK_S, self._stop_blinking)

    def _stop_blinking(self) -> None:
        area = self.query_one("#query-input", TextArea)
        if area.cursor_blink:
            self._blink_stopped = True
            area.cursor_blink = False

    @on(TextArea.Changed, "#query-input")
    @on(ModelPicker.Changed, "#model-select")
    def _schedule_plan(self) -> None:
        if self._plan_timer is not None:
            self._plan_timer.stop()
        self._plan_timer = self.set_timer(PLAN_DELAY_S, self.refresh_plan)

    def refresh_plan(self) -> None:
        """Preview how the typed query would run now."""
        self._plan_timer = None
        line = self.query_one("#query-plan", InfoLine)
        query = self.current_query()
        if query is None:
            self._plan = None
            line.update("")
            return
        if self._engine is None:
            self._plan = None
            line.update(STARTING)
            return
        try:
            self._plan = self._engine.plan_query(query)
        except NemoError as exc:
            self._plan = None
            line.update(template("[$error]$problem[/]", problem=exc.one_line()))
            return
        line.update(describe_plan(self._plan))
