"""Analysis mode in the dashboard: the model's script is shown first and runs only on request,
in a real child process under limits; Esc stops it, a failure gets one repair round, the stats
count the runs, and in a small terminal the side panels fold to give the script the room."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from nemo_tui.core.analysis.run import AnalysisRun, RunLimits
from nemo_tui.ui.screens.path_prompt import PathPrompt
from nemo_tui.ui.screens.stats import StatsScreen
from nemo_tui.ui.widgets.analysis_view import (
    SHOWN_OUTPUT_CHARS,
    AnalysisView,
    ShownScript,
    describe_run,
)
from nemo_tui.ui.widgets.answer_view import AnswerView
from nemo_tui.ui.widgets.memory_panel import MemoryFigures
from nemo_tui.ui.widgets.query_pane import QueryPane
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel
from tests.fakes import Script
from tests.ui.support import CSV, answer_with, ask, make_rig, settle, started, with_data

COUNT = """import csv
import sys

with open(sys.argv[1], newline="") as handle:
    rows = list(csv.DictReader(handle))
print("patients:", len(rows))
"""

BROKEN = """import csv
import sys

with open(sys.argv[1], newline="") as handle:
    rows = list(csv.DictReader(handle))
print("heaviest:", max(row["weight"] for row in rows))
"""

FIXED = """import csv
import sys

with open(sys.argv[1], newline="") as handle:
    rows = list(csv.DictReader(handle))
print("oldest:", max(int(row["age"]) for row in rows))
"""

SLEEPY = """import sys
import time

print("reading", sys.argv[1], flush=True)
time.sleep(60)
"""


def text_of(widget: Static) -> str:
    return str(widget.render())


async def run(pilot: Pilot[None]) -> AnalysisView:
    """Press the run key and wait for the script's worker to end."""
    view = pilot.app.screen.query_one(AnalysisView)
    await pilot.press("ctrl+l")
    for worker in [w for w in pilot.app.workers if w.group == "analysis-run"]:
        await worker.wait()
    await settle(pilot, lambda: not view.running)
    return view


def table_rows(table: Table) -> dict[str, str]:
    """Each row's key and value, as a two-column stats table draws them."""
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    cells = [line.split("│")[1:3] for line in lines if line.count("│") == 3]
    return {key.strip(): value.strip() for key, value in cells}


def output_of(view: AnalysisView) -> str:
    return text_of(view.query_one("#analysis-output", Static))


async def test_the_script_is_shown_first_and_runs_only_on_request(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    data = tmp_path / "cohort.csv"
    data.write_text(CSV, encoding="utf-8")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        # Without a data file, the key asks for one first.
        await pilot.press("ctrl+n")
        await settle(pilot, lambda: isinstance(rig.app.screen, PathPrompt))
        rig.app.screen.query_one("#path-input", Input).value = str(data)
        await pilot.press("enter")
        await settle(pilot, lambda: pane.analysis_mode)
        assert "cohort.csv · analysis" in text_of(pane.query_one("#data-file", Static))
        assert "analysis mode" in str(pane.query_one("#query-input", TextArea).border_title)

        await ask(pilot, rig, answer_with(COUNT))
        assert "sys.argv[1]" in rig.backend.prompts[-1]
        view = pane.query_one(AnalysisView)
        assert pane.script is not None and pane.script.code == COUNT
        assert view.has_class("-shown") and pane.query_one(AnswerView).has_class("-hidden")
        notes = text_of(view.query_one("#analysis-notes", Static))
        assert "ctrl+l runs it" in notes and "memory" in notes
        await pilot.pause(0.2)
        assert rig.engine.metrics.analyses.run == 0  # nothing ran by itself

        await run(pilot)
        assert view.last_run is not None and view.last_run.ok
        assert "exit 0" in output_of(view)
        assert "patients: 3" in output_of(view)
        assert rig.engine.metrics.analyses.run == 1

        # Copy and save take the script, not the answer around it.
        await pilot.press("ctrl+g")
        assert rig.app.clipboard == COUNT
        await pilot.press("ctrl+o")
        await settle(pilot, lambda: isinstance(rig.app.screen, PathPrompt))
        assert rig.app.screen.query_one("#path-input", Input).value == "analysis.py"
        await pilot.press("escape")


async def test_a_failed_script_is_repaired_once_and_the_fix_runs(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await with_data(pilot, tmp_path)
        pane = await ask(pilot, rig, answer_with(BROKEN))
        writer = rig.backend.calls[-1]
        view = await run(pilot)
        assert view.last_run is not None and not view.last_run.ok
        output = output_of(view)
        assert "exit 1" in output and "stderr" in output and "KeyError: 'weight'" in output
        assert "f12 sends the error" in output

        rig.backend.script = Script(tokens=answer_with(FIXED))
        await pilot.press("f12")
        await settle(pilot, lambda: pane.script is not None and pane.script.repaired)
        prompt = rig.backend.prompts[-1]
        assert "KeyError: 'weight'" in prompt
        assert 'max(row["weight"] for row in rows)' in prompt
        assert "Describe the patients" in prompt
        assert rig.backend.calls[-1] == writer  # the model that wrote it
        assert pane.script is not None and pane.script.code == FIXED
        assert rig.engine.metrics.analyses.run == 1  # shown, not run

        await run(pilot)
        assert view.last_run is not None and view.last_run.ok
        assert "oldest: 51" in output_of(view)
        await pilot.press("f12")
        assert any("nothing to repair" in note for note in rig.notes)

        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(rig.app.screen, StatsScreen))
        screen = rig.app.screen
        assert isinstance(screen, StatsScreen)
        await settle(pilot, lambda: bool(screen.section_titles))
        [table] = [
            static.content
            for static in screen.query(Static)
            if isinstance(static.content, Table) and "Analysis" in str(static.content.title)
        ]
        rows = table_rows(table)
        assert (rows["run"], rows["failed"], rows["repaired"]) == ("2", "1", "1")
        assert rows["peak_rss_mb"].endswith("MB")


async def test_a_corrected_script_gets_no_second_repair(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await with_data(pilot, tmp_path)
        pane = await ask(pilot, rig, answer_with(BROKEN))
        await run(pilot)
        await pilot.press("f12")  # the "fix" fails the same way
        await settle(pilot, lambda: pane.script is not None and pane.script.repaired)
        view = await run(pilot)
        assert "this was the repair round" in output_of(view)
        asked = len(rig.backend.prompts)
        await pilot.press("f12")
        assert any("already the corrected one" in note for note in rig.notes)
        await pilot.pause(0.1)
        assert len(rig.backend.prompts) == asked


async def test_an_answer_without_code_leaves_nothing_to_run(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await with_data(pilot, tmp_path)
        pane = await ask(pilot, rig, ["I would compute ", "the mean age."])
        assert pane.error_text.startswith("No script to run: the answer has no code block")
        assert pane.answer == "I would compute the mean age."  # the model's words stay
        assert not pane.query_one(AnswerView).has_class("-hidden")
        assert pane.script is None
        await pilot.press("ctrl+l")
        assert "Analysis: Nothing to run: the answer has no code block." in rig.notes
        assert rig.engine.metrics.analyses.run == 0


async def test_escape_stops_a_long_script_and_the_dashboard_goes_on(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await with_data(pilot, tmp_path)
        pane = await ask(pilot, rig, answer_with(SLEEPY))
        view = pane.query_one(AnalysisView)
        summary = rig.app.screen.query_one("#memory-summary", Static)
        await pilot.press("ctrl+l")
        # While it runs, its memory shows beside the gauges (folded here: in the summary line).
        await settle(pilot, lambda: " · script " in text_of(summary), rounds=1000)
        assert "script" in rig.app.screen.query_one(MemoryFigures).readings
        activity = text_of(pane.query_one("#query-activity", Static))
        assert activity.startswith("Running the script…") and "(cap " in activity

        await pilot.press("escape")
        for worker in [w for w in rig.app.workers if w.group == "analysis-run"]:
            await worker.wait()
        await settle(pilot, lambda: not view.running)
        assert view.last_run is not None and view.last_run.cancelled
        assert view.last_run.wall_s < 30
        assert "stopped by you" in output_of(view)
        assert "script" not in rig.app.screen.query_one(MemoryFigures).readings
        assert " · script " not in text_of(summary)

        await pilot.press("ctrl+n")  # back to plain questions
        assert not pane.analysis_mode
        rig.backend.script = Script(tokens=["Still here."])
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer == "Still here.")
        assert not view.has_class("-shown")


async def test_the_side_panels_fold_while_an_answer_is_on_a_small_screen(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        screen = rig.app.screen
        figures = screen.query_one(MemoryFigures)
        recommendation = screen.query_one(RecommendationPanel)
        assert figures.display and not screen.has_class("-fold")

        await ask(pilot, rig, ["An answer."])
        assert screen.has_class("-fold")
        assert not figures.display
        assert text_of(screen.query_one("#memory-summary", Static)).startswith("Memory 25% used")
        assert text_of(recommendation).startswith("Recommended ")

        screen.query_one("#side").focus()  # focus (or a click) opens them again
        await settle(pilot, lambda: not screen.has_class("-fold"))
        assert figures.display and "Why" in text_of(recommendation)
        screen.query_one("#query-input").focus()
        await settle(pilot, lambda: screen.has_class("-fold"))


async def test_a_large_screen_keeps_the_side_panels_whole(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await ask(pilot, rig, ["An answer."])
        assert not rig.app.screen.has_class("-fold")
        assert rig.app.screen.query_one(MemoryFigures).display


async def test_analysis_mode_needs_a_data_file(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press("ctrl+n")
        await settle(pilot, lambda: isinstance(rig.app.screen, PathPrompt))
        await pilot.press("escape")  # no file, no analysis mode
        await settle(pilot, lambda: not isinstance(rig.app.screen, PathPrompt))
        assert not pane.analysis_mode

        await with_data(pilot, tmp_path)
        await pilot.press("ctrl+n")
        assert not pane.analysis_mode
        await pilot.press("ctrl+n")
        assert pane.analysis_mode
        pane.attach(None)  # detaching the file ends it
        assert not pane.analysis_mode
        assert text_of(pane.query_one("#data-file", Static)) == "no data file (ctrl+t)"
        assert pane.query_one("#query-input", TextArea).border_title is None


def a_run(stdout: str, stderr: str, exit_code: int = 1) -> AnalysisRun:
    limits = RunLimits(memory_mb=1024, cpu_s=60, wall_s=120, output_bytes=2**20, file_mb=512)
    return AnalysisRun(exit_code, stdout, stderr, 0.5, 40.0, None, limits)


SHOWN = ShownScript("print(1)\n", "Describe", Path("cohort.csv"), "phi3:mini", ())


def test_script_output_is_shown_as_written_never_as_markup_or_terminal_controls() -> None:
    shown = str(describe_run(SHOWN, a_run("[b]bold?[/b] x[/]\x1b]52;c;aGk=\x07 done\n", "")))
    assert "[b]bold?[/b] x[/] done" in shown
    assert "\x1b" not in shown and "aGk=" not in shown


def test_long_output_keeps_the_start_of_stdout_and_the_end_of_stderr() -> None:
    stdout = "".join(f"row {n}\n" for n in range(10_000))
    stderr = "noise\n" * 10_000 + "Traceback (most recent call last):\nKeyError: 'age'\n"
    shown = str(describe_run(SHOWN, a_run(stdout, stderr)))
    assert "row 0\n" in shown and "row 9999" not in shown
    assert "characters more" in shown and "characters before" in shown
    assert shown.endswith("KeyError: 'age'")
    assert len(shown) < 2 * SHOWN_OUTPUT_CHARS + 1_000


async def test_the_code_is_drawn_in_the_colours_of_the_theme(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await with_data(pilot, tmp_path)
        await ask(pilot, rig, answer_with(COUNT))
        code = rig.app.screen.query_one("#analysis-code", Static)

        def background() -> str:
            syntax = code.content
            assert isinstance(syntax, Syntax)
            return str(syntax.background_style.bgcolor.name)  # type: ignore[union-attr]

        assert background() == code.background_colors[1].hex.lower()
        dark = background()
        rig.app.theme = "nemo-light"
        await settle(pilot, lambda: background() != dark)
        assert background() == code.background_colors[1].hex.lower()


async def test_with_too_little_memory_free_the_run_key_says_why(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await with_data(pilot, tmp_path)
        pane = await ask(pilot, rig, answer_with(COUNT))
        rig.sampler.set_available(0.5)  # under the cache limit, nothing is left for a script
        await pilot.press("ctrl+l")
        assert any(note.startswith("Script not run: not running the script") for note in rig.notes)
        notes = text_of(pane.query_one(AnalysisView).query_one("#analysis-notes", Static))
        assert notes.startswith("⚠ ctrl+l: not running the script")
        assert rig.engine.metrics.analyses.run == 0
        await pilot.resize_terminal(80, 24)  # a smaller terminal folds the panels
        await settle(pilot, lambda: rig.app.screen.has_class("-fold"))
