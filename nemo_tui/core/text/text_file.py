"""Saving text to a file the user names, such as the dashboard's answer.

What already sits at the path decides what happens. Nothing there, or a regular file the user
agreed to replace: the text is written. A FIFO, device, folder or socket: refused without being
opened, because opening a FIFO for writing waits for a reader forever and writing a device does
whatever that device does. Text that UTF-8 cannot hold (a lone surrogate, as a broken `\\ud800`
escape in a server's JSON produces) is saved with U+FFFD in its place, and the caller is told
how many characters that was, rather than the save failing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nemo_tui.errors import NemoError

_NOT_REGULAR = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
}
"""What a path can be other than a regular file, in words."""


class TextNotSaved(NemoError):
    """The text could not be written to the file the user named."""

    title = "Not saved"


@dataclass(frozen=True, slots=True)
class SavedText:
    """A finished save."""

    path: Path
    """Where the text went."""
    replaced_characters: int
    """Lone surrogates written as U+FFFD, since UTF-8 cannot encode them; usually 0."""


def would_replace(path: Path) -> bool:
    """Whether saving to `path` would replace an existing file (so the user should be asked).

    Looks at the path without opening it; a symlink counts as what it points to.

    Raises:
        TextNotSaved: something other than a regular file is there, or the path cannot be
            looked at (a parent that is a file, no permission to search a folder).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _not_saved(path, exc) from exc
    _refuse_unless_regular(path, mode)
    return True


def save_text(path: Path, text: str, *, replace: bool) -> SavedText:
    """Write `text` to `path` as UTF-8.

    Args:
        path: The file to write.
        text: What to write.
        replace: The user agreed to replace an existing regular file; without it, a file that
            exists by the time of writing is left alone.

    Returns:
        Where the text went and how many characters had to be replaced.

    Raises:
        TextNotSaved: the path is not a regular file, exists without `replace`, or cannot be
            written (no such folder, no permission, disk full); the message names the path.
    """
    data, replaced = _utf8(text)
    if would_replace(path) and not replace:
        raise _exists(path)
    # O_EXCL: a file that appears after that look is not replaced unasked either. O_NONBLOCK:
    # opening a FIFO that appears fails at once instead of waiting for a reader (it changes
    # nothing for a regular file).
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | (0 if replace else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o666)
    except FileExistsError as exc:
        raise _exists(path) from exc
    except OSError as exc:
        raise _not_saved(path, exc) from exc
    try:
        with open(descriptor, "wb") as stream:
            # Checked again on what was opened: the path may have changed since it was looked at.
            _refuse_unless_regular(path, os.fstat(descriptor).st_mode)
            stream.truncate(0)
            stream.write(data)
    except OSError as exc:
        raise _not_saved(path, exc) from exc
    return SavedText(path, replaced)


def _utf8(text: str) -> tuple[bytes, int]:
    """`text` as UTF-8, lone surrogates replaced by U+FFFD, and how many were replaced."""
    try:
        return text.encode("utf-8"), 0
    except UnicodeEncodeError:
        pass
    # Through UTF-16, a pair of surrogates stored as two characters becomes the one character
    # it stands for, and only the unpaired ones are lost.
    repaired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return repaired.encode("utf-8"), repaired.count("\ufffd") - text.count("\ufffd")


def _refuse_unless_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "a special file")
    raise TextNotSaved(
        f"{path} is {kind}, not a regular file", fix="type the name of a new or existing file"
    )


def _exists(path: Path) -> TextNotSaved:
    return TextNotSaved(
        f"{path} already exists", fix="save again and agree to replace it, or pick a new name"
    )


def _not_saved(path: Path, exc: OSError) -> TextNotSaved:
    return TextNotSaved(
        f"cannot write {path}: {exc.strerror or exc}",
        fix="check that the folder exists and is writable, and that the disk has room",
    )
