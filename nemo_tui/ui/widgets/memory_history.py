"""The memory-use history plot, with the pressure threshold and the cache limit drawn as lines."""

from __future__ import annotations

from collections import deque

from textual.app import RenderResult
from textual.color import Color
from textual_plotext import PlotextPlot

from nemo_tui.core.memory import MemoryProfile
from nemo_tui.units import format_pct, format_seconds

HISTORY_S = 600.0
"""How far back the plot reaches (ten minutes)."""


class MemoryHistory(PlotextPlot):
    """Used share of memory over the last minutes, one point per gauge sample.

    The plot has its own figure (no plotext global state) and is only rebuilt when a sample
    arrives or the size changes, so an idle dashboard does not spend CPU on it.
    """

    DEFAULT_CSS = """
    MemoryHistory {
        height: 9;
        min-height: 5;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._samples: deque[tuple[float, float]] = deque()
        self._pressure_threshold = 0.75
        self._cache_limit = 0.8

    def set_limits(self, pressure_threshold: float, cache_limit: float) -> None:
        """The two configured shares drawn as horizontal lines."""
        self._pressure_threshold = pressure_threshold
        self._cache_limit = cache_limit
        self._describe()
        self.refresh()

    def add_sample(self, profile: MemoryProfile) -> None:
        """Add one profile; samples older than `HISTORY_S` fall off the left edge."""
        self._samples.append((profile.timestamp, profile.usage_fraction * 100))
        while self._samples and profile.timestamp - self._samples[0][0] > HISTORY_S:
            self._samples.popleft()
        self._describe()
        self.refresh()

    def on_mount(self) -> None:
        """Describe the lines before the first sample."""
        super().on_mount()
        self._describe()

    def render(self) -> RenderResult:
        """Rebuild the figure from the samples, in the theme's gauge colours."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        variables = self.app.theme_variables
        ok = Color.parse(variables["gauge-ok"]).rgb
        warn = Color.parse(variables["gauge-warn"]).rgb
        crit = Color.parse(variables["gauge-crit"]).rgb
        plt.ylim(0, 100)
        plt.yticks([0, 50, 100], ["0%", "50%", "100%"])
        plt.frame(False)
        if self._samples:
            newest = self._samples[-1][0]
            xs = [stamp - newest for stamp, _ in self._samples]
            plt.xlim(min(-60.0, xs[0]), 0)
            if xs[0] < 0:
                plt.xticks([xs[0], 0], [f"-{format_seconds(-xs[0])}", "now"])
            else:
                plt.xticks([0], ["now"])
            plt.plot(xs, [share for _, share in self._samples], marker="braille", color=ok)
        plt.horizontal_line(self._pressure_threshold * 100, color=warn)
        plt.horizontal_line(self._cache_limit * 100, color=crit)
        return super().render()

    def _describe(self) -> None:
        self.border_title = (
            f"RAM used · pressure {format_pct(self._pressure_threshold)}"
            f" · cache limit {format_pct(self._cache_limit)}"
        )
