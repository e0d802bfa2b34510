"""The memory-use history: samples of the last minutes, and where the plot of them goes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content
from textual.widget import Widget

from nemo_tui.core.memory.history import HISTORY_S, History
from nemo_tui.core.memory.profile import MemoryProfile
from nemo_tui.units import format_pct

if TYPE_CHECKING:
    from nemo_tui.ui.widgets.history_plot import HistoryPlot


class MemoryHistory(Widget):
    """Used share of memory over the last minutes, one point per step of `STEP_S`.

    The first line is the legend: which line is memory use, the pressure threshold and the
    cache limit. Until two samples have arrived there is no line to draw, so the plot (and
    plotext with it) is only imported and mounted under the legend with the second sample;
    start-up does not pay for it.
    """

    DEFAULT_CSS = """
    MemoryHistory {
        height: 9;
        min-height: 5;
        color: $text-muted;
    }
    MemoryHistory > HistoryPlot {
        width: 1fr;
        height: 1fr;
        margin-top: 1;
    }
    """

    def __init__(
        self, *, pressure_threshold: float, cache_limit: float, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.history = History(pressure_threshold=pressure_threshold, cache_limit=cache_limit)
        self._plot: HistoryPlot | None = None

    def add_sample(self, profile: MemoryProfile) -> None:
        """Add one profile; samples older than `HISTORY_S` fall off the left edge."""
        samples = self.history.samples
        samples.append((profile.timestamp, profile.usage_fraction * 100))
        while samples and profile.timestamp - samples[0][0] > HISTORY_S:
            samples.popleft()
        if self._plot is not None:
            self._plot.redraw()
        elif len(samples) >= 2:
            from nemo_tui.ui.widgets.history_plot import HistoryPlot

            self._plot = HistoryPlot(self.history)
            self.mount(self._plot)
            # The line saying samples are coming goes.
            self.refresh()

    def render(self) -> Content:
        """The legend; under it, until the plot covers the rest, that samples are coming."""
        history = self.history
        legend = Content.from_markup(
            "[$gauge-ok]⣀ RAM used[/] · [$gauge-warn]─ pressure $pressure[/]"
            " · [$gauge-crit]─ cache limit $limit[/]",
            pressure=format_pct(history.pressure_threshold),
            limit=format_pct(history.cache_limit),
        )
        if self._plot is not None:
            return legend
        return legend + "\ncollecting memory samples for the plot…"
