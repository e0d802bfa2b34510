"""What callers send to the engine (a Query) and the typed events it answers with.

The CLI and the dashboard are two subscribers to the same events: the CLI prints them, the
dashboard turns them into widgets. Every event carries the id of the query it belongs to (0 for
events about the cache or the machine rather than one query).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Annotations only: importing the events (the dashboard does on its first frame) then
    # costs nothing of the optimizer, recommender or backends.
    from pathlib import Path

    from nemo_tui.backends.base import BackendHealth
    from nemo_tui.core.analysis.prompt import ScriptRequest
    from nemo_tui.core.memory.profile import PressureChange
    from nemo_tui.core.models.complexity import Complexity, ComplexityAssessment
    from nemo_tui.core.models.recommender import Recommendation
    from nemo_tui.core.prompt.optimizer import OptimizedPrompt
    from nemo_tui.errors import NemoError
    from nemo_tui.hosts.status import HostStatus

_query_ids = itertools.count(1)


@dataclass(frozen=True)
class Query:
    """One question for the engine."""

    text: str
    model: str | None = None
    """A model chosen by hand; None lets the recommender pick."""
    data_file: Path | None = None
    """A CSV/TSV/JSON-lines file to summarize into the prompt."""
    complexity: Complexity | None = None
    """Skip complexity detection and use this level."""
    max_tokens: int | None = None
    """Largest answer length in tokens; None lets the engine decide."""
    analysis: ScriptRequest | None = None
    """Ask for a Python script that answers the question about `data_file` (or repairs one),
    rather than a prose answer; None for a question."""
    host: str | None = None
    """A host of the lab chosen by hand (`local` or another's name); None lets routing pick."""
    id: int = field(default_factory=lambda: next(_query_ids))


@dataclass(frozen=True)
class Queued:
    """The query waits behind `position` others."""

    query_id: int
    position: int


@dataclass(frozen=True)
class Recommended:
    """The model the query will use, and why."""

    query_id: int
    recommendation: Recommendation
    complexity: ComplexityAssessment
    override: bool = False
    """True when the user chose the model by hand."""
    warning: str = ""
    """Set when a hand-picked model may not fit."""
    host: str = ""
    """The host it runs on: this machine's name, another host's, or `cloud`."""


@dataclass(frozen=True)
class PromptOptimized:
    """The prompt as it will be sent, and what was cut to fit the model's context."""

    query_id: int
    model: str
    budget_tokens: int
    result: OptimizedPrompt


@dataclass(frozen=True)
class Loading:
    """A model is being loaded (a cold start); `cache_hit` False means this costs time."""

    query_id: int
    model: str
    backend: str


@dataclass(frozen=True)
class Evicting:
    """A model is unloaded to make room, or because caching is off or pressure is critical."""

    query_id: int
    model: str
    backend: str
    reason: str
    freed_mb: float | None = None


@dataclass(frozen=True)
class Token:
    """A piece of the answer."""

    query_id: int
    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the answer."""

    query_id: int
    message: str
    warning: bool = False
    """True for problems such as a prompt the server cut silently."""


@dataclass(frozen=True)
class Fallback:
    """The engine moves from one model to the next in the chain."""

    query_id: int
    from_model: str
    to_model: str
    why: str
    to_host: str = ""
    """The host the next model runs on: this machine's name, another host's, or `cloud`."""


@dataclass(frozen=True)
class Done:
    """The answer is complete."""

    query_id: int
    model: str
    backend: str
    text: str
    tokens_in: int
    tokens_out: int
    tokens_per_s: float | None
    load_s: float | None
    first_token_s: float | None
    total_s: float
    cache_hit: bool | None
    """Whether the model was already in memory, as its server reported for this query; None
    when the server does not say, and for cloud models, where no cache applies."""
    local: bool
    """Whether the model ran on this machine (False for the cloud)."""
    reduction_pct: float
    fallbacks: tuple[str, ...] = ()
    """Models tried and left before this one answered."""
    host: str = ""
    """The host that answered: this machine's name, another host's, or `cloud`."""


@dataclass(frozen=True)
class Failed:
    """The query could not be answered; the partial answer is kept."""

    query_id: int
    error: NemoError
    partial_text: str = ""
    model: str = ""


@dataclass(frozen=True)
class Cancelled:
    """The user stopped the query; the partial answer is kept."""

    query_id: int
    partial_text: str = ""
    model: str = ""


@dataclass(frozen=True)
class PressureChanged:
    """The memory pressure level changed ("automatic optimization triggers")."""

    change: PressureChange
    action: str = ""
    """What the engine did about it, e.g. evicted models."""
    query_id: int = 0


@dataclass(frozen=True)
class BackendsChanged:
    """A re-probe found backends going up or down."""

    healths: tuple[BackendHealth, ...]
    query_id: int = 0


@dataclass(frozen=True)
class HostsChanged:
    """The lab's hosts were asked again: their memory, models and whether they are up."""

    statuses: tuple[HostStatus, ...]
    query_id: int = 0


EngineEvent = (
    Queued
    | Recommended
    | PromptOptimized
    | Loading
    | Evicting
    | Token
    | Notice
    | Fallback
    | Done
    | Failed
    | Cancelled
    | PressureChanged
    | BackendsChanged
    | HostsChanged
)

FINAL_EVENTS = (Done, Failed, Cancelled)
"""The last event of every query is one of these."""
