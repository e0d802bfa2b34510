"""The hosts panel: the lab's hosts, one line each, with their memory, pressure, latency and the
models loaded there.

It shows only when other hosts are configured. Host names come from the config, reasons and
model names from the hosts' servers: all of it goes in as literal text, never markup. The
figures change at each refresh of the hosts and a down host's countdown at each gauge tick, but
most of a line stays the same: only the cells that changed are repainted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.message import Message

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.ui.server_text import literal, template
from nemo_tui.ui.widgets.changed_cells import repaint_changes
from nemo_tui.ui.widgets.cursor_list import CursorList
from nemo_tui.ui.widgets.gauge import EMPTY, FILLED, GAUGE_COMPONENTS, GAUGE_CSS
from nemo_tui.ui.widgets.memory_panel import LEVEL_STYLE, share_level
from nemo_tui.units import format_mb

if TYPE_CHECKING:
    from nemo_tui.hosts.status import HostStatus

BAR_CELLS = 6
"""The width of each host's memory gauge: enough to compare hosts at a glance, while the line
keeps room for the models in the 62-column side column."""
PRESSURE_CELLS = len("elevated")
"""The pressure column: its longest word."""
LATENCY_CELLS = len("10 ms")
"""The fewest columns the latency takes."""
GAP = "  "

STARTING = "asking the hosts…"
"""What the panel says until the engine has asked the hosts once."""


def retry_text(status: HostStatus, now: float) -> str:
    """When a down host is asked again: `retry in 12 s`, `retrying…` once that time has come,
    or "" when no retry is planned."""
    if status.retry_at is None:
        return ""
    left = math.ceil(status.retry_at - now)
    return f"retry in {left} s" if left > 0 else "retrying…"


def free_text(status: HostStatus) -> str | None:
    """`9.1 GB free`, or None when the host's free memory is unknown."""
    memory = status.memory
    if memory is None or memory.available_mb is None or memory.total_mb is None:
        return None
    return f"{format_mb(memory.available_mb)} free"


def used_share(status: HostStatus) -> float:
    """The share of the host's memory in use, 0..1 (0 when unknown)."""
    memory = status.memory
    if memory is None or not memory.total_mb or memory.available_mb is None:
        return 0.0
    return max(0.0, min(1.0, 1.0 - memory.available_mb / memory.total_mb))


def models_text(status: HostStatus) -> str:
    """The loaded models' names, or why none are listed."""
    if status.models:
        return ", ".join(model.name for model in status.models)
    told = status.memory is not None and status.memory.models_mb is not None
    return "none loaded" if told else "models unknown"


def hosts_summary(statuses: Sequence[HostStatus]) -> Content:
    """The folded panel's line: how many hosts are up, the other host with the most memory
    free, and the hosts that are down."""
    up = sum(1 for status in statuses if status.up)
    parts = [template(f"[b]Hosts[/b] {up} of {len(statuses)} up")]
    roomy = [
        (status.memory.available_mb, status.name, free)
        for status in statuses
        if status.up
        and not status.local
        and status.memory is not None
        and status.memory.available_mb is not None
        and (free := free_text(status)) is not None
    ]
    if roomy:
        _, name, free = max(roomy)
        parts.append(template("$name $free", name=name, free=free))
    down = [status.name for status in statuses if not status.up]
    if down:
        parts.append(template("[$error]$names down[/]", names=", ".join(down)))
    return Content(" · ").join(parts)


class HostsPanel(CursorList):
    """One line per host: its memory gauge and free memory, pressure, latency, loaded models.

    A down host shows why and when it is asked again. Enter pins the query to the host under
    the cursor (a down host's whole reason is shown instead). In a small terminal the panel
    folds to one line (`fold`) that says how many hosts are up and which has the most room.
    """

    BINDINGS = [
        Binding(
            "enter,space",
            "pin",
            "Pin host",
            show=False,
            tooltip="Pin the next queries to the host under the cursor; again, unpin them",
        ),
    ]

    DEFAULT_CSS = (
        """
    HostsPanel {
        border: round $primary 50%;
        padding: 0 1;
"""
        + GAUGE_CSS
        + """
        & > .hosts--down {
            color: $error;
            text-style: bold;
        }
        & > .hosts--warning {
            color: $warning;
        }
        & > .hosts--muted {
            color: $text-muted;
        }
    }
    HostsPanel:focus {
        border: round $primary;
    }
    HostsPanel.-folded {
        border: none;
    }
    """
    )

    COMPONENT_CLASSES = (
        CursorList.COMPONENT_CLASSES
        | GAUGE_COMPONENTS
        | {"hosts--down", "hosts--warning", "hosts--muted"}
    )

    class PinRequested(Message):
        """Enter was pressed on an up host: the next queries should go there."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._statuses: tuple[HostStatus, ...] = ()
        self._folded = False
        self._drawn: tuple[int, list[Content]] | None = None
        """The lines last drawn and the width they were made for; the next drawing is compared
        with them to repaint only what changed."""
        self._title = ""
        self.clock: Callable[[], float] = time.time
        """The wall clock a down host's countdown reads (`HostStatus.retry_at` is on it)."""
        self._set_title("Hosts")
        self.border_subtitle = "enter pins a host"

    @property
    def statuses(self) -> tuple[HostStatus, ...]:
        """The hosts shown, this machine first."""
        return self._statuses

    @property
    def folded(self) -> bool:
        """True while the panel is one line."""
        return self._folded

    @property
    def selected(self) -> HostStatus | None:
        """The host under the cursor, or None before the hosts were asked."""
        if not self._statuses:
            return None
        return self._statuses[min(self.cursor, len(self._statuses) - 1)]

    def show_statuses(self, statuses: Sequence[HostStatus]) -> None:
        """Show the hosts as last asked; the panel shows only while there are some."""
        keep = self.selected.name if self.selected is not None else None
        self._statuses = tuple(statuses)
        if statuses and not self.display:
            self.display = True
            self.set_class(self._folded, "-folded")
        names = [status.name for status in self._statuses]
        if keep in names:
            self.cursor = names.index(keep)
        self.cursor = self.validate_cursor(self.cursor)
        up = sum(1 for status in self._statuses if status.up)
        self._set_title(f"Hosts ({up} of {len(self._statuses)} up)" if statuses else "Hosts")
        self._redraw()

    def tick(self) -> None:
        """Count a down host's wait down; nothing is repainted when no host is down."""
        if any(not status.up and status.retry_at is not None for status in self._statuses):
            self._redraw()

    def fold(self, folded: bool) -> None:
        """Fold to the one-line summary (True) or show a line per host again."""
        if folded != self._folded:
            self._folded = folded
            self._drawn = None
            # Hidden (no other hosts), the panel keeps its state for when it shows.
            if self.display:
                self.set_class(folded, "-folded")
                self.refresh(layout=True)

    def on_resize(self, _: events.Resize) -> None:
        """Focus unfolds the panel after Textual has scrolled the side to its one line: once
        it has its full height, show all of it."""
        if self.has_focus:
            self.scroll_visible(animate=False)

    def notify_style_update(self) -> None:
        """The theme changed: the lines are built again in its colours."""
        self._drawn = None
        super().notify_style_update()

    def validate_cursor(self, cursor: int) -> int:
        """Keep the cursor on a host."""
        return max(0, min(cursor, len(self._statuses) - 1))

    def rows(self) -> list[Content]:
        """A line per host, or what the panel waits for."""
        return list(self._lines(self.content_size.width))

    def render(self) -> Content:
        """The hosts, or the summary line while folded; the cursor shows only while the panel
        has focus (it would hide the colours of a host's gauge for nothing)."""
        if self.has_focus and not self._folded:
            return super().render()
        return Content("\n").join(self._lines(self.content_size.width))

    def action_pin(self) -> None:
        """Ask for the next queries to go to the host under the cursor; a down host's reason
        is shown whole instead (its line may clip it)."""
        status = self.selected
        if status is None:
            return
        if status.up:
            self.post_message(self.PinRequested(status.name))
            return
        retry = retry_text(status, self.clock())
        self.notify(
            strip_terminal_controls(
                f"{status.name} is down: {status.reason or 'no answer'}"
                + (f"; {retry}" if retry else "")
                + "."
            ),
            title="Hosts",
            severity="warning",
            markup=False,
        )

    def _set_title(self, title: str) -> None:
        # Setting a border title repaints the whole panel, even to the same text.
        if title != self._title:
            self._title = title
            self.border_title = title

    def _redraw(self) -> None:
        """Repaint the cells that changed since the last drawing (all of it if none)."""
        previous, self._drawn = self._drawn, None
        repaint_changes(self, previous, self._lines)

    def _lines(self, width: int) -> list[Content]:
        """The summary (folded) or a line per host, at `width`, built once per change."""
        if self._drawn is not None and self._drawn[0] == width:
            return self._drawn[1]
        if not self._statuses:
            waiting = "[b]Hosts[/b] [dim]asking…[/]" if self._folded else f"[dim]{STARTING}[/]"
            lines = [template(waiting)]
        elif self._folded:
            lines = [hosts_summary(self._statuses).truncate(width, ellipsis=True)]
        else:
            lines = self._host_lines(width)
        self._drawn = (width, lines)
        return lines

    def _host_lines(self, width: int) -> list[Content]:
        style = self.get_visual_style
        now = self.clock()
        name_cells = max(len(status.name) for status in self._statuses)
        frees = [free_text(status) for status in self._statuses]
        free_cells = max((len(free) for free in frees if free is not None), default=0)
        # The columns between the name and the latency: the gauge, free memory and pressure.
        memory_cells = BAR_CELLS + 1 + free_cells + len(GAP) + PRESSURE_CELLS
        latencies = [_latency(status) for status in self._statuses]
        # Room for two digits, so the usual jitter of a few ms does not move the models column.
        latency_cells = max(LATENCY_CELLS, *(len(latency) for latency in latencies))
        lines: list[Content] = []
        for status, free, latency in zip(self._statuses, frees, latencies, strict=True):
            name = literal(status.name.ljust(name_cells))
            if not status.up:
                retry = retry_text(status, now)
                line = Content.assemble(
                    name,
                    GAP,
                    ("down", style("hosts--down")),
                    GAP,
                    (retry + (" · " if retry else ""), style("hosts--muted")),
                    literal(status.reason or "no answer"),
                )
            else:
                if free is None:
                    unknown = _unknown_memory(status)
                    memory = unknown.pad_right(max(0, memory_cells - unknown.cell_length))
                else:
                    memory = self._gauge(status, free.rjust(free_cells))
                line = Content.assemble(
                    name,
                    GAP,
                    memory,
                    GAP,
                    (latency.rjust(latency_cells), style("hosts--muted")),
                    GAP,
                    literal(models_text(status)),
                )
                if status.reason:
                    line += Content.assemble(
                        GAP, template("[b]⚠[/b] $reason", reason=status.reason)
                    ).stylize(style("hosts--warning"))
            lines.append(line.truncate(width, ellipsis=True))
        return lines

    def _gauge(self, status: HostStatus, free: str) -> Content:
        """The memory gauge, the free memory and the pressure level, in the level's colour."""
        style = self.get_visual_style
        share = used_share(status)
        level = LEVEL_STYLE[status.pressure] if status.pressure is not None else share_level(share)
        filled = round(BAR_CELLS * share)
        pressure = status.pressure.value if status.pressure is not None else ""
        return Content.assemble(
            (FILLED * filled, style(f"gauge--{level}")),
            (EMPTY * (BAR_CELLS - filled), style("gauge--empty")),
            " ",
            free,
            GAP,
            (pressure.ljust(PRESSURE_CELLS), style(f"gauge--{level}")),
        )


def _unknown_memory(status: HostStatus) -> Content:
    source = status.memory.source if status.memory is not None else ""
    return literal(f"memory unknown ({source})" if source else "memory unknown")


def _latency(status: HostStatus) -> str:
    if not status.up or status.latency_ms is None:
        return ""
    return f"{status.latency_ms:.0f} ms"
