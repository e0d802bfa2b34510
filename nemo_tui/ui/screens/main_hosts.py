"""The main screen in a lab of several hosts: the hosts panel, pinning a host, asking the hosts.

The engine's monitor asks the hosts every refresh interval and says what it found with
`HostsChanged`. The screen asks again on f5, after each answer and cache action (what is loaded
where has changed), and when a down host's backoff has passed: the monitor only asks at its own
interval, and the "retry in N s" on screen should come true. Asking runs in a worker, and a
slow or dead host costs the engine's timeout there, never the screen's time.

Without other hosts the engine reports none, and none of this shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual import on, work
from textual.screen import Screen
from textual.timer import Timer

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.hosts_panel import HostsPanel
from nemo_tui.ui.widgets.query_pane import QueryPane

if TYPE_CHECKING:
    from nemo_tui.engine import Engine
    from nemo_tui.hosts.status import HostStatus

RETRY_MARGIN_S = 0.2
"""Asked this long after a down host's backoff ends, so the host is due by then."""
RETRY_MIN_S = 1.0
"""The soonest a retry is asked for, whatever the host's `retry_at` says."""


class HostActions(Screen[None]):
    """The hosts' part of `MainScreen`, which sets `_engine`."""

    _engine: Engine | None
    """The engine; None while it is being built."""
    _retry_timer: Timer | None = None
    """Asks the hosts again when the first down host's backoff ends; None when none is down."""
    _asking_hosts = False
    """True while a worker asks the hosts: a second one would only wait for it."""

    @property
    def local_host(self) -> str | None:
        """This machine's name while the lab has other hosts; None without any."""
        return next((s.name for s in self.query_one(HostsPanel).statuses if s.local), None)

    def show_hosts(self, statuses: Sequence[HostStatus]) -> None:
        """Show the hosts as last asked, and offer them to pin a query to."""
        panel = self.query_one(HostsPanel)
        panel.show_statuses(statuses)
        local = self.local_host
        self.query_one(QueryPane).set_hosts([s.name for s in statuses], local or "")
        self.query_one(CachedModelsPanel).set_local_host(local)
        self._plan_retry(statuses)

    def refresh_hosts(self) -> None:
        """Ask the hosts again now, when there are other hosts and nobody is asking them."""
        engine = self._engine
        if engine is not None and engine.config.hosts and not self._asking_hosts:
            self._asking_hosts = True
            self._ask_hosts(engine)

    @work(group="hosts", exit_on_error=False, description="Asking the hosts")
    async def _ask_hosts(self, engine: Engine) -> None:
        # What they answer arrives as the engine's `HostsChanged`, like the monitor's rounds.
        try:
            await engine.refresh_hosts()
        finally:
            self._asking_hosts = False

    def _plan_retry(self, statuses: Sequence[HostStatus]) -> None:
        if self._retry_timer is not None:
            self._retry_timer.stop()
            self._retry_timer = None
        waits = [s.retry_at for s in statuses if not s.up and s.retry_at is not None]
        if waits:
            now = self.query_one(HostsPanel).clock()
            delay = max(RETRY_MIN_S, min(waits) - now + RETRY_MARGIN_S)
            self._retry_timer = self.set_timer(delay, self.refresh_hosts)

    @on(HostsPanel.PinRequested)
    def _pin_requested(self, event: HostsPanel.PinRequested) -> None:
        """Enter on a host pins the next queries to it; on the pinned host, unpins them."""
        pane = self.query_one(QueryPane)
        if pane.host_override == event.host:
            pane.choose_host(None)
            message = "Routing picks the host again for the next queries."
        else:
            pane.choose_host(event.host)
            message = (
                f"The next queries go to {event.host}; enter on it again, or the host picker,"
                " lets routing pick."
            )
        self.notify(strip_terminal_controls(message), title="Hosts", markup=False)
