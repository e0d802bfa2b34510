"""Help lists every key, the palette reaches every action, stats shows every section."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding
from textual.widgets import DataTable

from nemo_tui.ui.screens.help import HelpScreen
from nemo_tui.ui.screens.main import MainScreen
from nemo_tui.ui.screens.stats import StatsScreen, format_stat
from nemo_tui.ui.widgets.key_bar import KeyBar
from nemo_tui.ui.widgets.settings_panel import SettingsPanel
from nemo_tui.ui.widgets.title_bar import TitleBar
from tests.ui.support import make_rig, settle, started


async def test_question_mark_shows_every_binding(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        rig.app.screen.query_one("#answer-view").focus()  # out of the question box
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(rig.app.screen, HelpScreen))
        table = rig.app.screen.query_one(DataTable)
        described = {str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        for binding in Binding.make_bindings(MainScreen.BINDINGS):
            assert (binding.tooltip or binding.description) in described
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(rig.app.screen, MainScreen))


async def test_every_action_is_in_the_command_palette(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        titles = [command.title for command in rig.app.get_system_commands(rig.app.screen)]
        for binding in Binding.make_bindings(MainScreen.BINDINGS):
            if binding.action.startswith("app."):
                continue
            wanted = binding.tooltip or binding.description
            assert any(title.startswith(wanted) for title in titles), binding
        assert any(title.startswith("Help") for title in titles)
        assert any(title.startswith("Stats") for title in titles)
        assert any(title == "Theme" for title in titles)
        assert any(title.startswith("Toggle Context truncation") for title in titles)


async def test_stats_screen_shows_system_models_metrics_and_backend_health(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(rig.app.screen, StatsScreen))
        screen = rig.app.screen
        assert isinstance(screen, StatsScreen)
        await settle(pilot, lambda: bool(screen.section_titles))
        titles = screen.section_titles
        assert any("System memory" in title for title in titles)
        assert any("Models" in title for title in titles)
        assert any("Optimization" in title for title in titles)
        assert any("Query metrics" in title for title in titles)
        assert "Backend health" in titles
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(rig.app.screen, MainScreen))


def test_stat_figures_are_formatted_by_what_they_are() -> None:
    assert format_stat(("total_mb",), 2048.0, now=0) == "2.0 GB"
    assert format_stat(("latency", "total_s", "p50"), 2.5, now=0) == "2.5 s"
    assert format_stat(("latency", "tokens_per_s", "p90"), 42.0, now=0) == "42.0 tok/s"
    assert format_stat(("cache_hit_rate",), 0.5, now=0) == "50.0%"
    assert format_stat(("percent",), 75.0, now=0) == "75.0%"
    assert format_stat(("expires_at",), 160.0, now=100.0) == "in 1m 00s"
    assert format_stat(("queries",), 1234, now=0) == "1,234"
    assert format_stat(("up",), True, now=0) == "yes"
    assert format_stat(("version",), None, now=0) == "n/a"


def test_a_size_no_backend_reported_is_unknown_not_not_applicable() -> None:
    assert format_stat(("size_mb",), None, now=0) == "unknown"
    assert format_stat(("models", "resident_total_mb"), None, now=0) == "unknown"
    assert format_stat(("cgroup_limit_mb",), None, now=0) == "n/a"


async def test_the_footer_shows_the_keys_that_work_now_in_order(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        bar = rig.app.screen.query_one(KeyBar)
        line = str(bar.render())
        # The screen's keys in the order they are declared; the palette at the far right.
        assert line.lstrip().startswith("f1 Help  ^s Send  f2 Stats")
        assert line.rstrip().endswith("^p palette")
        assert len(line) == 120
        assert "Cancel" not in line  # nothing runs, so esc does nothing and is not offered

        rig.app.screen.query_one(SettingsPanel).focus()
        await pilot.pause()
        # The focused panel's own keys come first.
        assert str(bar.render()).lstrip().startswith("d Defaults  f1 Help")


async def test_the_footer_drops_what_does_not_fit_but_keeps_the_palette(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(60, 24)) as pilot:
        await started(pilot)
        line = str(rig.app.screen.query_one(KeyBar).render())
        assert len(line) == 60
        assert line.rstrip().endswith("^p palette")
        assert "f1 Help" in line
        assert "f7 Plot" not in line


async def test_clicking_a_footer_hint_presses_its_key(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        bar = rig.app.screen.query_one(KeyBar)
        column = str(bar.render()).index("f2 Stats")
        await pilot.click(KeyBar, offset=(column + 1, 0))
        await settle(pilot, lambda: isinstance(rig.app.screen, StatsScreen))


async def test_the_title_bar_follows_the_screen(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        title = str(rig.app.screen.query_one(TitleBar).render())
        assert title == "nemo-tui — backends: ollama up"
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(rig.app.screen, StatsScreen))
        assert str(rig.app.screen.query_one(TitleBar).render()) == "nemo-tui — Stats"
