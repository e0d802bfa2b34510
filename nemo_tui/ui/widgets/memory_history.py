"""The memory-use history: samples of the last minutes, and where the plot of them goes."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.content import Content
from textual.widget import Widget

from nemo_tui.core.memory import MemoryProfile
from nemo_tui.units import format_pct

if TYPE_CHECKING:
    from nemo_tui.ui.widgets.history_plot import HistoryPlot

HISTORY_S = 600.0
"""How far back the plot reaches (ten minutes)."""
STEP_S = HISTORY_S / 60
"""The plot's time resolution: it moves on one step at a time, not with every gauge tick."""


@dataclass
class History:
    """What the plot draws: the samples, oldest first, and the two configured shares."""

    pressure_threshold: float
    """The share of memory in use that marks elevated pressure."""
    cache_limit: float
    """The share of memory the model cache keeps usage under."""
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    """(time stamp, percent of memory used) per gauge sample."""

    def steps(self) -> tuple[tuple[float, float], ...]:
        """What the plot draws: per `STEP_S` step that has samples, oldest first, how long
        before the newest step it began and the highest share used in it, in whole percent.

        The highest, not the mean: a short peak is what runs a machine out of memory, and it
        must not be averaged away. Whole percent is finer than the plot can show, so a share
        that moves less than that leaves the plot as it is.
        """
        peaks: dict[int, float] = {}
        for stamp, share in self.samples:
            step = math.floor(stamp / STEP_S)
            peaks[step] = max(share, peaks.get(step, 0.0))
        if not peaks:
            return ()
        newest = max(peaks)
        return tuple(
            ((step - newest) * STEP_S, float(round(peak)))
            for step, peak in sorted(peaks.items())
            if (newest - step) * STEP_S <= HISTORY_S
        )


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
