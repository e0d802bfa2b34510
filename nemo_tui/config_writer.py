"""Changing settings: apply them to a Config, and save them to the user's YAML file.

Saving is a round trip through ruamel.yaml, so the user's comments, key order and every key the
dashboard did not touch survive. Settings are named by dotted key paths such as
`optimization.context_truncation`, the same paths `ConfigError` uses.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from nemo_tui.config import Config, parse_config
from nemo_tui.errors import ConfigError

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

SettingValue = bool | int | float | str
"""The value types the dashboard saves (switches, numbers, names)."""

NEW_FILE_HEADER = (
    "nemo-tui configuration, written by the dashboard when a setting changed.\n"
    "Every key is optional; `nemo-tui check-config` validates this file."
)


def get_setting(config: Config, key: str) -> Any:
    """The value at a dotted key path.

    Raises:
        ConfigError: no such key.
    """
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, msgspec.Struct) or part not in node.__struct_fields__:
            raise ConfigError("no such setting", key=key)
        node = getattr(node, part)
    return node


def apply_settings(config: Config, updates: Mapping[str, SettingValue]) -> Config:
    """A new Config with the dotted keys set; the given config is left as it was.

    Args:
        config: The config to start from.
        updates: Dotted key path -> new value.

    Returns:
        The updated config, validated like a loaded one.

    Raises:
        ConfigError: a key does not exist or a value has the wrong type.
    """
    data: dict[str, Any] = msgspec.to_builtins(config)
    for key, value in updates.items():
        get_setting(config, key)
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        return msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc), fix="use a value of the setting's type") from exc


def default_settings(keys: list[str]) -> dict[str, SettingValue]:
    """The built-in default for each dotted key (for "revert to defaults")."""
    defaults = Config()
    return {key: get_setting(defaults, key) for key in keys}


def save_settings(path: Path, updates: Mapping[str, SettingValue]) -> None:
    """Write the dotted keys into the YAML file at `path`, keeping everything else intact.

    A missing file (and its folders) is created. The result is validated before it replaces the
    file, so a save never leaves behind a config nemo-tui would refuse to start with; the
    replacement is atomic, so a crash mid-write cannot truncate the user's file either.

    Args:
        path: The config file.
        updates: Dotted key path -> new value.

    Raises:
        ConfigError: the existing file is not valid YAML, the result would be invalid, or the
            file cannot be written.
    """
    # Imported here: ruamel.yaml costs start-up time and memory, and only a save needs it.
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    document = _load(yaml, path)
    for key, value in updates.items():
        _set(document, key.split("."), value)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    text = buffer.getvalue()
    saved = parse_config(text, source=str(path))
    _write_atomically(path, text, private=saved.backends.gemini.api_key is not None)


def _load(yaml: YAML, path: Path) -> CommentedMap:
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        document = CommentedMap()
        document.yaml_set_start_comment(NEW_FILE_HEADER)
        return document
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=str(path)) from exc
    try:
        loaded = yaml.load(text)
    except YAMLError as exc:
        # The parser's own message quotes the lines it read, which may hold an API key.
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(
            f"cannot save settings, the file is not valid YAML{where}",
            path=str(path),
            fix="fix the YAML there (`nemo-tui check-config` shows the problem), then change"
            " the setting again",
        ) from exc
    if loaded is None:
        return CommentedMap()
    if not isinstance(loaded, CommentedMap):
        raise ConfigError("the top level must be a mapping of sections", path=str(path))
    return loaded


def _set(node: CommentedMap, parts: list[str], value: SettingValue) -> None:
    """Set a nested key, creating the sections on the way that the file does not have yet."""
    from ruamel.yaml.comments import CommentedMap

    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, CommentedMap):
            child = CommentedMap()
            node[part] = child
        node = child
    node[parts[-1]] = value


def _write_atomically(path: Path, text: str, *, private: bool) -> None:
    """Replace `path` with `text`; `private` keeps it to its owner (the text holds a key)."""
    temp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes the file private; a saved config keeps the mode the user gave it.
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        if private:
            mode &= 0o700
        handle, temp_name = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
        temp_name = None
    except OSError as exc:
        raise ConfigError(
            f"cannot save settings: {exc.strerror}",
            path=str(path),
            fix="check that the config folder is writable",
        ) from exc
    finally:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
