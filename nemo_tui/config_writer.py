"""Changing settings: apply them to a Config, and save them to the user's YAML file.

Saving is a round trip through ruamel.yaml, so the user's comments, key order and every key the
dashboard did not touch survive. ruamel writes a document in a layout of its own, so the writer
reads the file's (indents, the spelling of booleans and nulls, a `---` line) and has ruamel write
that one: a save changes the lines of the changed settings and no other. Settings are named by
dotted key paths such as `optimization.context_truncation`, the same paths `ConfigError` uses.
"""

from __future__ import annotations

import functools
import io
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from nemo_tui.config import Config, decode_config_text, parse_config
from nemo_tui.errors import ConfigError

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.representer import RoundTripRepresenter

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

_NEVER_FOLD = 1 << 20
"""ruamel's line width: at its default of 80 it folds a long URL or name onto a second line."""

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_OR_BOOL = re.compile(r"(~|null|Null|NULL|true|True|TRUE|false|False|FALSE)(?=[\s,\]}]|$)")
"""A YAML 1.2 null or boolean, as the file spells it, at the start of a value."""
_DOCUMENT_START = re.compile(r"---[ \t]*")
_DOCUMENT_END = re.compile(r"\.\.\.[ \t]*")


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
    yaml.width = _NEVER_FOLD
    yaml.Representer = _source_spelling_representer()
    with _save_lock(target, shown_as=path):
        # Read under the lock: a save that waited for another applies its change to that one's.
        source = _read(target, shown_as=path)
        if source is None:
            document = _new_document()
            head = tail = ""
        else:
            head, body, tail = _split_off_document_markers(source)
            document = _load(yaml, body, first_line=head.count("\n"), shown_as=path)
            if not document and _is_blank_or_comments(body):
                head += body  # ruamel drops the comments of a file that has nothing else
            _write_as_the_file_does(yaml, document, body.splitlines())
        for key, value in updates.items():
            _set(document, key.split("."), value)
        buffer = io.StringIO()
        yaml.dump(document, buffer)
        text = head + buffer.getvalue() + tail
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


def _read(path: Path, *, shown_as: Path) -> str | None:
    """The file's text, or None when there is no file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=str(shown_as)) from exc
    # ruamel drops a byte-order mark; without it, first-line columns match the ones ruamel reports.
    return decode_config_text(raw, source=str(shown_as)).removeprefix("\ufeff")


def _new_document() -> CommentedMap:
    """The document for a file that does not exist yet: empty, under a header comment."""
    from ruamel.yaml.comments import CommentedMap

    document = CommentedMap()
    document.yaml_set_start_comment(NEW_FILE_HEADER)
    return document


def _split_off_document_markers(text: str) -> tuple[str, str, str]:
    """Split the text into what comes before the document, the document, and what follows it.

    ruamel drops a `---` line, every comment above it, a `...` line and every comment below
    that; the writer keeps those lines aside and puts them back around what ruamel writes.
    Only lines that hold nothing else are split off: comments, blank lines, `%` directives.
    """
    lines = text.splitlines(keepends=True)
    start = 0
    for index, line in enumerate(lines):
        if _DOCUMENT_START.fullmatch(line.rstrip("\n")):
            start = index + 1
            break
        if not _is_blank_or_comments(line) and not line.startswith("%"):
            break
    end = len(lines)
    for index in range(len(lines) - 1, start - 1, -1):
        if _DOCUMENT_END.fullmatch(lines[index].rstrip("\n")):
            end = index
            break
        if not _is_blank_or_comments(lines[index]):
            break
    return "".join(lines[:start]), "".join(lines[start:end]), "".join(lines[end:])


def _is_blank_or_comments(text: str) -> bool:
    """Whether every line of `text` is blank or a comment."""
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _load(yaml: YAML, text: str, *, first_line: int, shown_as: Path) -> CommentedMap:
    """Parse the document; `first_line` lines of the file come before `text`."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        loaded = yaml.load(text)
    except YAMLError as exc:
        # The parser's own message quotes the lines it read, which may hold an API key.
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {first_line + mark.line + 1})" if mark is not None else ""
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


@dataclass(frozen=True)
class _SourceScalar:
    """A null or boolean written back as the file spelled it (`~`, `True`, nothing at all).

    ruamel keeps the spelling of strings and numbers but writes every null as nothing and every
    boolean as `true`/`false`.
    """

    tag: str
    text: str


@functools.cache
def _source_spelling_representer() -> type[RoundTripRepresenter]:
    """ruamel's round-trip representer, taught to write a `_SourceScalar` as its text.

    A subclass, because registering on ruamel's own class would change it for every user of
    ruamel in the process.
    """
    from ruamel.yaml.representer import RoundTripRepresenter

    class SourceSpellingRepresenter(RoundTripRepresenter):
        def represent_source_scalar(self, data: _SourceScalar) -> Any:
            return self.represent_scalar(data.tag, data.text)

    SourceSpellingRepresenter.add_representer(
        _SourceScalar, SourceSpellingRepresenter.represent_source_scalar
    )
    return SourceSpellingRepresenter


@dataclass(frozen=True)
class _Entry:
    """One value of the document and where the file has it (0-based line, column)."""

    parent: CommentedMap | CommentedSeq
    key: Any
    """The mapping key, or the index in a list."""
    value: Any
    key_at: tuple[int, int] | None
    """Where the key is; None for a list item, or a position ruamel did not record."""
    value_at: tuple[int, int] | None


def _entries(node: Any, visited: set[int] | None = None) -> Iterator[_Entry]:
    """Every value under `node`, depth first, in file order; an aliased block is walked once."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    visited = set() if visited is None else visited
    if id(node) in visited:
        return  # YAML aliases can make a block contain itself
    visited.add(id(node))
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            where = node.lc.data.get(key)
            key_at = (where[0], where[1]) if where else None
            value_at = (where[2], where[3]) if where else None
            yield _Entry(node, key, value, key_at, value_at)
            yield from _entries(value, visited)
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            where = node.lc.data.get(index)
            yield _Entry(node, index, value, None, (where[0], where[1]) if where else None)
            yield from _entries(value, visited)


def _write_as_the_file_does(yaml: YAML, document: CommentedMap, lines: list[str]) -> None:
    """Set `yaml` to the file's indents and booleans; pin its nulls' and booleans' spellings.

    ruamel writes one layout for the whole document, so each measure is the one most of the
    file uses. `ruamel.yaml.util.load_yaml_guess_indent` is not used: it measures the first
    list item it meets in the raw text and reports one indent for maps and lists alike, so four-
    space maps with lists indented by two, or two-space maps with lists at four, come out wrong.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    map_indents: Counter[int] = Counter()
    list_indents: Counter[tuple[int, int]] = Counter()
    boolean_spellings: Counter[tuple[str, str]] = Counter()
    for entry in list(_entries(document)):  # a list: the loop replaces values as it goes
        value = entry.value
        if isinstance(value, bool) or value is None:
            spelling = _spelling_at(lines, entry.value_at)
            if isinstance(value, bool):
                if spelling is None:
                    continue
                boolean_spellings[_boolean_spelling(spelling)] += 1
            tag = _BOOL_TAG if isinstance(value, bool) else _NULL_TAG
            entry.parent[entry.key] = _SourceScalar(tag, spelling or "")
            continue
        if (
            not isinstance(value, CommentedMap | CommentedSeq)
            or not value
            or value.fa.flow_style()
            or entry.key_at is None
            or entry.value_at is None
            or entry.value_at[0] == entry.key_at[0]  # an anchor or tag ahead of the block
        ):
            continue
        key_column = entry.key_at[1]
        if isinstance(value, CommentedMap):
            map_indents[entry.value_at[1] - key_column] += 1
            continue
        # A block list is where its first dash is; its first item is where the text after it is.
        first_item = value.lc.data.get(0)
        if first_item and first_item[0] == entry.value_at[0]:
            list_indents[(first_item[1] - key_column, entry.value_at[1] - key_column)] += 1
    map_indent = map_indents.most_common(1)[0][0] if map_indents else 2
    item_indent, dash_offset = list_indents.most_common(1)[0][0] if list_indents else (2, 0)
    yaml.indent(mapping=map_indent, sequence=item_indent, offset=dash_offset)
    if boolean_spellings:
        # For the booleans the save writes; the file's own ones were pinned above. ruamel's
        # representer reads this attribute, which `YAML` does not declare.
        yaml.boolean_representation = list(  # type: ignore[attr-defined]
            boolean_spellings.most_common(1)[0][0]
        )


def _spelling_at(lines: list[str], where: tuple[int, int] | None) -> str | None:
    """The null or boolean word the file has at `where`; None when there is none (`key:`)."""
    if where is None or where[0] >= len(lines):
        return None
    found = _NULL_OR_BOOL.match(lines[where[0]], where[1])
    return found.group() if found else None


def _boolean_spelling(word: str) -> tuple[str, str]:
    """How a file that writes `word` writes false and true."""
    if word.islower():
        return ("false", "true")
    if word.isupper():
        return ("FALSE", "TRUE")
    return ("False", "True")


def _set(document: CommentedMap, parts: list[str], value: SettingValue) -> None:
    """Set a nested key, creating the sections on the way that the file does not have yet."""
    from ruamel.yaml.comments import CommentedMap

    node = document
    moved_comment: str | None = None
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, CommentedMap):
            if part not in node:
                moved_comment = _take_closing_comment(node)
            child = CommentedMap()
            node[part] = child
        node = child
    leaf = parts[-1]
    if leaf not in node and moved_comment is None:
        moved_comment = _take_closing_comment(node)
    node[leaf] = value
    if moved_comment:
        _give_closing_comment(node, leaf, moved_comment)


def _take_closing_comment(mapping: CommentedMap) -> str | None:
    """Detach the comment lines that follow `mapping`'s block, for a key about to be appended.

    ruamel keeps the blank lines and comments after a block with the block's last value, so an
    appended key would land below them: under the comment that introduces the next section.
    From the first blank line, or the first comment indented less than `mapping`'s keys, the
    lines introduce what follows the block; they are detached and returned, to go after the new
    key. Comments right under the last value and as deep as it (a commented-out entry) stay.
    """
    slot = _closing_comment_slot(mapping)
    if slot is None:
        return None
    entry, index = slot
    text: str = entry[index].value
    # The comment starts on the last value's own line: its end-of-line comment, or just `\n`.
    split = text.find("\n") + 1
    if split == 0:
        return None
    for line in text[split:].splitlines(keepends=True):
        if not line.strip() or len(line) - len(line.lstrip(" ")) < mapping.lc.col:
            break
        split += len(line)
    if split == len(text):
        return None
    entry[index].value = text[:split]
    return text[split:]


def _closing_comment_slot(node: Any) -> tuple[list[Any], int] | None:
    """Where ruamel keeps the comment after `node`'s block: its comment entry and the index."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    while True:
        key: Any
        if isinstance(node, CommentedMap) and node:
            key, index = next(reversed(node)), 2  # ruamel's slot after a mapping value
        elif isinstance(node, CommentedSeq) and node:
            key, index = len(node) - 1, 0  # and after a list item
        else:
            return None
        value = node[key]
        if isinstance(value, CommentedMap | CommentedSeq) and value and not value.fa.flow_style():
            node = value
            continue
        entry = node.ca.items.get(key)
        return (entry, index) if entry is not None and entry[index] is not None else None


def _give_closing_comment(mapping: CommentedMap, key: str, comment: str) -> None:
    """Put the lines `_take_closing_comment` detached after `mapping[key]`."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    # The leading `\n` ends the key's own line, as in the comments ruamel reads.
    mapping.ca.items[key] = [None, None, CommentToken("\n" + comment, CommentMark(0)), None]


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
