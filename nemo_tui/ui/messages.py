"""The messages background workers post to the app.

Workers never touch widgets; they post one of these and the app's handlers update the screen on
the event loop. Widgets' own messages (a toggled setting, an accepted recommendation) live with
the widget that sends them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from nemo_tui.backends.base import BackendHealth
    from nemo_tui.core.analysis.run import AnalysisRun
    from nemo_tui.core.memory.profile import MemoryProfile
    from nemo_tui.core.text.text_file import SavedText
    from nemo_tui.engine import Engine
    from nemo_tui.errors import NemoError
    from nemo_tui.events import EngineEvent


class MemorySampled(Message):
    """A fresh memory profile from the sampler thread.

    Only the newest sample matters, so one still waiting in the queue is replaced by the next
    rather than both being drawn.
    """

    def __init__(self, profile: MemoryProfile) -> None:
        super().__init__()
        self.profile = profile

    def can_replace(self, message: Message) -> bool:
        """A newer sample supersedes an older one that has not been handled yet."""
        return isinstance(message, MemorySampled)


class EngineEventArrived(Message):
    """One event from the engine's subscription (query progress, cache actions, pressure)."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event


class EngineBuilt(Message):
    """The engine factory returned: the engine exists but has not probed its backends yet."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine


class EngineStarted(Message):
    """The engine probed its backends and is ready for queries."""

    def __init__(self, healths: list[BackendHealth]) -> None:
        super().__init__()
        self.healths = healths


class CachedModelsChanged(Message):
    """The backends were asked again which models are resident."""


class AnswerSaved(Message):
    """The save worker wrote the answer (or the script on screen) to a file."""

    def __init__(self, saved: SavedText, what: str = "answer") -> None:
        super().__init__()
        self.saved = saved
        self.what = what
        """What was saved: `answer` or `script`."""


class ScriptRunEnded(Message):
    """The run worker's analysis script ended.

    `outcome` is what the run did, the error that kept it from starting, or None when the
    worker broke (its failure is reported on its own).
    """

    def __init__(self, outcome: AnalysisRun | NemoError | None) -> None:
        super().__init__()
        self.outcome = outcome
