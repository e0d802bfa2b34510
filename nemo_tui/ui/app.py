"""The dashboard app: themes, the engine's lifetime, global keys and the command palette.

`create_app` is the one way to build it, used by `nemo-tui` and by the tests alike. Given an
engine factory rather than an engine, the app draws its first frame before the engine exists:
the factory (importing the engine and building the backends takes a noticeable part of a
second) runs in a thread worker once the screen is up, and the panels say "starting" until then.
Given the memory sampler as well, the gauges are live from the first frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from rich.markup import escape
from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker, WorkerState, get_current_worker

from nemo_tui import paths
from nemo_tui.config import Config
from nemo_tui.config_writer import get_setting
from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.errors import ConfigError
from nemo_tui.ui.collector import Pause, resume_collection
from nemo_tui.ui.failures import failure_text
from nemo_tui.ui.key_help import KeyHelp, key_help
from nemo_tui.ui.messages import EngineBuilt
from nemo_tui.ui.screens.main import MainScreen
from nemo_tui.ui.screenshot import preserve_spaces
from nemo_tui.ui.settings_store import SettingsStore
from nemo_tui.ui.themes import DEFAULT_THEME, GAUGE_VARIABLES, LAST_RESORT_THEME, load_themes
from nemo_tui.ui.widgets.hosts_panel import HostsPanel
from nemo_tui.ui.widgets.query_pane import ENGINE_STARTING
from nemo_tui.ui.widgets.settings_panel import SETTINGS, SettingsPanel

if TYPE_CHECKING:
    from nemo_tui.core.memory.profile import MemorySampler
    from nemo_tui.engine import Engine

EngineFactory: TypeAlias = Callable[[], "Engine"]
"""Builds the engine (not started); called once, in a thread, after the first frame."""

COLLECTION_PAUSE_LIMIT_S = 10.0
"""However start-up goes (a backend slow to answer, an engine that fails to start), garbage
collection is paused no longer than this."""

KEY_NAMES = {"question_mark": "?", "escape": "esc"}
"""How some keys are written in the help screen."""


class NemoApp(App[None]):
    """The nemo-tui dashboard.

    Args:
        config: The validated config.
        engine: The engine (not started; the app starts and closes it), or a factory that
            builds it, which the app calls in a thread once its first frame is drawn.
        sampler: Where the gauges read memory before the engine exists; None means they
            wait for the engine and use its sampler.
        config_path: The file settings are saved to; None means the platform default.
        theme: A theme name from `--theme`, which wins over the config and is remembered.
        theme_dirs: Folders to load themes from; None means the bundled and the user's.
    """

    TITLE = "nemo-tui"
    CSS_PATH = ["styles/app.tcss"]
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", tooltip="Show every key binding"),
        Binding("f2", "stats", "Stats", tooltip="Show the full stats and backend health"),
    ]

    def __init__(
        self,
        config: Config,
        engine: Engine | EngineFactory,
        *,
        sampler: MemorySampler | None = None,
        config_path: Path | None = None,
        theme: str | None = None,
        theme_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__()
        # An Engine is not callable; anything callable is the factory.
        self._engine_factory = engine if callable(engine) else None
        self.engine: Engine | None = None if callable(engine) else engine
        self.settings_not_saved: ConfigError | None = None
        """Why settings changed in this session could not be saved by the time it ended."""
        """The engine; None until the factory has built it."""
        self.settings = SettingsStore(config, self.engine, config_path)
        self._main = MainScreen(self.engine, self.settings, sampler)
        folders = theme_dirs or (paths.bundled_themes_dir(), paths.user_themes_dir())
        found = load_themes(folders)
        for nemo_theme in found.themes:
            self.register_theme(nemo_theme)
        self._startup_notes = [f"Theme skipped: {problem}" for problem in found.problems]
        self._theme_from_cli = theme is not None
        wanted = theme or config.ui.theme
        chosen = self._pick_theme(wanted)
        self.theme = chosen
        self._startup_theme = chosen

    def _pick_theme(self, wanted: str) -> str:
        available = self.available_themes
        if wanted in available:
            return wanted
        fallback = DEFAULT_THEME if DEFAULT_THEME in available else LAST_RESORT_THEME
        self._startup_notes.append(
            f"No usable theme named '{wanted}'; using {fallback}."
            f" Themes: {', '.join(sorted(available))}"
        )
        return fallback

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """The gauge colours, for themes (such as Textual's own) that do not set them."""
        return dict(GAUGE_VARIABLES)

    def get_default_screen(self) -> Screen[None]:
        """The main dashboard screen."""
        return self._main

    def on_mount(self) -> None:
        """Report skipped themes, remember theme changes, build the engine after a frame."""
        self.set_timer(COLLECTION_PAUSE_LIMIT_S, partial(resume_collection, Pause.START_UP))
        for note in self._startup_notes:
            # Theme names and problems quote the user's files, which may hold brackets.
            self.notify(note, title="Theme", severity="warning", timeout=10, markup=False)
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self._theme_from_cli:
            self._remember_theme(self.current_theme)
        if self._engine_factory is not None:
            self.call_after_refresh(self._build_engine, self._engine_factory)

    async def on_unmount(self) -> None:
        """Save a setting changed just before quitting (its save worker may not have run);
        close the engine: cancel what runs, unload in-process models, close connections."""
        try:
            await asyncio.to_thread(self.settings.save_pending)
        except ConfigError as exc:
            self.settings_not_saved = exc
        if self.engine is not None:
            await self.engine.aclose()

    @work(
        thread=True,
        exclusive=True,
        group="engine-build",
        exit_on_error=False,
        description="Building the engine",
    )
    def _build_engine(self, factory: EngineFactory) -> None:
        engine = factory()
        # Nothing is open before `start`, so an engine built after quitting is just dropped.
        if not get_current_worker().is_cancelled:
            self.post_message(EngineBuilt(engine))

    def on_engine_built(self, message: EngineBuilt) -> None:
        """Hand the new engine to the settings and the dashboard, which starts it."""
        self.engine = message.engine
        self.settings.attach(message.engine)
        self._main.attach_engine(message.engine)

    @on(Worker.StateChanged)
    def _engine_build_failed(self, event: Worker.StateChanged) -> None:
        """Without an engine the dashboard can do nothing: quit and say why, as the CLI does."""
        worker = event.worker
        if worker.group != "engine-build" or event.state is not WorkerState.ERROR:
            return
        # Rich prints the message as Rich markup, and the failure may quote a server or a file.
        reason = strip_terminal_controls(failure_text(worker))
        self.exit(return_code=1, message=escape(f"nemo-tui: the engine did not start: {reason}"))

    def _remember_theme(self, theme: Theme) -> None:
        if theme.name == self._startup_theme and not self._theme_from_cli:
            return
        if theme.name == self.settings.config.ui.theme:
            return
        try:
            self.settings.change({"ui.theme": theme.name})
        except ConfigError as exc:
            self.notify(exc.one_line(), title="Theme not saved", severity="error", markup=False)
        else:
            self.save_settings()

    @work(thread=True, group="settings-save", exit_on_error=False)
    def save_settings(self, announce: str = "") -> None:
        """Write the settings changed so far to the config file, then `announce` (if any).

        In a thread: waiting on the file's lock (another nemo-tui saving) or on the disk must not
        freeze the dashboard. A failure is a notification; the change holds for this session.
        """
        try:
            saved = self.settings.save_pending()
        except ConfigError as exc:
            self.call_from_thread(
                self.notify,
                exc.one_line(),
                title="Setting not saved",
                severity="error",
                markup=False,
            )
            return
        if saved and announce:
            self.call_from_thread(self.notify, announce, markup=False)

    def key_help(self) -> list[KeyHelp]:
        """Every binding of the dashboard, for the help screen."""
        return [
            *key_help(self.BINDINGS, "anywhere", KEY_NAMES),
            *(line for line, _ in _screen_actions()),
            KeyHelp("ctrl+p", "Command palette: every action, settings and themes", "anywhere"),
            KeyHelp("ctrl+q", "Quit", "anywhere"),
            KeyHelp("tab / shift+tab", "Move between panels", "anywhere"),
            *key_help(SettingsPanel.BINDINGS, "settings panel", KEY_NAMES),
            KeyHelp("↑ / ↓", "Pick the model that f8 unloads", "cached models panel"),
            # Only a lab of several hosts has the hosts panel.
            *(
                key_help(HostsPanel.BINDINGS, "hosts panel", KEY_NAMES)
                if self.settings.config.hosts
                else []
            ),
            KeyHelp("r", "Refresh", "stats screen"),
        ]

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's commands, then every dashboard action and setting."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: keys", "Show every key binding", self.action_help)
        yield SystemCommand("Stats", "Full stats and backend health", self.action_stats)
        if not isinstance(screen, MainScreen):
            return
        for line, action in _screen_actions():
            yield SystemCommand(
                f"{line.description} ({line.keys})",
                line.description,
                partial(screen.run_action, action),
            )
        for key, label in SETTINGS:
            state = "on" if get_setting(self.settings.config, key) else "off"
            yield SystemCommand(
                f"Toggle {label}",
                f"Now {state}; saved to your config file",
                partial(screen.toggle_setting, key),
            )
        yield SystemCommand(
            "Settings: revert to defaults",
            "Put every switch back to its default and save",
            screen.query_one(SettingsPanel).action_defaults,
        )

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        """Textual's SVG screenshot of the screen, with every space kept in any renderer.

        Textual's screenshot command, `save_screenshot` and the snapshot tests all export
        through here, so each picture of the dashboard keeps the space between a label and its
        value (see `nemo_tui.ui.screenshot`).
        """
        return preserve_spaces(super().export_screenshot(title=title, simplify=simplify))

    def action_help(self) -> None:
        """Show every key binding."""
        from nemo_tui.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_help()))

    def action_stats(self) -> None:
        """Show the stats screen."""
        from nemo_tui.ui.screens.stats import StatsScreen

        if self.engine is None:
            self.notify(ENGINE_STARTING, severity="warning")
        elif not isinstance(self.screen, StatsScreen):
            self.push_screen(StatsScreen(self.engine))


def _screen_actions() -> list[tuple[KeyHelp, str]]:
    """The main screen's own actions (not the app's), with their help line."""
    own = [
        b for b in MainScreen.BINDINGS if isinstance(b, Binding) and not b.action.startswith("app.")
    ]
    return list(zip(key_help(own, "main screen", KEY_NAMES), [b.action for b in own], strict=True))


def create_app(
    config: Config,
    engine: Engine | EngineFactory,
    *,
    sampler: MemorySampler | None = None,
    config_path: Path | None = None,
    theme: str | None = None,
    theme_dirs: Sequence[Path] | None = None,
) -> NemoApp:
    """Build the dashboard (the CLI and the tests both use this).

    Args:
        config: The validated config.
        engine: The engine, not yet started; or a callable returning it, which the app calls
            in a thread after its first frame so start-up does not wait for the engine.
        sampler: The memory sampler, so the gauges need not wait for the engine.
        config_path: Where changed settings are saved; None means the platform default file.
        theme: `--theme NAME`: use it now and remember it.
        theme_dirs: Theme folders; None means the bundled ones and the user's.
    """
    return NemoApp(
        config,
        engine,
        sampler=sampler,
        config_path=config_path,
        theme=theme,
        theme_dirs=theme_dirs,
    )
