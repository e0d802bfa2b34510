"""Gauge lines: the bar fills the room the label and figures leave, and a panel's bars line up."""

from __future__ import annotations

from textual.style import Style

from nemo_tui.ui.widgets.gauge import GaugeReading, gauge_line, label_width


def plain(reading: GaugeReading, width: int, columns: int) -> str:
    return gauge_line(reading, width, lambda _: Style(), label_columns=columns).plain


def test_a_long_label_widens_the_label_column_of_every_gauge() -> None:
    readings = [
        GaugeReading("RAM (OS)", 0.5, "1.0 GB / 2.0 GB"),
        GaugeReading("Models (embedded)", 0.0, "159 MB, 1 model"),
    ]
    columns = label_width(readings)
    ram, models = (plain(reading, 60, columns) for reading in readings)
    assert models.startswith("Models (embedded) ░")
    assert ram.index("█") == models.index("░")  # the bars start in the same column
    assert len(ram) == len(models) == 60
    assert ram.endswith(" 1.0 GB / 2.0 GB")


def test_the_bar_is_filled_in_proportion() -> None:
    line = plain(GaugeReading("Swap (OS)", 0.25, "1 GB / 4 GB"), 40, 16)
    bar = line[16 : line.index(" 1 GB")]
    assert bar.count("█") == round(len(bar) * 0.25)
    assert set(bar) == {"█", "░"}
