"""Changing settings: apply them to a Config, and save them to the user's YAML file.

Saving is a round trip through ruamel.yaml, so the user's comments, key order and every key the
dashboard did not touch survive. Settings are named by dotted key paths such as
`optimization.context_truncation`, the same paths `ConfigError` uses.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from nemo_tui.config import Config, decode_config_text, parse_config
from nemo_tui.errors import ConfigError

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

SettingValue = bool | int | float | str
"""The value types the dashboard saves (switches, numbers, names)."""

NEW_FILE_HEADER = (
    "nemo-tui configuration, written by the dashboard when a setting changed.\n"
    "Every key is optional; `nemo-tui check-config` validates this file."
)

SAVE_LOCK_WAIT_S = 5.0
"""How long a save waits for another nemo-tui's save of the same file before giving up.

A save holds the lock for milliseconds; the bound only keeps the dashboard from freezing behind
a process that hangs while holding it.
"""


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
    replacement is atomic and reaches the disk before it takes the old file's place, so a crash
    mid-write cannot truncate the user's file either. A symlinked config stays a link: its
    target gets the new text. The file keeps its permission bits (owner-only when it holds an
    API key). Two nemo-tui saving at once take turns, each applying its change on top of the
    other's.

    Args:
        path: The config file.
        updates: Dotted key path -> new value.

    Raises:
        ConfigError: the existing file is not UTF-8 or not valid YAML, the result would be
            invalid, another save held the file too long, or the file cannot be written.
    """
    # Imported here: ruamel.yaml costs start-up time and memory, and only a save needs it.
    from ruamel.yaml import YAML

    target = Path(os.path.realpath(path))
    yaml = YAML()
    yaml.preserve_quotes = True
    with _save_lock(target, shown_as=path):
        # Read under the lock: a save that waited for another applies its change to that one's.
        document = _load(yaml, target, shown_as=path)
        for key, value in updates.items():
            _set(document, key.split("."), value)
        buffer = io.StringIO()
        yaml.dump(document, buffer)
        text = buffer.getvalue()
        saved = parse_config(text, source=str(path))
        _write_atomically(
            target, text, private=saved.backends.gemini.api_key is not None, shown_as=path
        )


@contextmanager
def _save_lock(target: Path, *, shown_as: Path) -> Iterator[None]:
    """Hold the advisory lock that every nemo-tui save of `target` takes, beside the file.

    The config itself cannot carry the lock: each save replaces it with a new file.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _unwritable(exc, shown_as) from exc
    try:
        if sys.platform != "win32":
            _wait_for_lock(descriptor, shown_as)
        yield
    finally:
        os.close(descriptor)  # which releases the lock


def _wait_for_lock(descriptor: int, shown_as: Path) -> None:
    deadline = time.monotonic() + SAVE_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"cannot save settings: another nemo-tui has been saving this file for"
                    f" {SAVE_LOCK_WAIT_S:g} s",
                    path=str(shown_as),
                    fix="change the setting again once the other nemo-tui is done",
                ) from None
            time.sleep(0.01)


def _load(yaml: YAML, path: Path, *, shown_as: Path) -> CommentedMap:
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        document = CommentedMap()
        document.yaml_set_start_comment(NEW_FILE_HEADER)
        return document
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=str(shown_as)) from exc
    text = decode_config_text(raw, source=str(shown_as))
    try:
        loaded = yaml.load(text)
    except YAMLError as exc:
        # The parser's own message quotes the lines it read, which may hold an API key.
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(
            f"cannot save settings, the file is not valid YAML{where}",
            path=str(shown_as),
            fix="fix the YAML there (`nemo-tui check-config` shows the problem), then change"
            " the setting again",
        ) from exc
    if loaded is None:
        return CommentedMap()
    if not isinstance(loaded, CommentedMap):
        raise ConfigError("the top level must be a mapping of sections", path=str(shown_as))
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


def _write_atomically(path: Path, text: str, *, private: bool, shown_as: Path) -> None:
    """Replace `path` with `text`; `private` keeps it to its owner (the text holds a key)."""
    temp_name: str | None = None
    try:
        # mkstemp makes the file private; a saved config keeps the mode the user gave it.
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        if private:
            mode &= 0o700
        handle, temp_name = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            # On disk before the rename: after a crash the name holds the old text or the new,
            # never an empty file.
            os.fsync(stream.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
        temp_name = None
    except OSError as exc:
        raise _unwritable(exc, shown_as) from exc
    finally:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: the new file is already in place)."""
    if sys.platform == "win32":
        return  # a folder cannot be opened to be synced there
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the save itself succeeded
    finally:
        os.close(descriptor)


def _unwritable(exc: OSError, shown_as: Path) -> ConfigError:
    return ConfigError(
        f"cannot save settings: {exc.strerror}",
        path=str(shown_as),
        fix="check that the config folder is writable",
    )
