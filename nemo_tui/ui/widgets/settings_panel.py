"""The optimization settings panel: one switch per setting, and a key to restore the defaults."""

from __future__ import annotations

from textual.binding import Binding
from textual.content import Content
from textual.message import Message

from nemo_tui.config import Config
from nemo_tui.config_writer import get_setting
from nemo_tui.ui.widgets.cursor_list import CursorList

SETTINGS: tuple[tuple[str, str], ...] = (
    ("optimization.enable_garbage_collection", "Garbage collection"),
    ("optimization.use_memory_mapping", "Memory mapping"),
    ("optimization.enable_model_caching", "Model caching"),
    ("optimization.context_truncation", "Context truncation"),
    ("optimization.batch_optimization", "Batch optimization"),
    ("optimization.predictive_preloading", "Predictive preloading"),
    ("preferences.prefer_local", "Prefer local models"),
    ("preferences.allow_fallback", "Allow cloud fallback"),
)
"""The dotted config key and the label of every switch, in display order."""

SETTING_KEYS = [key for key, _ in SETTINGS]


class SettingsPanel(CursorList):
    """The switches; space toggles the one under the cursor, `d` restores the defaults.

    Args:
        config: The config whose switches it shows first.
        id: The widget id.
    """

    BINDINGS = [
        Binding(
            "space,enter",
            "flip",
            "Toggle",
            show=False,
            tooltip="Toggle the setting under the cursor",
        ),
        Binding("d", "defaults", "Defaults", tooltip="Revert the settings to the defaults"),
    ]

    DEFAULT_CSS = """
    SettingsPanel {
        border: round $primary 50%;
        padding: 0 1;
    }
    SettingsPanel:focus {
        border: round $primary;
    }
    SettingsPanel > .settings-panel--on {
        color: $success;
        text-style: bold;
    }
    """

    COMPONENT_CLASSES = {"settings-panel--on"}

    class Changed(Message):
        """The user flipped a switch."""

        def __init__(self, panel: SettingsPanel, key: str, value: bool) -> None:
            super().__init__()
            self.panel = panel
            self.key = key
            """The dotted config key."""
            self.value = value

        @property
        def control(self) -> SettingsPanel:
            """The panel that sent it."""
            return self.panel

    class DefaultsRequested(Message):
        """The user asked to put every switch back to its default."""

    def __init__(self, config: Config, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._on = {key: bool(get_setting(config, key)) for key in SETTING_KEYS}
        self.border_title = "Settings"
        self.border_subtitle = "space toggle · d defaults"

    @property
    def selected(self) -> list[str]:
        """The keys of the switches that are on."""
        return [key for key in SETTING_KEYS if self._on[key]]

    def rows(self) -> list[Content]:
        """One line per switch: `[x] Garbage collection`."""
        on_style = self.get_visual_style("settings-panel--on")
        return [
            Content.assemble(("[x]", on_style) if self._on[key] else "[ ]", " ", label)
            for key, label in SETTINGS
        ]

    def show(self, config: Config) -> None:
        """Set every switch from a config without announcing changes."""
        self._on = {key: bool(get_setting(config, key)) for key in SETTING_KEYS}
        self.refresh()

    def row_clicked(self, row: int) -> None:
        """A click toggles the switch it lands on."""
        self.action_flip()

    def action_flip(self) -> None:
        """Flip the switch under the cursor and announce it."""
        key = SETTING_KEYS[self.cursor]
        self._on[key] = not self._on[key]
        self.refresh()
        self.post_message(self.Changed(self, key, self._on[key]))

    def action_defaults(self) -> None:
        """Ask the app to restore the defaults."""
        self.post_message(self.DefaultsRequested())
