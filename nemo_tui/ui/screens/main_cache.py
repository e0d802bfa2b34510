"""The main screen's cache keys: preload (f4), unload (f8) and clear (f9), and their worker.

In a lab of several hosts, preload loads on the pinned host, unload acts on the host that holds
the model under the cursor, and clear empties this machine only: the other hosts' models are
shared with their other users.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.ui.messages import CachedModelsChanged
from nemo_tui.ui.screens.main_hosts import HostActions
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.query_pane import ENGINE_STARTING, QueryPane

if TYPE_CHECKING:
    from nemo_tui.core.models.recommender import Recommendation
    from nemo_tui.engine import CacheActionResult, Engine


class CacheActions(HostActions):
    """The cache actions, mixed into `MainScreen`, which sets the two attributes below.

    Each action runs in a worker that reports its outcome as a notification, then posts
    `CachedModelsChanged` so the panels are redrawn (and asks the hosts again, whose loaded
    models it may have changed).
    """

    _engine: Engine | None
    """The engine; None while it is being built."""
    _recommendation: Recommendation | None
    """The model the recommendation panel shows, if any yet."""

    def action_preload(self) -> None:
        """Preload the model picked in the query pane, else the recommended one."""
        pane = self.query_one(QueryPane)
        model = pane.model_override
        if model is None and self._recommendation is not None:
            model = self._recommendation.model
        if model is None:
            self.notify("No model to preload yet.", severity="warning")
            return
        host = pane.host_override
        where = f" on {host}" if host is not None else ""
        self.notify(
            strip_terminal_controls(f"Preloading {model}{where}…"), title="Cache", markup=False
        )
        self._cache_action("preload", model, host)

    def action_unload(self) -> None:
        """Unload the model under the cached-models cursor."""
        panel = self.query_one(CachedModelsPanel)
        model = panel.selected_model
        if model is None:
            self.notify("No model is loaded.", title="Cache")
            return
        self._cache_action("unload", model.name, panel.host_of(model))

    def action_clear_cache(self) -> None:
        """Unload every cached model."""
        self._cache_action("clear", None)

    @work(group="cache", exit_on_error=False, description="Cache action")
    async def _cache_action(self, what: str, model: str | None, host: str | None = None) -> None:
        engine = self._engine
        if engine is None:
            self.notify(ENGINE_STARTING, title="Cache", severity="warning")
            return
        result: CacheActionResult
        message = ""
        if what == "preload" and model is not None:
            result = await engine.preload(model, host=host)
        elif what == "unload" and model is not None:
            result = await engine.unload(model, host=host)
        else:
            result = await engine.clear_cache()
            local = self.local_host
            if local is not None:
                message = (
                    f"Cleared {local} (this machine) only: {result.message}. The other hosts"
                    " keep their models; f8 unloads one."
                )
        self.notify(
            strip_terminal_controls(message or result.message),
            title="Cache",
            severity="information" if result.ok else "warning",
            markup=False,
        )
        self.post_message(CachedModelsChanged())
        self.refresh_hosts()
