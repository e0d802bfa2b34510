"""The optimization settings panel: one switch per setting, and a key to restore the defaults."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import SelectionList
from textual.widgets.selection_list import Selection

from nemo_tui.config import Config
from nemo_tui.config_writer import get_setting

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


class SettingsPanel(SelectionList[str]):
    """The switches; space toggles the one under the cursor, `d` restores the defaults."""

    BINDINGS = [
        Binding("d", "defaults", "Defaults", tooltip="Revert the settings to the defaults"),
    ]

    DEFAULT_CSS = """
    SettingsPanel {
        height: auto;
        border: round $primary 50%;
    }
    SettingsPanel:focus {
        border: round $primary;
    }
    """

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
        super().__init__(
            *(Selection(label, key, bool(get_setting(config, key))) for key, label in SETTINGS),
            id=id,
        )
        self.border_title = "Settings"
        self.border_subtitle = "space toggle · d defaults"

    def show(self, config: Config) -> None:
        """Set every switch from a config without announcing changes."""
        with self.prevent(SelectionList.SelectionToggled, SelectionList.SelectedChanged):
            for key in SETTING_KEYS:
                if get_setting(config, key):
                    self.select(key)
                else:
                    self.deselect(key)

    def on_selection_list_selection_toggled(
        self, event: SelectionList.SelectionToggled[str]
    ) -> None:
        """Turn the list's toggle into our Changed message."""
        event.stop()
        key = event.selection.value
        self.post_message(self.Changed(self, key, key in self.selected))

    def action_defaults(self) -> None:
        """Ask the app to restore the defaults."""
        self.post_message(self.DefaultsRequested())
