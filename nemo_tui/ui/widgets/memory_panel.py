"""The memory status panel: gauges, the pressure level, where each figure comes from, history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from nemo_tui.core.memory import MemoryProfile, PressureLevel
from nemo_tui.ui.widgets.gauge import Gauge, GaugeLevel
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.units import format_count, format_mb, format_pct

if TYPE_CHECKING:
    from nemo_tui.core.cache_policy import CachedModel

LEVEL_STYLE: dict[PressureLevel, GaugeLevel] = {
    PressureLevel.NORMAL: "ok",
    PressureLevel.ELEVATED: "warn",
    PressureLevel.CRITICAL: "crit",
}
"""Which gauge colour each pressure level takes."""

_VARIABLE = {"ok": "$gauge-ok", "warn": "$gauge-warn", "crit": "$gauge-crit"}


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


class MemoryPanel(Vertical):
    """Memory used and free, and the parts that make it up, so the totals can be reconciled.

    Ollama, nvidia-smi and the OS often disagree: memory-mapped weights sit in the page cache,
    not in any process's RSS. The panel shows RAM and swap (from the OS, or the cgroup limit
    when one applies), each GPU (NVML), the model servers' own resident figures, and a line
    that splits RAM into page cache, this process and the models.
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
    MemoryPanel > #gauge-gpus, MemoryPanel > #memory-pressure, MemoryPanel > #memory-parts {
        height: auto;
    }
    MemoryPanel > #memory-parts {
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._models: Sequence[CachedModel] = ()
        self._profile: MemoryProfile | None = None
        self._gpu_count = 0

    def compose(self) -> ComposeResult:
        """The gauges, then the pressure and breakdown lines, then the history plot."""
        yield Gauge("RAM (OS)", id="gauge-ram")
        yield Gauge("Swap (OS)", id="gauge-swap")
        yield Vertical(id="gauge-gpus")
        yield Gauge("Models", id="gauge-models")
        yield Static(id="memory-pressure")
        yield Static(id="memory-parts")
        yield MemoryHistory(id="memory-history")

    def on_mount(self) -> None:
        """Start with the plain title and a waiting line until the first sample says more."""
        self.border_title = "Memory"
        self.query_one("#memory-pressure", Static).update(
            "[dim]waiting for the first memory sample…[/]"
        )

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
        style = LEVEL_STYLE[level]
        source = "cgroup" if profile.cgroup_limit_mb is not None else "OS"
        ram = self.query_one("#gauge-ram", Gauge)
        ram.label = f"RAM ({source})"
        ram.show(profile.usage_fraction, used_of(profile.used_mb, profile.total_mb), style)
        swap = self.query_one("#gauge-swap", Gauge)
        if profile.swap_total_mb > 0:
            swap_share = profile.swap_used_mb / profile.swap_total_mb
            swap.show(
                swap_share,
                used_of(profile.swap_used_mb, profile.swap_total_mb),
                share_level(swap_share),
            )
        else:
            swap.show(0.0, "no swap")
        self._show_gpus(profile)
        self._show_models(profile)
        self._show_pressure(profile, level, pressure_threshold)
        self._show_parts(profile)
        self.set_class(profile.simulated, "-simulated")
        self.border_title = (
            "Memory · SIMULATED (--simulate-memory)" if profile.simulated else "Memory"
        )
        self.border_subtitle = f"{format_mb(profile.available_mb)} free"
        self._profile = profile

    def show_models(self, models: Sequence[CachedModel]) -> None:
        """The resident models the backends report; drawn at the next sample."""
        self._models = models
        if self._profile is not None:
            self._show_models(self._profile)
            self._show_parts(self._profile)

    def _show_gpus(self, profile: MemoryProfile) -> None:
        holder = self.query_one("#gauge-gpus", Vertical)
        if len(profile.gpus) != self._gpu_count:
            gauges = [Gauge(f"GPU{gpu.index} (NVML)") for gpu in profile.gpus]
            holder.remove_children()
            holder.mount_all(gauges)
            self._gpu_count = len(gauges)
        else:
            gauges = list(holder.query(Gauge))
        for gauge, gpu in zip(gauges, profile.gpus, strict=True):
            share = gpu.used_mb / gpu.total_mb if gpu.total_mb else 0.0
            gauge.show(share, used_of(gpu.used_mb, gpu.total_mb), share_level(share))

    def _show_models(self, profile: MemoryProfile) -> None:
        resident = sum(model.size_mb for model in self._models)
        backends = sorted({model.backend for model in self._models})
        gauge = self.query_one("#gauge-models", Gauge)
        gauge.label = f"Models ({'/'.join(backends)})" if backends else "Models (server)"
        count = len(self._models)
        noun = "model" if count == 1 else "models"
        gauge.show(
            resident / profile.total_mb if profile.total_mb else 0.0,
            f"{format_mb(resident)}, {format_count(count)} {noun}",
        )

    def _show_pressure(
        self, profile: MemoryProfile, level: PressureLevel, pressure_threshold: float
    ) -> None:
        variable = _VARIABLE[LEVEL_STYLE[level]]
        parts = [
            f"Pressure [bold {variable}]{level.value.upper()}[/]",
            f"{format_pct(profile.usage_fraction)} used,"
            f" threshold {format_pct(pressure_threshold)}",
        ]
        if profile.psi_some_avg10 is not None:
            parts.append(
                f"PSI some {profile.psi_some_avg10:.1f}% full {profile.psi_full_avg10 or 0.0:.1f}%"
            )
        self.query_one("#memory-pressure", Static).update(" · ".join(parts))

    def _show_parts(self, profile: MemoryProfile) -> None:
        resident = sum(model.size_mb for model in self._models)
        parts = [
            f"page cache {format_mb(profile.page_cache_mb)} (OS)",
            f"nemo-tui {format_mb(profile.process_rss_mb)} (RSS)",
            f"models {format_mb(resident)} (server)",
        ]
        if profile.cgroup_limit_mb is not None:
            parts.append(
                f"cgroup {format_mb(profile.cgroup_used_mb)}"
                f" of {format_mb(profile.cgroup_limit_mb)}"
                f" (host {format_mb(profile.host_total_mb)})"
            )
        self.query_one("#memory-parts", Static).update(" · ".join(parts))
