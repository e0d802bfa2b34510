"""Which cells a redraw repaints: only those whose character or style changed, column by column."""

from __future__ import annotations

from textual.content import Content
from textual.geometry import Region

from nemo_tui.ui.widgets.changed_cells import changed_regions

WIDTH = 40


def test_an_unchanged_drawing_repaints_nothing() -> None:
    lines = [Content("RAM 4.0 GB / 16.0 GB"), Content.styled("NORMAL", "bold")]
    assert changed_regions(lines, list(lines), WIDTH) == []


def test_a_changed_figure_repaints_from_its_first_to_its_last_changed_cell() -> None:
    before = [Content("RAM 4.0 GB / 16.0 GB"), Content("Swap no swap")]
    after = [Content("RAM 4.5 GB / 16.0 GB"), Content("Swap no swap")]
    assert changed_regions(before, after, WIDTH) == [Region(6, 0, 1, 1)]


def test_a_colour_change_alone_is_repainted() -> None:
    before = [Content("████░░░░").stylize("$gauge-ok", 0, 4)]
    after = [Content("████░░░░").stylize("$gauge-warn", 0, 4)]
    assert changed_regions(before, after, WIDTH) == [Region(0, 0, 4, 1)]


def test_a_longer_figure_repaints_everything_it_moves() -> None:
    before = [Content("RSS 58 MB · models 0 MB")]
    after = [Content("RSS 102 MB · models 0 MB")]
    # Each cell after the figure moved one column to the right, up to the new end.
    assert changed_regions(before, after, WIDTH) == [Region(4, 0, 20, 1)]


def test_a_line_that_appears_or_goes_is_repainted_whole() -> None:
    assert changed_regions([Content("a")], [Content("a"), Content("new")], WIDTH) == [
        Region(0, 1, 3, 1)
    ]
    assert changed_regions([Content("a"), Content("old")], [Content("a")], WIDTH) == [
        Region(0, 1, 3, 1)
    ]


def test_a_line_with_wide_characters_is_repainted_across_the_width() -> None:
    before = [Content("模型 1 GB")]
    after = [Content("模型 2 GB")]
    assert changed_regions(before, after, WIDTH) == [Region(0, 0, WIDTH, 1)]
