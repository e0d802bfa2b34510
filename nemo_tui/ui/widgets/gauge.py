"""One-line horizontal gauges: a label, a bar, and the figures it shows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from textual.content import Content
from textual.style import Style

GaugeLevel = Literal["ok", "warn", "crit"]
"""How worrying the value is; picks the theme variable the bar is drawn in."""

FILLED = "█"
EMPTY = "░"
"""Distinct glyphs, so the bar still reads with NO_COLOR or a monochrome terminal."""
MIN_BAR = 4
LABEL_WIDTH = 16
"""The fewest columns a label takes, so the bars of a panel line up."""

GAUGE_CSS = """
    & > .gauge--label {
        color: $text-muted;
    }
    & > .gauge--ok {
        color: $gauge-ok;
    }
    & > .gauge--warn {
        color: $gauge-warn;
    }
    & > .gauge--crit {
        color: $gauge-crit;
    }
    & > .gauge--empty {
        color: $gauge-empty;
    }
"""
"""Nested CSS for a widget that draws gauges: the colours come from the theme variables."""

GAUGE_COMPONENTS = {"gauge--label", "gauge--ok", "gauge--warn", "gauge--crit", "gauge--empty"}
"""The component classes `GAUGE_CSS` styles; a widget drawing gauges declares them."""


@dataclass(frozen=True)
class GaugeReading:
    """What one gauge shows."""

    label: str
    """The name on the left, including where the figures come from."""
    fraction: float
    """How full the bar is, 0..1 (clamped when drawn)."""
    figures: str
    """The numbers on the right, already formatted."""
    level: GaugeLevel = "ok"
    """Which colour the bar takes."""


def label_width(readings: Iterable[GaugeReading]) -> int:
    """The label column for a set of gauges: the longest label and a space, or `LABEL_WIDTH`."""
    return max([LABEL_WIDTH, *(len(reading.label) + 1 for reading in readings)])


def gauge_line(
    reading: GaugeReading,
    width: int,
    style: Callable[[str], Style],
    *,
    label_columns: int = LABEL_WIDTH,
) -> Content:
    """Draw a gauge in `width` cells.

    Args:
        reading: What to show.
        width: The cells available; the bar takes what the label and figures leave.
        style: The style of a gauge component class (`gauge--ok`, ...), from the widget.
        label_columns: The label column's width (see `label_width`), shared by a panel's gauges.
    """
    label = reading.label[: label_columns - 1].ljust(label_columns)
    figures = f" {reading.figures}"
    bar_width = max(MIN_BAR, width - len(label) - len(figures))
    filled = round(bar_width * min(1.0, max(0.0, reading.fraction)))
    line = Content.assemble(
        (label, style("gauge--label")),
        (FILLED * filled, style(f"gauge--{reading.level}")),
        (EMPTY * (bar_width - filled), style("gauge--empty")),
        figures,
    )
    return line.truncate(width, ellipsis=True)
