"""The errors a user can meet. Each says what went wrong and how to fix it."""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
"""Everything `str.splitlines` breaks a line at."""


class NemoError(Exception):
    """Base of every error shown to a user.

    Args:
        message: What went wrong, in plain words.
        fix: What the user can do about it; empty when there is nothing to do.
        title: A short heading; defaults to the class's `title`.
    """

    title = "Error"

    def __init__(self, message: str, *, fix: str = "", title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        if title is not None:
            self.title = title

    def one_line(self) -> str:
        """The error as one line for stderr: what is wrong, then how to fix it."""
        text = self.message
        if self.fix:
            text = f"{text} (fix: {self.fix})"
        # A value quoted into the message (a key, a model name) may hold a line break; it is
        # shown escaped, so the error stays one line a script can read.
        return _LINE_BREAK.sub(lambda match: repr(match.group())[1:-1], text)


class UsageError(NemoError):
    """A command-line argument the user gave cannot be used."""

    title = "Invalid argument"


class ConfigError(NemoError):
    """The configuration file cannot be used.

    Args:
        message: What is wrong with the value.
        path: The file the value came from, or None for built-in defaults.
        key: The dotted key path, such as `memory_thresholds.cache_limit`.
        line: The 1-based line in the file, when known.
        fix: How to correct it.
        env_var: The environment variable the value came from, instead of a file or a default.
    """

    title = "Invalid configuration"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str = "",
        line: int | None = None,
        fix: str = "",
        env_var: str | None = None,
    ) -> None:
        location = f"${env_var}" if env_var else path or "<built-in defaults>"
        if line is not None:
            location = f"{location}:{line}"
        prefix = f"{location}: {key}: " if key else f"{location}: "
        super().__init__(prefix + message, fix=fix)
        self.path = path
        self.key = key
        self.line = line
