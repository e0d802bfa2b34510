"""Themes: the bundled files load, `--theme` is remembered, a broken file falls back with a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_tui import paths
from nemo_tui.config import load_config
from nemo_tui.ui.themes import GAUGE_VARIABLES, ThemeFileError, load_theme_file, load_themes
from tests.ui.support import make_rig, settle, started

BUNDLED = paths.bundled_themes_dir()


def test_the_bundled_themes_load_with_gauge_colours() -> None:
    found = load_themes([BUNDLED])
    names = {theme.name for theme in found.themes}
    assert {"nemo-dark", "nemo-light", "nemo-high-contrast"} <= names
    assert found.problems == ()
    for theme in found.themes:
        assert set(GAUGE_VARIABLES) <= set(theme.variables)


def test_a_theme_with_a_typo_or_a_bad_colour_is_refused_with_the_file_name(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: mine\nprimery: '#ffffff'\n")
    with pytest.raises(ThemeFileError, match="typo.yaml"):
        load_theme_file(typo)
    colour = tmp_path / "colour.yaml"
    colour.write_text("name: mine\nprimary: '#fff'\nvariables:\n  gauge-ok: notacolour\n")
    with pytest.raises(ThemeFileError, match="gauge-ok"):
        load_theme_file(colour)


def test_a_user_theme_overrides_a_bundled_one_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "dark.yaml").write_text("name: nemo-dark\nprimary: '#123456'\n")
    found = load_themes([BUNDLED, tmp_path])
    dark = next(theme for theme in found.themes if theme.name == "nemo-dark")
    assert dark.primary == "#123456"


async def test_theme_flag_is_used_and_remembered(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, theme="nemo-light")
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        assert rig.app.theme == "nemo-light"
        await settle(pilot, lambda: rig.config_path.exists())
    assert load_config(rig.config_path).config.ui.theme == "nemo-light"


async def test_switching_theme_at_run_time_is_remembered(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        assert rig.app.theme == "nemo-dark"
        assert not rig.config_path.exists()  # starting with the default saves nothing
        rig.app.theme = "nemo-high-contrast"
        await settle(pilot, lambda: rig.config_path.exists())
    assert load_config(rig.config_path).config.ui.theme == "nemo-high-contrast"


async def test_a_broken_theme_file_falls_back_to_the_default_with_a_notification(
    tmp_path: Path,
) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    (user / "mine.yaml").write_text("name: mine\nprimary: [not, a, colour]\n")
    rig = make_rig(
        tmp_path,
        config_text="ui:\n  theme: mine\n",
        theme_dirs=[BUNDLED, user],
    )
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        assert rig.app.theme == "nemo-dark"
        assert any("mine.yaml" in note for note in rig.notes)
        assert any("No usable theme named 'mine'" in note for note in rig.notes)
    # The user's choice is not overwritten by the fallback.
    assert load_config(rig.config_path).config.ui.theme == "mine"


async def test_no_color_turns_the_screen_monochrome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        assert rig.app.no_color
        # Colour is never the only signal: the level is also written out.
        assert "NORMAL" in str(rig.app.screen.query_one("#memory-figures").render())
