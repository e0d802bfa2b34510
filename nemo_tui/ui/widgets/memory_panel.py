"""The memory status panel: gauges, the pressure level, where each figure comes from, history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import Static

from nemo_tui.core.memory.profile import MemoryProfile, PressureLevel
from nemo_tui.ui.widgets.changed_cells import repaint_changes
from nemo_tui.ui.widgets.gauge import (
    GAUGE_COMPONENTS,
    GAUGE_CSS,
    GaugeLevel,
    GaugeReading,
    gauge_line,
    label_width,
)
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.units import format_count, format_mb, format_pct

if TYPE_CHECKING:
    from nemo_tui.core.models.cache_policy import CachedModel

LEVEL_STYLE: dict[PressureLevel, GaugeLevel] = {
    PressureLevel.NORMAL: "ok",
    PressureLevel.ELEVATED: "warn",
    PressureLevel.CRITICAL: "crit",
}
"""Which gauge colour each pressure level takes."""

_VARIABLE = {"ok": "$gauge-ok", "warn": "$gauge-warn", "crit": "$gauge-crit"}


@dataclass(frozen=True)
class ScriptMemory:
    """A running analysis script's memory, shown beside the gauges."""

    rss_mb: float | None
    """Its resident memory now; None until first measured."""
    cap_mb: float
    """Its address-space cap."""


def share_level(fraction: float) -> GaugeLevel:
    """Colour for a gauge that has no pressure level of its own (swap, VRAM)."""
    if fraction >= 0.9:
        return "crit"
    if fraction >= 0.75:
        return "warn"
    return "ok"


def used_of(used_mb: float, total_mb: float) -> str:
    """`5.1 GB / 7.8 GB` for a gauge's figures."""
    return f"{format_mb(used_mb)} / {format_mb(total_mb)}"


class MemoryFigures(Widget):
    """The gauges and the lines under them, drawn as one widget (one widget is cheaper to
    start than a widget per gauge).

    Before the first sample it says it is waiting for one. A new sample repaints only the cells
    whose text or colour changed: on an idle machine most ticks change nothing on screen, and
    then nothing is sent to the terminal.
    """

    DEFAULT_CSS = (
        """
    MemoryFigures {
        height: auto;
"""
        + GAUGE_CSS
        + """
        & > .memory--parts {
            color: $text-muted;
        }
    }
    """
    )

    COMPONENT_CLASSES = GAUGE_COMPONENTS | {"memory--parts"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.readings: dict[str, GaugeReading] = {}
        """The gauges by name: `ram`, `swap`, `gpu0`…, `models`."""
        self.pressure = Content()
        """The pressure line: level in words and colour, share used, PSI."""
        self.parts = Content()
        """The line that splits RAM into page cache, this process and the models."""
        self._drawn: tuple[int, list[Content]] | None = None
        """The lines last drawn (wrapped) and the width they were made for. Textual renders
        twice per change (once to measure the height), and the gauges need not be built twice;
        the next sample is compared with them to repaint only what changed."""

    def show(self, readings: dict[str, GaugeReading], pressure: Content, parts: Content) -> None:
        """Draw a new set of figures, repainting only the cells that change."""
        self.readings = readings
        self.pressure = pressure
        self.parts = parts
        previous, self._drawn = self._drawn, None
        repaint_changes(self, previous, self._lines)

    def notify_style_update(self) -> None:
        """The theme changed: the gauges are drawn again in its colours."""
        self._drawn = None
        super().notify_style_update()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """As many rows as the wrapped lines take at `width`."""
        if not self.readings:
            return 1
        return len(self._lines(width))

    def render(self) -> Content:
        """The gauges at the full width, then the pressure and parts lines (wrapped)."""
        if not self.readings:
            return Content.styled("waiting for the first memory sample…", "dim")
        return Content("\n").join(self._lines(self.content_size.width))

    def _lines(self, width: int) -> list[Content]:
        """The lines at `width`, built once per sample and width."""
        if self._drawn is not None and self._drawn[0] == width:
            return self._drawn[1]
        style = self.get_visual_style
        readings = self.readings.values()
        columns = label_width(readings)
        lines = [gauge_line(r, width, style, label_columns=columns) for r in readings]
        lines.extend(self.pressure.wrap(width))
        lines.extend(self.parts.stylize(style("memory--parts")).wrap(width))
        self._drawn = (width, lines)
        return lines


class MemoryPanel(Vertical):
    """Memory used and free, and the parts that make it up, so the totals can be reconciled.

    Ollama, nvidia-smi and the OS often disagree: memory-mapped weights sit in the page cache,
    not in any process's RSS. The panel shows RAM and swap (from the OS, or the cgroup limit
    when one applies), each GPU (NVML), the model servers' own resident figures, and a line
    that splits RAM into page cache, this process and the models. Each label names its source;
    a simulated figure (`--simulate-memory`, `--simulate-gpu`) says `simulated` instead.
    """

    DEFAULT_CSS = """
    MemoryPanel {
        height: auto;
        border: round $primary 50%;
        border-title-color: $text;
        padding: 0 1;
    }
    MemoryPanel.-simulated {
        border: round $warning;
    }
    MemoryPanel > #memory-summary {
        display: none;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    MemoryPanel.-folded {
        border: none;
    }
    MemoryPanel.-folded > #memory-summary {
        display: block;
    }
    MemoryPanel.-folded > MemoryFigures {
        display: none;
    }
    """

    def __init__(
        self, *, pressure_threshold: float, cache_limit: float, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self._limits = (pressure_threshold, cache_limit)
        self._models: Sequence[CachedModel] = ()
        self._profile: MemoryProfile | None = None
        self._level = PressureLevel.NORMAL
        self._pressure_threshold = 0.0
        self._script: ScriptMemory | None = None
        self._summary = Content()
        self._border_texts = ("Memory", "")
        """The border's title and subtitle as last set."""
        self.border_title = "Memory"

    def compose(self) -> ComposeResult:
        """The figures, then the history plot; the one-line summary shows only when folded."""
        yield Static(id="memory-summary")
        yield MemoryFigures(id="memory-figures")
        pressure_threshold, cache_limit = self._limits
        yield MemoryHistory(
            pressure_threshold=pressure_threshold, cache_limit=cache_limit, id="memory-history"
        )

    @property
    def figures(self) -> MemoryFigures:
        """The gauges and lines."""
        return self.query_one(MemoryFigures)

    def show_profile(
        self,
        profile: MemoryProfile,
        level: PressureLevel,
        *,
        pressure_threshold: float,
    ) -> None:
        """Draw a new memory sample.

        Args:
            profile: The snapshot.
            level: Its pressure level (with the watcher's hysteresis).
            pressure_threshold: The configured share that marks elevated pressure.
        """
        self._profile = profile
        self._level = level
        self._pressure_threshold = pressure_threshold
        self._draw(profile)
        self.set_class(profile.any_simulated, "-simulated")
        if profile.simulated:
            title = "Memory · SIMULATED (--simulate-memory)"
        elif profile.any_simulated:
            title = "Memory · SIMULATED GPU (--simulate-gpu)"
        else:
            title = "Memory"
        free = f"{format_mb(profile.available_mb)} free"
        # Setting a border title repaints the whole panel, gauges and plot included, even to
        # the same text; only a changed one is set.
        if (title, free) != self._border_texts:
            self._border_texts = (title, free)
            self.border_title = title
            self.border_subtitle = free

    def fold(self, folded: bool) -> None:
        """Fold to the one-line summary (True) or show the gauges again."""
        self.set_class(folded, "-folded")

    def show_script(self, script: ScriptMemory | None) -> None:
        """Show a running analysis script's memory as a gauge; None takes it off."""
        self._script = script
        if self._profile is not None:
            self._draw(self._profile)

    def show_models(self, models: Sequence[CachedModel]) -> None:
        """The resident models the backends report; drawn with the current sample."""
        self._models = models
        if self._profile is not None:
            self._draw(self._profile)

    def _draw(self, profile: MemoryProfile) -> None:
        source = _ram_source(profile)
        readings = {
            "ram": GaugeReading(
                f"RAM ({source})",
                profile.usage_fraction,
                used_of(profile.used_mb, profile.total_mb),
                LEVEL_STYLE[self._level],
            ),
            "swap": _swap_reading(profile),
        }
        for gpu in profile.gpus:
            share = gpu.used_mb / gpu.total_mb if gpu.total_mb else 0.0
            readings[f"gpu{gpu.index}"] = GaugeReading(
                f"GPU{gpu.index} ({'simulated' if gpu.simulated else 'NVML'})",
                share,
                used_of(gpu.used_mb, gpu.total_mb),
                share_level(share),
            )
        readings["models"] = self._models_reading(profile)
        script = self._script
        if script is not None:
            share = (script.rss_mb or 0.0) / script.cap_mb if script.cap_mb else 0.0
            readings["script"] = GaugeReading(
                "Script (RSS)",
                share,
                f"{format_mb(script.rss_mb) if script.rss_mb is not None else 'starting'}"
                f" of {format_mb(script.cap_mb)} cap",
                share_level(share),
            )
        self.figures.show(readings, self._pressure_line(profile), self._parts_line(profile))
        self._show_summary(profile)

    def _show_summary(self, profile: MemoryProfile) -> None:
        """The folded panel's line: share used, free memory, pressure, a running script."""
        variable = _VARIABLE[LEVEL_STYLE[self._level]]
        line = (
            f"[b]Memory[/b] {format_pct(profile.usage_fraction)} used"
            f" · {format_mb(profile.available_mb)} free"
            f" · pressure [bold {variable}]{self._level.value}[/]"
        )
        if profile.any_simulated:
            line += " · [$warning]simulated[/]"
        script = self._script
        if script is not None and script.rss_mb is not None:
            line += f" · script {format_mb(script.rss_mb)} of {format_mb(script.cap_mb)}"
        summary = Content.from_markup(line)
        # Drawn again only when it changes: most samples of an idle machine change nothing.
        if not summary.is_same(self._summary):
            self._summary = summary
            self.query_one("#memory-summary", Static).update(summary)

    def _models_reading(self, profile: MemoryProfile) -> GaugeReading:
        resident_mb, source = self._models_resident()
        count = len(self._models)
        noun = "model" if count == 1 else "models"
        return GaugeReading(
            f"Models ({source})",
            resident_mb / profile.total_mb if profile.total_mb else 0.0,
            f"{self._models_size_text(resident_mb)}, {format_count(count)} {noun}",
        )

    def _models_resident(self) -> tuple[float, str]:
        """The memory the loaded models hold as their backends report it, and which backends
        reported it (the servers, until one has a model loaded)."""
        resident_mb = sum(model.size_mb for model in self._models if model.size_mb is not None)
        backends = sorted({model.backend for model in self._models})
        return resident_mb, "/".join(backends) or "server"

    def _models_size_text(self, resident_mb: float) -> str:
        """The resident size, with the models whose backend reports no size counted apart:
        their memory is not in the figure, and the figure must not pass for all of it."""
        unknown = sum(1 for model in self._models if model.size_mb is None)
        return format_mb(resident_mb) + (f" + {format_count(unknown)} unknown" if unknown else "")

    def _pressure_line(self, profile: MemoryProfile) -> Content:
        variable = _VARIABLE[LEVEL_STYLE[self._level]]
        parts = [
            f"Pressure [bold {variable}]{self._level.value.upper()}[/]",
            f"{format_pct(profile.usage_fraction)} used,"
            f" threshold {format_pct(self._pressure_threshold)}",
        ]
        if profile.psi_some_avg10 is not None:
            parts.append(
                f"PSI some {profile.psi_some_avg10:.1f}% full {profile.psi_full_avg10 or 0.0:.1f}%"
            )
        return Content.from_markup(" · ".join(parts))

    def _parts_line(self, profile: MemoryProfile) -> Content:
        resident_mb, source = self._models_resident()
        parts = [
            f"page cache {format_mb(profile.page_cache_mb)} ({_host_source(profile)})",
            f"nemo-tui {format_mb(profile.process_rss_mb)} (RSS)",
            f"models {self._models_size_text(resident_mb)} ({source})",
        ]
        if profile.cgroup_limit_mb is not None:
            parts.append(
                f"cgroup {format_mb(profile.cgroup_used_mb)}"
                f" of {format_mb(profile.cgroup_limit_mb)}"
                f" (host {format_mb(profile.host_total_mb)})"
            )
        return Content(" · ".join(parts))


def _host_source(profile: MemoryProfile) -> str:
    """Where host-wide figures (swap, page cache) come from."""
    return "simulated" if profile.simulated else "OS"


def _ram_source(profile: MemoryProfile) -> str:
    """Where the RAM gauge's figures come from; a cgroup limit, when one applies, sets them."""
    if profile.cgroup_limit_mb is not None:
        return "cgroup"
    return _host_source(profile)


def _swap_reading(profile: MemoryProfile) -> GaugeReading:
    label = f"Swap ({_host_source(profile)})"
    if profile.swap_total_mb <= 0:
        return GaugeReading(label, 0.0, "no swap")
    share = profile.swap_used_mb / profile.swap_total_mb
    return GaugeReading(
        label,
        share,
        used_of(profile.swap_used_mb, profile.swap_total_mb),
        share_level(share),
    )
