"""Where nemo-tui keeps its files. Every path goes through here.

| What            | Where                                                        |
|-----------------|--------------------------------------------------------------|
| config file     | `$NEMO_TUI_CONFIG`, else `<user config dir>/config.yaml`     |
| user themes     | `<user config dir>/themes/*.yaml`                            |
| data (metrics)  | `<user data dir>`                                            |
| cache           | `<user cache dir>`                                           |
| llama.cpp logs  | `<user cache dir>/embedded/<model>.log`                      |

The user dirs come from platformdirs (`~/.config/nemo-tui` etc. on Linux, honouring XDG_*).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_path, user_config_path, user_data_path

APP_NAME = "nemo-tui"
CONFIG_ENV = "NEMO_TUI_CONFIG"


def config_dir() -> Path:
    """The user's nemo-tui config directory (may not exist yet)."""
    return user_config_path(APP_NAME, appauthor=False)


def default_config_file() -> Path:
    """The config file in the platform config dir (may not exist yet)."""
    return config_dir() / "config.yaml"


def env_config_file() -> Path | None:
    """The config file named by `$NEMO_TUI_CONFIG`, or None when the variable is unset."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(value).expanduser() if value else None


def user_themes_dir() -> Path:
    """Where users put their own theme files."""
    return config_dir() / "themes"


def bundled_themes_dir() -> Path:
    """The themes shipped with nemo-tui.

    A wheel carries them inside the package; a source checkout (editable install) keeps them in the
    top-level `themes/` folder next to the package.
    """
    package = Path(__file__).resolve().parent
    inside = package / "themes"
    return inside if inside.is_dir() else package.parent / "themes"


def data_dir() -> Path:
    """Where nemo-tui keeps data it produces, such as usage history."""
    return user_data_path(APP_NAME, appauthor=False)


def history_file() -> Path:
    """Where every nemo-tui process (the dashboard and the commands) keeps per-query metrics
    between runs: numbers only, no prompts or answers."""
    return data_dir() / "history.jsonl"


def cache_dir() -> Path:
    """Where nemo-tui keeps caches it can rebuild."""
    return user_cache_path(APP_NAME, appauthor=False)


def embedded_log_dir() -> Path:
    """Where the embedded backend's llama.cpp workers write their logs, one file per model."""
    return cache_dir() / "embedded"
