"""The query pane: the question, the model override, the plan preview, the answer and its stats.

In analysis mode (`ctrl+n`, with a data file attached) the question asks the model for a
script instead of an answer; once the answer is in, the script is taken out of it and shown in
the analysis view in place of the answer. Running it is the screen's job, and only on request.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Label, Static, TextArea

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.errors import NemoError
from nemo_tui.ui.server_text import literal, template
from nemo_tui.ui.widgets.analysis_view import AnalysisView, ShownScript
from nemo_tui.ui.widgets.answer_view import AnswerView
from nemo_tui.ui.widgets.info_line import InfoLine
from nemo_tui.ui.widgets.model_picker import HostPicker, ModelPicker
from nemo_tui.units import format_count, format_pct, format_rate, format_seconds

if TYPE_CHECKING:
    from nemo_tui.core.analysis.run import RunLimits
    from nemo_tui.engine import Engine, QueryHandle, QueryPlan
    from nemo_tui.events import Done, EngineEvent, Query, Recommended

STARTING = "[dim]starting the engine…[/]"
"""What the plan line says while there is no engine to plan with."""

ENGINE_STARTING = "The engine is still starting; try again in a moment."
"""The notice for a key that needs the engine before it exists (or has probed its backends)."""

PLAN_DELAY_S = 0.4
"""The plan preview waits until typing pauses this long, so it is not rebuilt per key."""

NO_DATA_FILE = "no data file (ctrl+t)"
"""The data file label while none is attached."""

ANALYSIS_MODE_TITLE = "analysis mode: the model writes a script"
"""The question box's title while the next question asks for a script."""

CURSOR_BLINK_S = 10.0
"""The question box's cursor stops blinking this long after the last key, and stays shown.
Every blink repaints the cursor's line, about 300 bytes a second to the terminal, which an
unattended dashboard should not send (over SSH every byte travels); desktop toolkits stop the
blink after about as long."""


CLOUD = "in the cloud"
"""Where a cloud model runs, in a lab of several hosts."""


def where_runs(host: str | None, *, local: bool) -> str:
    """` on gpu-box`, or ` in the cloud` for a cloud model (`local` False); "" without a host."""
    if not local:
        return f" {CLOUD}"
    return f" on {host}" if host else ""


def describe_plan(plan: QueryPlan, local_host: str | None = None) -> Content:
    """The preview line: complexity, model, and how much the prompt shrinks.

    Args:
        plan: The plan.
        local_host: This machine's name when the lab has other hosts: the line then says which
            host runs the model. None leaves the host out.
    """
    rec = plan.recommendation
    how = "your pick" if plan.override else "auto"
    if plan.query.host is not None and local_host is not None:
        how += ", pinned"
    opt = plan.optimized
    size = f"{format_count(opt.original_tokens)} tokens"
    if opt.truncated:
        size = (
            f"{format_count(opt.original_tokens)} → {format_count(opt.optimized_tokens)} tokens,"
            f" {format_pct(opt.reduction_pct / 100)} smaller (ctrl+r shows the cuts)"
        )
    where = where_runs(plan.host or local_host, local=rec.local) if local_host else ""
    line = literal(
        f"{plan.complexity.level.value} complexity · {rec.model}{where} ({how}) · {size}"
    )
    if plan.warning:
        line += template("\n[$warning]⚠ $warning_text[/]", warning_text=plan.warning)
    return line


def describe_done(done: Done, *, hosts: bool = False) -> Content:
    """The stats line after an answer.

    Args:
        done: The answer's final event.
        hosts: True when the lab has other hosts: the line then says which host answered.
    """
    where = where_runs(done.host, local=done.local) if hosts else ""
    parts = [
        f"{done.model}{where} ({done.backend})",
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
    QueryPane #data-file.-analysis {
        color: $accent;
        text-style: bold;
    }
    QueryPane > #query-input {
        height: 5;
    }
    QueryPane > #query-input.-analysis {
        border-title-color: $accent;
        border-title-style: bold;
    }
    QueryPane > #answer-view.-hidden {
        display: none;
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

    class Submitted(Message):
        """A query was handed to the engine: the answer area fills from now on."""

    def __init__(self, engine: Engine | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = engine
        self._handle: QueryHandle | None = None
        self._data_file: Path | None = None
        self._analysis = False
        self._libraries: tuple[str, ...] | None = None
        """What scripts may import besides the standard library, once the engine has said."""
        self._has_output = False
        self._plan: QueryPlan | None = None
        self._plan_timer: Timer | None = None
        self._answering = False
        self._model = ""
        self._error = ""
        self._local_host: str | None = None
        """This machine's name while the lab has other hosts; None without any."""
        self._blink_timer: Timer | None = None
        self._blink_stopped = False
        """True when the blink was stopped here (not by whoever set `cursor_blink`)."""

    def compose(self) -> ComposeResult:
        """Model selector and data file, the question, the plan, the answer, its stats."""
        with Horizontal(id="query-controls"):
            yield ModelPicker(id="model-select")
            host_picker = HostPicker(id="host-select")
            host_picker.display = False
            yield host_picker
            yield Label(NO_DATA_FILE, id="data-file")
        yield TextArea(
            id="query-input",
            soft_wrap=True,
            show_line_numbers=False,
            placeholder="Ask a question, then ctrl+s to send",
        )
        yield InfoLine(id="query-plan")
        yield AnswerView(id="answer-view")
        yield AnalysisView(id="analysis-view")
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
    def has_output(self) -> bool:
        """True once a query was sent: an answer or a script takes the pane's room."""
        return self._has_output

    @property
    def analysis_mode(self) -> bool:
        """True when the next question asks the model for an analysis script."""
        return self._analysis

    @property
    def script(self) -> ShownScript | None:
        """The script on screen, if one is."""
        return self.query_one(AnalysisView).script

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

    @property
    def host_override(self) -> str | None:
        """The host the next query is pinned to, or None when routing picks it."""
        return self.query_one(HostPicker).value

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

    def set_hosts(self, names: list[str], local_host: str) -> None:
        """Offer the lab's hosts to pin a query to (this machine first); with none, the host
        picker hides and the lines say nothing of hosts.

        Args:
            names: Every host, this machine's name first; empty when there is no other host.
            local_host: This machine's name.
        """
        picker = self.query_one(HostPicker)
        # The hosts are asked every few seconds while one is down; the list rarely changes.
        if names != picker.options:
            picker.set_options(names)
            picker.display = bool(names)
        lab = local_host if names else None
        if lab != self._local_host:
            self._local_host = lab
            self._schedule_plan()

    def choose_host(self, name: str | None) -> None:
        """Pin the next queries to a host (None lets routing pick)."""
        self.query_one(HostPicker).value = name

    def attach(self, path: Path | None) -> None:
        """Attach a data file to the next query (None detaches, and ends analysis mode)."""
        self._data_file = path
        if path is None:
            self._analysis = False
        self._show_mode()
        self._schedule_plan()

    def set_analysis_mode(self, on: bool) -> bool:
        """Ask the next question for a script (True) or an answer; False when asked for a
        script with no data file attached, which leaves the mode off."""
        if on and self._data_file is None:
            return False
        self._analysis = on
        self._show_mode()
        self._schedule_plan()
        if on and self._libraries is None and self._engine is not None:
            self._learn_libraries(self._engine)
        return True

    def _show_mode(self) -> None:
        path = self._data_file
        label = self.query_one("#data-file", Label)
        label.set_class(self._analysis, "-analysis")
        area = self.query_one("#query-input", TextArea)
        area.set_class(self._analysis, "-analysis")
        if path is None:
            label.update(NO_DATA_FILE)
        else:
            label.update(literal(f"data: {path.name}" + (" · analysis" if self._analysis else "")))
        area.border_title = ANALYSIS_MODE_TITLE if self._analysis else None
        area.placeholder = (
            "Ask about the data; the model answers with a script (ctrl+s sends)"
            if self._analysis
            else "Ask a question, then ctrl+s to send"
        )

    @work(group="script-libraries", exclusive=True, exit_on_error=False)
    async def _learn_libraries(self, engine: Engine) -> None:
        """Ask once, ahead of the first analysis question, so sending it does not wait."""
        try:
            self._libraries = await engine.script_libraries()
        except NemoError:
            # Sending asks again and shows the error where the answer would be.
            return

    def current_query(self) -> Query | None:
        """The query the input describes, or None when the input is empty."""
        # The events module (and the core modules it carries) is imported on first use, not
        # with this module: the first frame does not need it.
        from nemo_tui.core.analysis.prompt import ScriptRequest
        from nemo_tui.events import Query

        text = self.query_one("#query-input", TextArea).text.strip()
        if not text:
            return None
        analysis = None
        if self._analysis and self._data_file is not None:
            analysis = ScriptRequest(self._libraries or ())
        return Query(
            text,
            model=self.model_override,
            data_file=self._data_file,
            analysis=analysis,
            host=self.host_override,
        )

    async def send(self) -> bool:
        """Submit the question; False (with a notification) when there is nothing to send."""
        if not self._may_submit():
            return False
        query = self.current_query()
        if query is None:
            self.notify("Type a question first.", severity="warning")
            return False
        if query.analysis is not None:
            from nemo_tui.core.analysis.prompt import ScriptRequest

            assert self._engine is not None  # `_may_submit` checked
            try:
                self._libraries = await self._engine.script_libraries()
            except NemoError as exc:
                self._show_error(exc)
                return False
            query = replace(query, analysis=ScriptRequest(self._libraries))
        if self._plan_timer is not None:
            self._plan_timer.stop()
        self.refresh_plan()  # the line then shows the plan this query runs with
        return await self.submit(query)

    async def submit(self, query: Query) -> bool:
        """Hand a query to the engine (a typed question, or a repair round) and clear the
        answer area for it; False (with a notification) when one is already running."""
        if not self._may_submit():
            return False
        assert self._engine is not None  # `_may_submit` checked
        self._clear_error()
        self.query_one("#query-stats", InfoLine).update("")
        self.query_one(AnalysisView).clear()
        self.query_one(AnswerView).remove_class("-hidden")
        analysis = query.analysis
        if analysis is None:
            title, sending = "Answer", "Sending…"
        elif analysis.repair is None:
            title, sending = "Answer · analysis script", "Asking for a script…"
        else:
            title, sending = "Answer · corrected script", "Asking for a corrected script…"
        self.query_one("#query-activity", InfoLine).update(sending)
        await self.query_one(AnswerView).begin(title)
        self._answering = False
        self._handle = self._engine.submit(query)
        self._has_output = True
        self.post_message(self.Submitted())
        return True

    def _may_submit(self) -> bool:
        if self._engine is None:
            self.notify(ENGINE_STARTING, severity="warning")
            return False
        if self.running:
            self.notify("A query is running; press Esc to cancel it first.", severity="warning")
            return False
        if self.query_one(AnalysisView).running:
            self.notify("A script is running; press Esc to stop it first.", severity="warning")
            return False
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
        from nemo_tui.core.models.routing import CLOUD_HOST
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
                activity.update(literal(self._describe_pick(event)))
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
                where = ""
                if self._local_host is not None and event.to_host:
                    where = where_runs(event.to_host, local=event.to_host != CLOUD_HOST)
                activity.update(
                    literal(
                        f"{event.from_model} failed ({event.why}); trying {event.to_model}{where}"
                    )
                )
            case Notice():
                activity.update(
                    template("[$warning]⚠ [/]$message", message=event.message)
                    if event.warning
                    else literal(event.message)
                )
            case Done():
                query = self._handle.query
                await self._end(event.text)
                activity.update("")
                self.query_one("#query-stats", InfoLine).update(
                    describe_done(event, hosts=self._local_host is not None)
                )
                self._take_script(query, event)
            case Failed():
                await self._end(None)
                activity.update("The partial answer is kept above." if event.partial_text else "")
                self._show_error(event.error)
            case Cancelled():
                await self._end(None)
                activity.update("Cancelled; the partial answer is kept.")

    def _describe_pick(self, event: Recommended) -> str:
        """`Using phi3:mini: why`; in a lab of several hosts, with the host that runs it."""
        rec = event.recommendation
        note = "your pick" if event.override else rec.reason
        if self._local_host is None:
            return f"Using {rec.model}: {note}"
        where = where_runs(event.host, local=rec.local)
        # Routing's reason starts with the model and its host when it chose another host.
        if note.startswith(f"{rec.model}{where}:"):
            return f"Using {note}"
        return f"Using {rec.model}{where}: {note}"

    def show_activity(self, text: Content | str) -> None:
        """Put a line of progress under the answer (a running script's); "" hides it."""
        self.query_one("#query-activity", InfoLine).update(text)

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

    def _show_error(self, error: NemoError) -> None:
        self._error = f"{error.title}: {error.one_line()}"
        box = self.query_one("#query-error", Static)
        box.update(describe_error(error))
        box.add_class("-shown")

    def _take_script(self, query: Query, done: Done) -> None:
        """Take the script out of an analysis answer and show it in place of the answer, or
        say why there is none (the answer stays, so the model's words can be read)."""
        from nemo_tui.core.analysis.code_block import extract_script

        request = query.analysis
        if request is None or query.data_file is None:
            return
        view = self.query_one(AnalysisView)
        extracted = extract_script(done.text, request.libraries)
        if extracted.code is None:
            view.show_problem(extracted.problem)
            self._show_error(
                NemoError(
                    extracted.problem,
                    title="No script to run",
                    fix="ask again (ctrl+s), perhaps naming what the script should print",
                )
            )
            return
        script = ShownScript(
            extracted.code,
            query.text,
            query.data_file,
            done.model,
            request.libraries,
            repaired=request.repair is not None,
            warnings=extracted.warnings,
            host=(done.host or None) if self._local_host is not None and done.local else None,
        )
        view.show_script(script, self.script_limits())
        self.query_one(AnswerView).add_class("-hidden")

    def script_limits(self) -> RunLimits | NemoError:
        """The limits a script started now would get, or why none could start."""
        if self._engine is None:
            return NemoError(ENGINE_STARTING)
        try:
            return self._engine.analysis_limits()
        except NemoError as exc:
            return exc

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
    @on(ModelPicker.Changed, "#host-select")
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
        line.update(describe_plan(self._plan, self._local_host))
