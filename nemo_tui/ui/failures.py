"""How a failed background worker is put into words, so no failure is silent."""

from __future__ import annotations

from textual.worker import Worker

from nemo_tui.errors import NemoError


def failure_text(worker: Worker[object]) -> str:
    """What went wrong in a worker that ended in error: the error's own words and fix."""
    error = worker.error
    if isinstance(error, NemoError):
        return f"{error.title}: {error.one_line()}"
    return f"{type(error).__name__}: {error}"


def failure_title(worker: Worker[object]) -> str:
    """A short heading naming the work that failed."""
    return f"{worker.description or worker.group} failed"
