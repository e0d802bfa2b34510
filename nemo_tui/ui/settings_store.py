"""The dashboard's settings: the current config, handed to the engine and saved to the file."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nemo_tui import paths
from nemo_tui.config import Config
from nemo_tui.config_writer import SettingValue, apply_settings, default_settings, save_settings
from nemo_tui.errors import ConfigError

if TYPE_CHECKING:
    from nemo_tui.engine import Engine


class SettingsStore:
    """Owns the config the dashboard runs with.

    A change takes effect at once (the engine uses it from the next query); `save_pending`, run
    off the event loop, then writes it to the user's config file, keeping their comments and
    other keys.

    Args:
        config: The config loaded at start.
        engine: The engine to hand changes to; None until it is built (see `attach`).
        path: The file to save to; None means the platform default config file.
    """

    def __init__(self, config: Config, engine: Engine | None, path: Path | None) -> None:
        self._config = config
        self._engine = engine
        self._path = path or paths.default_config_file()
        self._pending: dict[str, SettingValue] = {}
        self._pending_lock = threading.Lock()
        self._save_lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The settings in force."""
        return self._config

    @property
    def path(self) -> Path:
        """Where changes are saved."""
        return self._path

    def attach(self, engine: Engine) -> None:
        """Hand changes to this engine from now on, starting with any made while it was built."""
        self._engine = engine
        if engine.config is not self._config:
            engine.update_config(self._config)

    def change(self, updates: Mapping[str, SettingValue]) -> Config:
        """Apply settings now; `save_pending` writes them to the file.

        Raises:
            ConfigError: a value is invalid (nothing changes).
        """
        self._config = apply_settings(self._config, updates)
        if self._engine is not None:
            self._engine.update_config(self._config)
        with self._pending_lock:
            self._pending.update(updates)
        return self._config

    def revert(self, keys: list[str]) -> Config:
        """Put the given settings back to their built-in defaults (`save_pending` saves that)."""
        return self.change(default_settings(keys))

    def save_pending(self) -> bool:
        """Write the changes made since the last save; whether there were any.

        Blocking (the file is locked against another nemo-tui saving, and synced to disk), so
        it runs in a thread. Saves happen one at a time, each taking every change made before
        it, so a later change is never overwritten by an earlier one's save.

        Raises:
            ConfigError: the file cannot be written. The changes still hold for this session
                and are tried again with the next save.
        """
        with self._save_lock:
            with self._pending_lock:
                updates, self._pending = self._pending, {}
            if not updates:
                return False
            try:
                save_settings(self._path, updates)
            except ConfigError:
                with self._pending_lock:
                    self._pending = {**updates, **self._pending}
                raise
            return True
