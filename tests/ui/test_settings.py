"""Setting toggles reach the engine at once and are saved, keeping the user's file intact."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from nemo_tui.config import load_config
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel
from nemo_tui.ui.widgets.settings_panel import SETTING_KEYS, SettingsPanel
from tests.ui.support import make_rig, settle, started

USER_FILE = """\
# my nemo-tui settings
optimization:
  use_memory_mapping: false   # keep my weights out of the page cache
monitor:
  gauge_interval_s: 2
"""


async def test_toggling_a_setting_changes_the_engine_and_saves_the_file(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, config_text=USER_FILE)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(SettingsPanel)
        panel.focus()
        await pilot.press("down", "down", "down")  # context truncation
        await pilot.press("space")
        await settle(pilot, lambda: not rig.engine.config.optimization.context_truncation)
    text = rig.config_path.read_text()
    assert "context_truncation: false" in text
    assert "# my nemo-tui settings" in text
    assert "use_memory_mapping: false   # keep my weights out of the page cache" in text
    assert "gauge_interval_s: 2" in text
    assert load_config(rig.config_path).config.optimization.context_truncation is False


async def test_preferences_toggle_from_the_command_palette(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"Toggle Allow cloud")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await settle(pilot, lambda: not rig.engine.config.preferences.allow_fallback)
        panel = rig.app.screen.query_one(SettingsPanel)
        assert "preferences.allow_fallback" not in panel.selected
    assert "allow_fallback: false" in rig.config_path.read_text()


async def test_defaults_key_reverts_every_switch_and_saves(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, config_text=USER_FILE)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(SettingsPanel)
        panel.focus()
        await pilot.press("space")  # garbage collection off
        await settle(pilot, lambda: not rig.engine.config.optimization.enable_garbage_collection)
        await pilot.press("d")
        await settle(pilot, lambda: rig.engine.config.optimization.enable_garbage_collection)
        assert rig.engine.config.optimization.use_memory_mapping is True
        assert set(panel.selected) == set(SETTING_KEYS)
    saved = load_config(rig.config_path).config
    assert saved.optimization.use_memory_mapping is True
    assert saved.optimization.enable_garbage_collection is True
    assert "# my nemo-tui settings" in rig.config_path.read_text()


async def test_an_unwritable_config_is_reported_and_the_setting_still_applies(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    rig.config_path.mkdir()  # a directory where the file should be: the save must fail
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(SettingsPanel)
        panel.focus()
        await pilot.press("space")
        await settle(pilot, lambda: any("Setting not saved" in n for n in rig.notes))
        assert rig.engine.config.optimization.enable_garbage_collection is False
    # Still unsaved when the dashboard closes: `nemo-tui` says so on the terminal.
    assert rig.app.settings_not_saved is not None
    assert str(rig.config_path) in rig.app.settings_not_saved.one_line()


async def test_a_click_flips_the_switch_it_lands_on(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(SettingsPanel)
        recommendation = rig.app.screen.query_one(RecommendationPanel)
        row = SETTING_KEYS.index("optimization.batch_optimization")
        assert "[x] Batch optimization" in str(panel.render())
        # The side column scrolls, and the panels above the settings grow as the engine fills
        # them in: the switch is clicked once it is drawn on screen where it will stay.
        await settle(pilot, lambda: "Why" in str(recommendation.render()))
        side = rig.app.screen.query_one("#side")

        seen: list[object] = []

        def on_screen_and_still() -> bool:
            """Inside the side column, at the same place for the last three rounds."""
            panel.scroll_visible(animate=False, immediate=True)
            seen.append(panel.region if side.region.contains_region(panel.region) else None)
            return seen[-1] is not None and seen[-3:] == [seen[-1]] * 3

        await settle(pilot, on_screen_and_still)
        # Inside the border (1 cell) and the padding (1 cell), on the switch's line.
        await pilot.click(SettingsPanel, offset=(3, 1 + row))
        await settle(pilot, lambda: not rig.engine.config.optimization.batch_optimization)
        assert "[ ] Batch optimization" in str(panel.render())
        assert "optimization.batch_optimization" not in panel.selected


async def test_a_config_edited_into_another_encoding_is_reported_and_the_app_runs_on(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path, config_text=USER_FILE)
    latin1 = (USER_FILE + "# réglages\n").encode("latin-1")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        rig.config_path.write_bytes(latin1)  # re-saved by an editor while the dashboard runs
        panel = rig.app.screen.query_one(SettingsPanel)
        panel.focus()
        await pilot.press("space")
        await settle(pilot, lambda: any("Setting not saved" in n for n in rig.notes))
        note = next(n for n in rig.notes if "Setting not saved" in n)
        assert str(rig.config_path) in note
        assert "not UTF-8" in note
        assert rig.engine.config.optimization.enable_garbage_collection is False
        await pilot.press("space")  # still running: the switch flips back
        await settle(pilot, lambda: rig.engine.config.optimization.enable_garbage_collection)
    assert rig.config_path.read_bytes() == latin1


async def test_saving_waits_for_another_nemo_tui_without_freezing_the_dashboard(
    tmp_path: Path,
) -> None:
    """While another nemo-tui holds the config's save lock, toggles apply at once and the
    dashboard answers keys; both changes land in the file once the lock is free."""
    rig = make_rig(tmp_path, config_text=USER_FILE)
    lock_path = rig.config_path.with_name(rig.config_path.name + ".lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        async with rig.app.run_test(size=(120, 40)) as pilot:
            await started(pilot)
            rig.app.screen.query_one(SettingsPanel).focus()
            await pilot.press("down", "down", "down", "space")  # context truncation off
            await pilot.press("down", "space")  # batch optimization off
            await settle(pilot, lambda: not rig.engine.config.optimization.batch_optimization)
            assert not rig.engine.config.optimization.context_truncation
            assert "context_truncation" not in rig.config_path.read_text()

            fcntl.flock(lock, fcntl.LOCK_UN)
            await settle(pilot, lambda: "batch_optimization: false" in rig.config_path.read_text())
        saved = load_config(rig.config_path).config.optimization
        assert saved.context_truncation is False and saved.batch_optimization is False
    finally:
        os.close(lock)
