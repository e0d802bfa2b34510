"""The stats screen: everything `getMemoryStats` reported, plus the health of every backend."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.ui.widgets.key_bar import KeyBar
from nemo_tui.ui.widgets.title_bar import TitleBar
from nemo_tui.units import format_count, format_mb, format_pct, format_rate, format_seconds

if TYPE_CHECKING:
    from nemo_tui.backends.base import BackendHealth
    from nemo_tui.engine import Engine

MEASURED_BY_BACKENDS = frozenset({"size_mb", "resident_total_mb"})
"""Figures a backend may leave out: when missing they were not measured ("unknown"), which is
not the same as not applying ("n/a")."""
SECTION_TITLES = {
    "system": "System memory (OS, cgroup, NVML)",
    "models": "Models (as the model servers report them)",
    "optimization": "Optimization settings",
    "metrics": "Query metrics",
    "analyses": "Analysis scripts (run in a child process, under limits)",
    "backends": "Backends",
}


def analyses_apart(stats: Mapping[str, object]) -> dict[str, object]:
    """The stats with the analysis counts (run, failed, repaired, peak memory) taken out of
    the query metrics into a section of their own, right after them."""
    apart: dict[str, object] = {}
    for key, value in stats.items():
        analyses = value.get("analyses") if isinstance(value, Mapping) else None
        if key == "metrics" and isinstance(value, Mapping) and isinstance(analyses, Mapping):
            apart[key] = {name: v for name, v in value.items() if name != "analyses"}
            apart["analyses"] = analyses
        else:
            apart[key] = value
    return apart


def format_stat(path: Sequence[str], value: object, *, now: float) -> str:
    """Format one figure by what its key says it is (MB, seconds, share, time stamp...).

    Args:
        path: The keys leading to the value, e.g. `("latency", "total_s", "p50")`.
        value: The raw value.
        now: The current time, for time stamps.
    """
    names = [p for p in path if p]
    key = names[-1] if names else ""
    unit = next((n for n in reversed(names) if not n.startswith("p") or not n[1:].isdigit()), key)
    if value is None:
        return "unknown" if key in MEASURED_BY_BACKENDS else "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    if not isinstance(value, int | float):
        return str(value)
    number = float(value)
    if unit.endswith("_mb"):
        return format_mb(number)
    if unit == "tokens_per_s":
        return format_rate(number)
    if unit.endswith("_at") or unit == "last_used":
        return _moment(number, now)
    if unit.endswith("_s"):
        return format_seconds(number)
    if unit.endswith("_ms"):
        return format_seconds(number / 1000)
    if unit.endswith(("_rate", "_share")):
        return format_pct(number, digits=1)
    if unit == "percent" or unit.startswith("psi_"):
        return format_pct(number / 100, digits=1)
    return format_count(round(number))


def _moment(epoch: float, now: float) -> str:
    if epoch <= 0:
        return "never"
    delta = epoch - now
    return f"in {format_seconds(delta)}" if delta >= 0 else f"{format_seconds(-delta)} ago"


def _cell(text: str) -> Text:
    """A table cell shown exactly as written: Rich reads a plain string in a cell as markup,
    and model names, versions and server details come from the model servers."""
    return Text(strip_terminal_controls(text))


def stats_table(title: str, data: Mapping[str, object], *, now: float) -> Table:
    """A two-column table of a (possibly nested) mapping; nested keys are joined with dots."""
    table = Table(title=title, title_justify="left", show_header=False, expand=True)
    table.add_column("Key", style="bold", ratio=1)
    table.add_column("Value", ratio=2)
    for path, value in _flatten((), data):
        table.add_row(_cell(".".join(path)), _cell(format_stat(path, value, now=now)))
    return table


def rows_table(title: str, rows: Sequence[Mapping[str, object]], *, now: float) -> Table:
    """A table with one row per mapping (resident models, backends)."""
    table = Table(title=title, title_justify="left", expand=True)
    columns = list(rows[0]) if rows else ["none"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(_cell(format_stat((column,), row.get(column), now=now)) for column in columns)
        )
    return table


def health_table(healths: Sequence[BackendHealth]) -> Table:
    """Backend health as probed: up or down, version, latency, and why."""
    table = Table(title="Backend health", title_justify="left", expand=True)
    for column in ("Backend", "State", "Version", "Latency", "Where", "Detail"):
        table.add_column(column)
    for health in healths:
        latency = (
            format_seconds(health.latency_ms / 1000) if health.latency_ms is not None else "n/a"
        )
        table.add_row(
            _cell(health.backend),
            "up" if health.up else "down",
            _cell(health.version or "n/a"),
            latency,
            _cell(health.url),
            _cell(health.detail),
        )
    return table


def _flatten(
    prefix: tuple[str, ...], data: Mapping[str, object]
) -> list[tuple[tuple[str, ...], object]]:
    items: list[tuple[tuple[str, ...], object]] = []
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping):
            items.extend(_flatten(path, value))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            items.append((path, f"{format_count(len(value))} entries"))
        else:
            items.append((path, value))
    return items


class StatsScreen(Screen[None]):
    """A full-screen view of the engine's stats; `r` refreshes, Esc goes back.

    Args:
        engine: Where the figures come from.
    """

    BINDINGS = [
        Binding("escape,q,f2", "app.pop_screen", "Back"),
        Binding("r", "refresh_stats", "Refresh"),
    ]

    DEFAULT_CSS = """
    StatsScreen #stats-body {
        padding: 0 1;
    }
    StatsScreen #stats-body > Static {
        margin-bottom: 1;
    }
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self.section_titles: list[str] = []
        """The titles of the tables shown, in order."""

    def compose(self) -> ComposeResult:
        """Header, the sections, footer."""
        yield TitleBar()
        yield VerticalScroll(id="stats-body")
        yield KeyBar()

    async def on_mount(self) -> None:
        """Fill the sections."""
        self.sub_title = "Stats"
        await self.action_refresh_stats()

    async def action_refresh_stats(self) -> None:
        """Read the stats again."""
        now = time.time()
        stats = analyses_apart(self._engine.stats())
        body = self.query_one("#stats-body", VerticalScroll)
        await body.remove_children()
        tables: list[Table] = []
        for key, value in stats.items():
            title = SECTION_TITLES.get(key, key)
            if isinstance(value, Mapping):
                tables.append(stats_table(title, value, now=now))
                for sub, rows in value.items():
                    if isinstance(rows, list) and rows and isinstance(rows[0], Mapping):
                        tables.append(rows_table(f"{title}: {sub}", rows, now=now))
            elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
                tables.append(rows_table(title, value, now=now))
        tables.append(health_table(self._engine.healths()))
        self.section_titles = [str(table.title) for table in tables]
        await body.mount_all(Static(table) for table in tables)
