"""The plot of the memory history, drawn with plotext in the theme's gauge colours.

Imported by `MemoryHistory` once there are two samples to join, so plotext is not loaded at
start-up.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.text import Text
from textual.app import RenderResult
from textual.color import Color
from textual_plotext import PlotextPlot

from nemo_tui.core.memory.history import HISTORY_S, History
from nemo_tui.ui.widgets.changed_cells import changed_regions


class HistoryPlot(PlotextPlot):
    """Used memory as a line over the last `HISTORY_S`, the pressure threshold and the cache
    limit as flat lines.

    The plot has its own figure (no plotext global state). It plots `History.steps`, so it
    moves on once per step, not with every gauge tick. The figure is rebuilt only when what it
    plots, its size or the theme changed, and a rebuilt figure repaints only the cells that
    differ from the last one: an idle dashboard spends neither CPU nor terminal output on it.

    Args:
        history: The samples and shares to draw; shared with the `MemoryHistory` that owns it.
    """

    def __init__(self, history: History) -> None:
        super().__init__()
        self._history = history
        self._drawn: tuple[Hashable, list[Text]] | None = None
        """What the last figure plotted (with its size and theme), and its lines."""

    def redraw(self) -> None:
        """The history changed: repaint the cells of the figure that change, if any."""
        previous = self._drawn
        if previous is None or not self.size:
            self.refresh()
            return
        lines = self._lines()
        if lines is previous[1]:
            return
        if len(lines) != len(previous[1]):
            self.refresh()
        elif regions := changed_regions(previous[1], lines, self.size.width):
            self.refresh(*regions)

    def render(self) -> RenderResult:
        """The figure, rebuilt only if what it shows changed."""
        return Text("\n").join(self._lines())

    def _figure_key(self) -> Hashable:
        history = self._history
        return (
            self.size,
            self.app.theme,
            history.pressure_threshold,
            history.cache_limit,
            history.steps(),
        )

    def _lines(self) -> list[Text]:
        key = self._figure_key()
        if self._drawn is not None and self._drawn[0] == key:
            return self._drawn[1]
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
        # The axis spans the whole history from the start, so it never rescales (which would
        # move every point of the line): the line grows in from the right.
        plt.xlim(-HISTORY_S, 0)
        plt.xticks([-HISTORY_S, 0], [f"-{HISTORY_S / 60:g} min", "now"])
        steps = history.steps()
        if steps:
            xs = [offset for offset, _ in steps]
            plt.plot(xs, [share for _, share in steps], marker="braille", color=ok)
        plt.horizontal_line(history.pressure_threshold * 100, color=warn)
        plt.horizontal_line(history.cache_limit * 100, color=crit)
        figure = super().render()
        assert isinstance(figure, Text)
        lines = list(figure.split("\n", allow_blank=True))
        self._drawn = (key, lines)
        return lines
