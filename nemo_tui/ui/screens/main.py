"""The main screen: memory, recommendation, cache, settings and the query pane, all live.

The screen is one more subscriber to the engine's events. Two workers feed it: a short thread
worker per gauge tick samples memory (reading /proc and NVML must not block the event loop),
and an async worker relays the engine's event stream. Both only post messages; the handlers
below update the widgets. The keys are listed in `main_bindings`; those acting on the cache, on
the question and answer, and on analysis scripts live in the `main_cache`, `main_query` and
`main_analysis` mixins, and the lab's other hosts in `main_hosts`.

In a small terminal the side panels sit above the query pane and leave the answer a few rows;
once an answer or a script is on screen, the memory and recommendation panels fold to a line
each (and the rest of the side waits) until the side is focused again. The hosts panel, shown
when other hosts are configured, is a line there even before that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.notifications import SeverityLevel
from textual.worker import Worker, WorkerState

from nemo_tui.config_writer import get_setting
from nemo_tui.core.memory.profile import (
    MemoryProfile,
    MemorySampler,
    PressureLevel,
    PressureWatcher,
)
from nemo_tui.core.models.backend_names import backend_host
from nemo_tui.core.reports.troubleshooting import Action, diagnose
from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.errors import ConfigError
from nemo_tui.ui.collector import Pause, resume_collection
from nemo_tui.ui.failures import failure_text, failure_title
from nemo_tui.ui.messages import (
    CachedModelsChanged,
    EngineEventArrived,
    EngineStarted,
    MemorySampled,
)
from nemo_tui.ui.screens.main_analysis import AnalysisActions
from nemo_tui.ui.screens.main_bindings import MAIN_BINDINGS
from nemo_tui.ui.screens.main_cache import CacheActions
from nemo_tui.ui.screens.main_hosts import HostActions
from nemo_tui.ui.screens.main_query import QueryActions
from nemo_tui.ui.settings_store import SettingsStore
from nemo_tui.ui.widgets.analysis_view import AnalysisView
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.hosts_panel import HostsPanel
from nemo_tui.ui.widgets.key_bar import KeyBar
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.ui.widgets.memory_panel import MemoryPanel
from nemo_tui.ui.widgets.query_pane import ENGINE_STARTING, QueryPane
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel, describe_change
from nemo_tui.ui.widgets.settings_panel import SETTING_KEYS, SettingsPanel
from nemo_tui.ui.widgets.title_bar import TitleBar
from nemo_tui.ui.widgets.troubleshooting_panel import ACTION_LABELS, TroubleshootingPanel
from nemo_tui.units import format_mb, format_pct

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nemo_tui.backends.base import BackendHealth
    from nemo_tui.core.models.cache_policy import CachedModel
    from nemo_tui.engine import Engine
    from nemo_tui.events import EngineEvent
    from nemo_tui.exporter.serve import MetricsEndpoint
    from nemo_tui.ui.app import NemoApp

FIX_SETTINGS: dict[Action, str] = {
    Action.ENABLE_TRUNCATION: "optimization.context_truncation",
    Action.ENABLE_BATCH_OPTIMIZATION: "optimization.batch_optimization",
    Action.ENABLE_MEMORY_MAPPING: "optimization.use_memory_mapping",
    Action.ENABLE_GARBAGE_COLLECTION: "optimization.enable_garbage_collection",
}
"""Troubleshooting fixes that are a setting to turn on."""

WIDE_FROM_COLUMNS = 110
"""From this width the side panels sit beside the query pane, not above it."""

FOLD_BELOW_ROWS = 40
"""Below this height (with the side panels above the query pane) they fold while an answer or a
script is on screen: at 80x24 the unfolded panels leave an answer two rows."""

_SEVERITY: dict[PressureLevel, SeverityLevel] = {
    PressureLevel.NORMAL: "information",
    PressureLevel.ELEVATED: "warning",
    PressureLevel.CRITICAL: "error",
}


class MainScreen(CacheActions, QueryActions, AnalysisActions, HostActions):
    """The dashboard.

    It draws at once, with "starting…" in the panels, even before the engine exists; the app
    hands the engine over with `attach_engine` once it is built.

    Args:
        engine: The engine to show and drive, or None while the app is still building it.
        settings: The config in force, and where changes go.
        sampler: Where the gauges read memory until the engine exists; from then on they read
            the engine's samples.
    """

    BINDINGS = MAIN_BINDINGS

    AUTO_FOCUS = "#query-input"
    """Focused from the start, so a question can be typed at once."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM_COLUMNS, "-wide")]

    def __init__(
        self, engine: Engine | None, settings: SettingsStore, sampler: MemorySampler | None = None
    ) -> None:
        super().__init__(id="main")
        self._engine = engine
        self._settings = settings
        self._sampler = sampler
        self._gauges_live = False
        self._watcher = PressureWatcher(settings.config.memory_thresholds.pressure_threshold)
        self._recommendation = None
        self._events: AsyncIterator[EngineEvent] | None = None
        self._profile: MemoryProfile | None = None
        self._started = False
        self._metrics: MetricsEndpoint | None = None
        """The Prometheus endpoint served while the dashboard runs (`metrics.listen`)."""
        self.sub_title = "starting the engine…"

    def compose(self) -> ComposeResult:
        """Side panels and the query pane between the title bar and the key bar."""
        # Textual sets the breakpoint class on the first resize, which comes after the first
        # frame and restyles every widget; set from the start, that resize changes nothing.
        wide = self.app.size.width >= WIDE_FROM_COLUMNS
        self.update_classes({"-wide": wide, "-narrow": not wide}, animate=False)
        yield TitleBar()
        with Horizontal(id="body"):
            with VerticalScroll(id="side"):
                thresholds = self._settings.config.memory_thresholds
                yield MemoryPanel(
                    pressure_threshold=thresholds.pressure_threshold,
                    cache_limit=thresholds.cache_limit,
                    id="memory",
                )
                hosts = HostsPanel(id="hosts")
                hosts.display = bool(self._settings.config.hosts)
                yield hosts
                yield TroubleshootingPanel(id="troubleshooting")
                yield RecommendationPanel(id="recommendation")
                yield CachedModelsPanel(id="cached-models")
                yield SettingsPanel(self._settings.config, id="settings")
            yield QueryPane(self._engine, id="query-pane")
        yield KeyBar()

    def on_mount(self) -> None:
        """Start the gauges (given a sampler), and take the engine if the app already has it."""
        if self._sampler is not None:
            # The first sample goes into the first frame: reading /proc takes well under a
            # millisecond (NVML's start-up, on a machine with GPUs, is paid once either way).
            self._show_sample(self._sampler.sample())
            self._start_gauges()
        if self._engine is not None:
            self.attach_engine(self._engine)

    def attach_engine(self, engine: Engine) -> None:
        """Subscribe to the engine before starting it, then start the clocks.

        Args:
            engine: The engine, built but not started.
        """
        monitor = self._settings.config.monitor
        self._engine = engine
        self.query_one(QueryPane).attach_engine(engine)
        self._events = engine.subscribe()
        self._relay_events()
        self._start_engine(engine)
        if not self._gauges_live:
            self.sample_memory()
            self._start_gauges()
        self.set_interval(monitor.refresh_interval_s, self._refresh_all)

    def _start_gauges(self) -> None:
        self._gauges_live = True
        self.set_interval(self._settings.config.monitor.gauge_interval_s, self.sample_memory)

    # Workers: they only post messages.

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """Every worker of this screen fails loudly: the app keeps running and says what broke."""
        if event.state is WorkerState.ERROR:
            worker = event.worker
            self.notify(
                strip_terminal_controls(failure_text(worker)),
                title=failure_title(worker),
                severity="error",
                markup=False,
            )

    @work(
        thread=True,
        exclusive=True,
        group="memory",
        exit_on_error=False,
        description="Sampling memory",
    )
    def sample_memory(self) -> None:
        """Take one memory sample off the event loop and post it."""
        # The engine's samples count the models it loads on a simulated machine; the sampler
        # alone only serves until the engine exists.
        if self._engine is not None:
            self.post_message(MemorySampled(self._engine.sample()))
        elif self._sampler is not None:
            self.post_message(MemorySampled(self._sampler.sample()))

    @work(
        exclusive=True,
        group="engine-events",
        exit_on_error=False,
        description="Reading engine events",
    )
    async def _relay_events(self) -> None:
        # The events module (and the core modules it carries) is imported here, once the
        # engine exists, rather than with this module: the first frame does not need it.
        from nemo_tui.events import Token

        assert self._events is not None
        query_pane = self.query_one(QueryPane)
        async for event in self._events:
            if isinstance(event, Token):
                # The flood of tokens goes straight to the pane's buffer; the pane draws it on
                # its own clock, so 2,000 tokens/s cost one small append each, not a repaint.
                query_pane.feed(event.query_id, event.text)
            else:
                self.post_message(EngineEventArrived(event))

    @work(
        exclusive=True,
        group="engine-start",
        exit_on_error=False,
        description="Starting the engine",
    )
    async def _start_engine(self, engine: Engine) -> None:
        healths = await engine.start()
        listen = self._settings.config.metrics.listen
        if listen is not None:
            self._serve_metrics(engine, listen)
        self.post_message(EngineStarted(healths))

    def _serve_metrics(self, engine: Engine, listen: str) -> None:
        """Serve Prometheus metrics on the engine's loop, as `nemo-tui metrics --listen` does."""
        # Imported only when asked for: prometheus-client is not needed for the first frame.
        from nemo_tui import paths
        from nemo_tui.errors import NemoError
        from nemo_tui.exporter.serve import parse_listen_address, serve

        try:
            address, port = parse_listen_address(listen)
            self._metrics = serve(engine, engine.hosts, address, port, history=paths.history_file())
        except NemoError as exc:
            self.notify(exc.one_line(), title="Metrics not served", severity="error", markup=False)
            return
        self.notify(f"Serving metrics at {self._metrics.url}", title="Metrics", markup=False)

    async def on_unmount(self) -> None:
        """Stop serving metrics (the server's thread ends within half a second)."""
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)

    @work(
        exclusive=True,
        group="backends",
        exit_on_error=False,
        description="Refreshing the models",
    )
    async def _refresh_models(self, engine: Engine) -> None:
        await engine.refresh()
        self.post_message(CachedModelsChanged())

    # Handlers.

    def on_engine_started(self, message: EngineStarted) -> None:
        """Show the backends and fill the model selector."""
        self._started = True
        self._show_healths(message.healths)
        self._show_model_choices()
        if self._engine is not None:
            self.show_hosts(self._engine.host_statuses())
        self._show_cached_models()
        self._refresh_recommendation()
        self.call_after_refresh(resume_collection, Pause.START_UP)

    def on_memory_sampled(self, message: MemorySampled) -> None:
        """Draw a sample; a pressure level change is announced and re-evaluates the pick."""
        self._show_sample(message.profile)

    def _show_sample(self, profile: MemoryProfile) -> None:
        self._profile = profile
        config = self._settings.config
        change = self._watcher.update(profile)
        level = self._watcher.level
        self.query_one(MemoryPanel).show_profile(
            profile, level, pressure_threshold=config.memory_thresholds.pressure_threshold
        )
        self.query_one(MemoryHistory).add_sample(profile)
        self.query_one(HostsPanel).tick()
        cached = self.query_one(CachedModelsPanel)
        if cached.models and self._engine is not None:
            # Read again, not just redrawn: a model past its expiry has left the engine's record.
            models = self._engine.cached_models()
            shown = {(m.backend, m.name) for m in cached.models}
            if {(m.backend, m.name) for m in models} != shown:
                self.query_one(MemoryPanel).show_models(_on_this_machine(models))
            cached.show_models(models, now=profile.timestamp)
        self._diagnose()
        if change is not None:
            self.notify(
                f"Memory pressure is now {change.current.value}"
                f" ({format_pct(profile.usage_fraction)} used, was {change.previous.value}).",
                title="Memory pressure",
                severity=_SEVERITY[change.current],
            )
            self._refresh_recommendation()

    async def on_engine_event_arrived(self, message: EngineEventArrived) -> None:
        """Query events go to the pane; cache and machine events update the panels."""
        from nemo_tui.events import (
            FINAL_EVENTS,
            BackendsChanged,
            Evicting,
            HostsChanged,
            Loading,
            PressureChanged,
        )

        event = message.event
        await self.query_one(QueryPane).show_event(event)
        if isinstance(event, Evicting) and event.query_id:
            # Evictions of cache actions and pressure relief are reported with their outcome.
            freed = f", freed {format_mb(event.freed_mb)}" if event.freed_mb is not None else ""
            self.notify(
                strip_terminal_controls(
                    f"Unloaded {event.model} from {event.backend}: {event.reason}{freed}."
                ),
                title="Cache",
                markup=False,
            )
        if isinstance(event, PressureChanged) and event.action:
            self.notify(
                strip_terminal_controls(event.action),
                title="Memory pressure",
                severity="warning",
                markup=False,
            )
        if isinstance(event, BackendsChanged):
            self._show_healths(list(event.healths))
            self._show_model_choices()
        if isinstance(event, HostsChanged):
            self.show_hosts(event.statuses)
        if isinstance(event, (Evicting, Loading, PressureChanged, *FINAL_EVENTS)):
            self._show_cached_models()
        if isinstance(event, FINAL_EVENTS):
            self._refresh_recommendation()
            self.refresh_bindings()
            # A query may have loaded or evicted a model on another host.
            self.refresh_hosts()

    def on_cached_models_changed(self, _: CachedModelsChanged) -> None:
        """The backends were asked again."""
        self._show_cached_models()
        self._refresh_recommendation()

    @on(QueryPane.Submitted)
    def _query_submitted(self) -> None:
        self._update_fold()
        self.refresh_bindings()

    def on_resize(self, _: events.Resize) -> None:
        """The folding of the side panels depends on the terminal's size."""
        self._update_fold()

    def on_descendant_focus(self, _: events.DescendantFocus) -> None:
        """Focus in the side panels unfolds them; focus leaving folds them again."""
        self._update_fold()

    def on_descendant_blur(self, _: events.DescendantBlur) -> None:
        """See `on_descendant_focus`."""
        self._update_fold()

    def _update_fold(self) -> None:
        width, height = self.app.size
        side = self.query_one("#side")
        focused = self.focused
        small = (
            width < WIDE_FROM_COLUMNS
            and height < FOLD_BELOW_ROWS
            and not (focused is not None and (focused is side or side in focused.ancestors))
        )
        # The hosts are a line in a small terminal from the start: unfolded, they would take
        # most of the side's rows away from the memory gauges.
        self.query_one(HostsPanel).fold(small)
        fold = small and self.query_one(QueryPane).has_output
        if fold != self.has_class("-fold"):
            self.set_class(fold, "-fold")
            self.query_one(MemoryPanel).fold(fold)
            self.query_one(RecommendationPanel).fold(fold)

    @on(SettingsPanel.Changed)
    def _setting_changed(self, event: SettingsPanel.Changed) -> None:
        self._change_settings({event.key: event.value})

    @on(SettingsPanel.DefaultsRequested)
    def _defaults_requested(self) -> None:
        config = self._settings.revert(SETTING_KEYS)
        path = self._settings.path
        self._save_settings(f"Settings reverted to the defaults and saved to {path}.")
        self.query_one(SettingsPanel).show(config)
        self._after_settings()

    # Actions (the cache and query-pane ones are in the mixins).

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel only while a query or a script runs; the fix only while there is one."""
        if action == "cancel":
            return self.query_one(QueryPane).running or self.query_one(AnalysisView).running
        if action == "fix":
            return self.query_one(TroubleshootingPanel).action is not None
        return True

    async def action_send(self) -> None:
        """Send the question."""
        if not self._started:
            self.notify(ENGINE_STARTING, severity="warning")
            return
        await self.query_one(QueryPane).send()
        self.refresh_bindings()

    def action_cancel(self) -> None:
        """Stop the running script, or cancel the running query."""
        if not self.stop_script():
            self.query_one(QueryPane).cancel()

    def action_accept_recommendation(self) -> None:
        """Select the recommended model in the query pane."""
        if self._recommendation is None:
            self.notify("No recommendation yet.", severity="warning")
            return
        self.query_one(QueryPane).choose_model(self._recommendation.model)
        self.notify(
            strip_terminal_controls(f"{self._recommendation.model} selected for the next query."),
            markup=False,
        )

    def action_refresh(self) -> None:
        """Sample memory and ask the backends (and the other hosts) now."""
        if self._engine is None:
            self.notify(ENGINE_STARTING, severity="warning")
            return
        self.sample_memory()
        self._refresh_all()
        self.refresh_hosts()

    def action_toggle_side(self) -> None:
        """Hide or show the side panels, giving the query pane the room."""
        self.toggle_class("-hide-side")

    def action_toggle_plot(self) -> None:
        """Hide or show the memory history plot."""
        shown = self.query_one(MemoryHistory).display
        self.set_class(shown, "-hide-plot")
        self.set_class(not shown, "-show-plot")

    def action_fix(self) -> None:
        """Apply the troubleshooting panel's one-key fix."""
        action = self.query_one(TroubleshootingPanel).action
        if action is None or self._engine is None:
            return
        self.notify(f"Troubleshooting: {ACTION_LABELS[action]}.", title="Fix")
        if action is Action.CLEAR_CACHE:
            self._cache_action("clear", None)
        elif action is Action.LIGHTER_MODEL:
            from nemo_tui.core.models.complexity import Complexity

            lighter = self._engine.recommend_now(Complexity.LOW).model
            self.query_one(QueryPane).choose_model(lighter)
        else:
            self._change_settings({FIX_SETTINGS[action]: True})
            self.query_one(SettingsPanel).show(self._settings.config)

    def toggle_setting(self, key: str) -> None:
        """Flip one switch (from the command palette), as if toggled in the panel."""
        self._change_settings({key: not get_setting(self._settings.config, key)})
        self.query_one(SettingsPanel).show(self._settings.config)

    # Helpers. Until the engine exists, the panels that need it keep their "starting" text.

    def _change_settings(self, updates: dict[str, bool]) -> None:
        try:
            self._settings.change(updates)
        except ConfigError as exc:
            self.notify(exc.one_line(), title="Setting not changed", severity="error", markup=False)
        else:
            self._save_settings()
        self._after_settings()

    def _save_settings(self, announce: str = "") -> None:
        cast("NemoApp", self.app).save_settings(announce)

    def _after_settings(self) -> None:
        """Settings steer the recommendation and the plan; show their effect at once."""
        self._refresh_recommendation()
        self.query_one(QueryPane).refresh_plan()
        self._diagnose()

    def _refresh_all(self) -> None:
        self._refresh_recommendation()
        if self._started and self._engine is not None:
            self._refresh_models(self._engine)

    def _refresh_recommendation(self) -> None:
        """Ask for the pick now; a changed pick is announced with what changed and why."""
        if self._engine is None:
            return
        rec = self._engine.recommend_now()
        previous = self._recommendation
        self._recommendation = rec
        self.query_one(RecommendationPanel).show(rec)
        if previous is not None and previous.model != rec.model:
            self.notify(
                strip_terminal_controls(describe_change(previous, rec) + " (f3 selects it)"),
                title="Recommendation changed",
                markup=False,
            )

    def _show_model_choices(self) -> None:
        if self._engine is not None:
            self.query_one(QueryPane).set_model_choices(self._engine.model_choices())

    def _show_cached_models(self) -> None:
        if self._engine is None:
            return
        models = self._engine.cached_models()
        self.query_one(CachedModelsPanel).show_models(models)
        self.query_one(MemoryPanel).show_models(_on_this_machine(models))

    def _show_healths(self, healths: list[BackendHealth]) -> None:
        parts = [f"{h.backend} {'up' if h.up else 'down'}" for h in healths]
        self.sub_title = "backends: " + (", ".join(parts) if parts else "none")

    def _diagnose(self) -> None:
        profile = self._profile
        engine = self._engine
        if profile is None or engine is None:
            return
        panel = self.query_one(TroubleshootingPanel)
        had_fix = panel.action is not None
        cached = engine.cached_models()
        installed = engine.installed_names()
        local = sum(1 for spec in engine.catalog if spec.local and spec.name in installed)
        symptoms = diagnose(
            profile,
            engine.metrics,
            self._settings.config,
            cached_mb=sum(model.size_mb for model in cached if model.size_mb is not None),
            local_models_installed=local,
        )
        panel.show(symptoms)
        if (panel.action is not None) != had_fix:
            self.refresh_bindings()


def _on_this_machine(models: Sequence[CachedModel]) -> list[CachedModel]:
    """The models loaded on this machine: another host's fill that host's memory, not the
    gauges of this one."""
    return [model for model in models if backend_host(model.backend) is None]
