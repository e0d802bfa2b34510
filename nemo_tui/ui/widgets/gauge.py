"""A one-line horizontal gauge: a label, a bar, and the figures it shows."""

from __future__ import annotations

from typing import Literal

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

GaugeLevel = Literal["ok", "warn", "crit"]
"""How worrying the value is; picks the theme variable the bar is drawn in."""

FILLED = "█"
EMPTY = "░"
"""Distinct glyphs, so the bar still reads with NO_COLOR or a monochrome terminal."""
MIN_BAR = 4


class Gauge(Widget):
    """A labelled bar whose colour follows the theme variables `gauge-ok/warn/crit`.

    Args:
        label: The name shown on the left, including where the figures come from.
        id: The widget id.
    """

    DEFAULT_CSS = """
    Gauge {
        height: 1;
        width: 1fr;
    }
    Gauge > .gauge--label {
        color: $text-muted;
    }
    Gauge > .gauge--bar {
        color: $gauge-ok;
    }
    Gauge.-warn > .gauge--bar {
        color: $gauge-warn;
    }
    Gauge.-crit > .gauge--bar {
        color: $gauge-crit;
    }
    Gauge > .gauge--empty {
        color: $gauge-empty;
    }
    """

    COMPONENT_CLASSES = {"gauge--label", "gauge--bar", "gauge--empty"}

    label: reactive[str] = reactive("")
    """The name on the left."""
    fraction: reactive[float] = reactive(0.0)
    """How full the bar is, 0..1 (clamped)."""
    figures: reactive[str] = reactive("")
    """The numbers on the right, already formatted."""
    level: reactive[GaugeLevel] = reactive[GaugeLevel]("ok")
    """Which colour the bar takes."""

    label_width = 16
    """Columns reserved for the label, so bars of a panel line up."""

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(Gauge.label, label)

    def show(self, fraction: float, figures: str, level: GaugeLevel = "ok") -> None:
        """Set all three values at once (one repaint)."""
        self.fraction = fraction
        self.figures = figures
        self.level = level

    def watch_level(self, old: GaugeLevel, new: GaugeLevel) -> None:
        """Swap the modifier class that colours the bar."""
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")

    def render(self) -> Text:
        """Draw the label, the bar and the figures in the widget's width."""
        width = self.content_size.width
        label = self.label[: self.label_width].ljust(self.label_width)
        figures = f" {self.figures}"
        bar_width = max(MIN_BAR, width - len(label) - len(figures))
        filled = round(bar_width * min(1.0, max(0.0, self.fraction)))
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(label, self.get_component_rich_style("gauge--label"))
        text.append(FILLED * filled, self.get_component_rich_style("gauge--bar"))
        text.append(EMPTY * (bar_width - filled), self.get_component_rich_style("gauge--empty"))
        text.append(figures)
        return text
