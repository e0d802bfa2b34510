"""When Python's cyclic garbage collector may run: not while the dashboard starts or streams.

Both times make many long-lived objects fast: start-up imports Textual and builds the widget
tree, and a streamed answer grows a Markdown document. A full collection walks all of them, and
while they are being made it runs again and again; at start-up that is a good part of the time
to the first frame, and during a fast stream it stalls the event loop for 100 ms and more
(`bench/bench_dashboard.py`). So each of these pauses collection and resumes it when done; it
runs again only when nothing holds it paused. Plain standard library, so `nemo-tui` can pause
it before importing Textual.
"""

from __future__ import annotations

import gc
from enum import Enum


class Pause(Enum):
    """Why collection is paused."""

    START_UP = "start-up"
    """From `nemo-tui` starting until the dashboard is up."""
    ANSWER = "answer"
    """While an answer streams in."""


_held: set[Pause] = set()


def pause_collection(reason: Pause) -> None:
    """Stop automatic garbage collection until `resume_collection(reason)`."""
    _held.add(reason)
    gc.disable()


def resume_collection(reason: Pause) -> None:
    """Release one pause; collection runs again once none is held.

    Ending the start-up pause also freezes what start-up made (the modules, the widget tree),
    so later collections skip objects that live as long as the app. Releasing a pause that is
    not held does nothing.
    """
    if reason not in _held:
        return
    _held.discard(reason)
    if reason is Pause.START_UP:
        gc.freeze()
    if not _held:
        gc.enable()
