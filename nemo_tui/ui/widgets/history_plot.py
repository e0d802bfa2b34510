"""The plot of the memory history, drawn with plotext in the theme's gauge colours.

Imported by `MemoryHistory` once there are two samples to join, so plotext is not loaded at
start-up.
"""

from __future__ import annotations

from textual.app import RenderResult
from textual.color import Color
from textual_plotext import PlotextPlot

from nemo_tui.ui.widgets.memory_history import History
from nemo_tui.units import format_seconds


class HistoryPlot(PlotextPlot):
    """Used memory as a line, the pressure threshold and the cache limit as flat lines.

    The plot has its own figure (no plotext global state) and is only rebuilt when a sample
    arrives or the size changes, so an idle dashboard does not spend CPU on it.

    Args:
        history: The samples and shares to draw; shared with the `MemoryHistory` that owns it.
    """

    def __init__(self, history: History) -> None:
        super().__init__()
        self._history = history

    def render(self) -> RenderResult:
        """Rebuild the figure from the samples."""
        history = self._history
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
        if history.samples:
            newest = history.samples[-1][0]
            xs = [stamp - newest for stamp, _ in history.samples]
            plt.xlim(min(-60.0, xs[0]), 0)
            if xs[0] < 0:
                plt.xticks([xs[0], 0], [f"-{format_seconds(-xs[0])}", "now"])
            else:
                plt.xticks([0], ["now"])
            plt.plot(xs, [share for _, share in history.samples], marker="braille", color=ok)
        plt.horizontal_line(history.pressure_threshold * 100, color=warn)
        plt.horizontal_line(history.cache_limit * 100, color=crit)
        return super().render()
