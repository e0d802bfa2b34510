"""The main screen's analysis keys: analysis mode (ctrl+n), run (ctrl+l), repair (f12), and
the worker that runs a script.

The engine runs the script in a child process; the worker only awaits it, so the dashboard
stays live. Meanwhile a timer shows the script's time and memory, in the query pane and beside
the memory gauges, and Esc stops it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.screen import Screen
from textual.timer import Timer

from nemo_tui.errors import NemoError
from nemo_tui.ui.messages import ScriptRunEnded
from nemo_tui.ui.widgets.analysis_view import AnalysisView, ShownScript
from nemo_tui.ui.widgets.memory_panel import MemoryPanel, ScriptMemory
from nemo_tui.ui.widgets.query_pane import ENGINE_STARTING, QueryPane
from nemo_tui.units import format_mb, format_seconds

if TYPE_CHECKING:
    from nemo_tui.core.analysis.run import AnalysisRun
    from nemo_tui.engine import Engine

RUN_TICK_S = 0.25
"""How often a running script's time and memory are shown afresh."""

TITLE = "Analysis"
"""The heading of the notifications below."""


class AnalysisActions(Screen[None]):
    """The analysis actions, mixed into `MainScreen`, which sets `_engine`.

    A key that cannot act now says why in a notification rather than doing nothing.
    """

    _engine: Engine | None
    """The engine; None while it is being built."""
    _run_timer: Timer | None = None
    """Shows the running script's progress; None while no script runs."""
    _run_started = 0.0
    """When the running script started (monotonic seconds)."""
    _run_cap_mb = 0.0
    """The running script's memory cap."""

    def action_toggle_analysis(self) -> None:
        """Turn analysis mode on or off; with no data file, ask for one first."""
        from nemo_tui.ui.screens.path_prompt import PathPrompt

        pane = self.query_one(QueryPane)
        if pane.set_analysis_mode(not pane.analysis_mode):
            return

        def attached(path: str | None) -> None:
            if path:
                pane.attach(Path(path))
                pane.set_analysis_mode(True)

        self.app.push_screen(
            PathPrompt(
                "Analysis mode: attach a data file",
                "The model writes a script that reads this CSV, TSV or JSON-lines file.",
                must_exist=True,
            ),
            attached,
        )

    def action_run_script(self) -> None:
        """Run the script on screen in a child process, under the engine's limits."""
        view = self.query_one(AnalysisView)
        pane = self.query_one(QueryPane)
        script = view.script
        if view.running:
            self.notify("The script is running; esc stops it.", title=TITLE)
        elif script is None:
            why = view.problem or "no script is on screen (ctrl+n turns on analysis mode)"
            self.notify(f"Nothing to run: {why}.", title=TITLE, severity="warning", markup=False)
        elif self._engine is None:
            self.notify(ENGINE_STARTING, title=TITLE, severity="warning")
        elif pane.running:
            self.notify(
                "A query is running; wait for it, or press Esc to cancel it.",
                title=TITLE,
                severity="warning",
            )
        else:
            limits = pane.script_limits()
            if isinstance(limits, NemoError):
                view.show_limits(limits)
                self.notify(
                    limits.one_line(), title="Script not run", severity="warning", markup=False
                )
                return
            view.begin_run()
            self._run_started = time.monotonic()
            self._run_cap_mb = limits.memory_mb
            self._run_timer = self.set_interval(RUN_TICK_S, self._show_run_progress)
            self._show_run_progress()
            self._run_script(self._engine, script)
            self.refresh_bindings()

    def stop_script(self) -> bool:
        """Stop the running script (Esc); False when none runs."""
        if self._engine is None or not self.query_one(AnalysisView).running:
            return False
        if self._engine.stop_analysis():
            self.query_one(QueryPane).show_activity("Stopping the script…")
        return True

    async def action_repair_script(self) -> None:
        """Send the failed script and its error to the model that wrote it, for one fix."""
        from nemo_tui.core.analysis.prompt import ScriptRequest, failure_of
        from nemo_tui.events import Query

        view = self.query_one(AnalysisView)
        script, run = view.script, view.last_run
        if script is None:
            self.notify("Nothing to repair: no script is on screen.", title=TITLE)
        elif view.running:
            self.notify("The script is still running; esc stops it.", title=TITLE)
        elif run is None:
            self.notify("Run the script first (ctrl+l): a repair sends its error.", title=TITLE)
        elif run.ok:
            self.notify("The script ran without an error: nothing to repair.", title=TITLE)
        elif script.repaired:
            self.notify(
                "This script is already the corrected one, and a question gets one repair"
                " round. Ask again (ctrl+s) for a new script.",
                title=TITLE,
                severity="warning",
            )
        else:
            request = ScriptRequest(script.libraries, repair=failure_of(script.code, run))
            await self.query_one(QueryPane).submit(
                Query(
                    script.question,
                    model=script.model,
                    data_file=script.data_file,
                    analysis=request,
                    host=script.host,
                )
            )

    @work(group="analysis-run", exit_on_error=False, description="Running the analysis script")
    async def _run_script(self, engine: Engine, script: ShownScript) -> None:
        outcome: AnalysisRun | NemoError | None = None
        try:
            outcome = await engine.run_analysis(
                script.code, script.data_file, repaired=script.repaired
            )
        except NemoError as exc:
            outcome = exc
        finally:
            # Whatever happened, the screen leaves its running state; a worker that broke is
            # reported by the screen's worker-failure notice as well.
            self.post_message(ScriptRunEnded(outcome))

    def on_script_run_ended(self, message: ScriptRunEnded) -> None:
        """Show what the run did, and take the running script's figures off the screen."""
        if self._run_timer is not None:
            self._run_timer.stop()
            self._run_timer = None
        self.query_one(MemoryPanel).show_script(None)
        pane = self.query_one(QueryPane)
        pane.show_activity("")
        view = self.query_one(AnalysisView)
        view.end_run(message.outcome)
        # The memory cap of the next run follows the memory free then; say what it is now.
        view.show_limits(pane.script_limits())
        self.refresh_bindings()

    def _show_run_progress(self) -> None:
        engine = self._engine
        rss_mb = engine.analysis_rss_mb() if engine is not None else None
        took = format_seconds(time.monotonic() - self._run_started)
        memory = format_mb(rss_mb) if rss_mb is not None else "starting"
        self.query_one(QueryPane).show_activity(
            f"Running the script… {took}, {memory} (cap {format_mb(self._run_cap_mb)})"
            " · esc stops it"
        )
        self.query_one(MemoryPanel).show_script(ScriptMemory(rss_mb, self._run_cap_mb))
