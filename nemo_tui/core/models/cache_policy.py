"""Which models stay loaded: the model cache's bookkeeping and its eviction decisions.

This module decides; the engine acts. It owns:

- `CachedModel`, one loaded model as any backend reports it (Ollama's `/api/ps`, the embedded
  LRU), with its size, last use and hit count, and `CacheTracker`, the engine's running record
  of every backend's residents;
- `plan_room`, which says whether a model can be loaded under `cache_limit` alongside the
  others and, when it cannot, which least recently used models to unload first (and why, in
  words a user can read);
- `plan_pressure_relief`, what to unload when memory pressure rises;
- `predictive_choice`, the model to preload while memory is idle.

Memory arithmetic is about system memory (RAM), because that is what `MemoryProfile` and
`cache_limit` describe: unloading a model frees `CachedModel.ram_mb`, its size minus the part
Ollama placed in GPU memory. A model whose backend reports no size (vLLM, say) is counted as
freeing nothing, and the plan's reason says so: no decision rests on memory nobody measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from nemo_tui.core.memory.profile import MemoryProfile, PressureLevel
from nemo_tui.core.models.catalog import model_key
from nemo_tui.units import format_mb, format_pct

MAX_RESIDENT = 3
"""Most models kept loaded together; `plan_room` unloads the least recently used beyond it."""
MAX_RESIDENT_UNDER_PRESSURE = 1
"""Under elevated pressure, how many models besides the one in use stay loaded."""


@dataclass(frozen=True)
class CachedModel:
    """One model loaded in a backend.

    Attributes:
        name: The model's name as its backend reports it.
        backend: Which backend holds it (`ollama`, `embedded`, ...).
        size_mb: Everything the model occupies, RAM and VRAM together; None when its backend
            does not say.
        vram_mb: The part of `size_mb` in GPU memory.
        context_length: The context it was loaded with, when known.
        expires_at: When the backend will unload it on its own (epoch seconds); None for never
            or unknown. Past it, the tracker no longer counts the model as loaded.
        last_used: When it last answered a query (epoch seconds); 0 for never, as far as
            nemo-tui knows.
        hits: Queries it answered while loaded.
        loaded_at: When it was loaded, or first seen loaded (epoch seconds).
    """

    name: str
    backend: str
    size_mb: float | None
    vram_mb: float = 0.0
    context_length: int | None = None
    expires_at: float | None = None
    last_used: float = 0.0
    hits: int = 0
    loaded_at: float = 0.0

    @property
    def vram_share(self) -> float | None:
        """Share of the model in GPU memory, 0..1; None when its size is unknown."""
        if self.size_mb is None or self.size_mb <= 0:
            return None
        return min(1.0, max(0.0, self.vram_mb / self.size_mb))

    @property
    def ram_mb(self) -> float:
        """System memory the model holds, which unloading it gives back.

        0 when its size is unknown: unloading it is not counted on to free anything.
        """
        if self.size_mb is None:
            return 0.0
        return max(0.0, self.size_mb - self.vram_mb)


@dataclass(frozen=True)
class EvictionPlan:
    """What `plan_room` decided for a model about to be loaded.

    Attributes:
        fits: Whether the model can be loaded once `evict` is unloaded.
        evict: The models to unload first, least recently used first; empty when it does not
            fit, since unloading would not help.
        freed_mb: System memory the evictions give back.
        reason: The decision in plain words, for the dashboard and logs.
    """

    fits: bool
    evict: tuple[CachedModel, ...]
    freed_mb: float
    reason: str


def _lru_order(models: Sequence[CachedModel]) -> list[CachedModel]:
    """Least recently used first; of two used at the same moment, the one with fewer hits."""
    return sorted(models, key=lambda model: (model.last_used, model.hits))


def plan_room(
    resident: Sequence[CachedModel],
    incoming: str,
    incoming_mb: float,
    profile: MemoryProfile,
    cache_limit: float,
    *,
    protect: Collection[str] = (),
) -> EvictionPlan:
    """Decide whether a model can be loaded now, and which loaded models must go first.

    The model fits when, after the evictions, used memory plus the model stays within
    `cache_limit` of total and the model is no larger than what is then available. Loaded
    models are already counted in `profile.used_mb`, so evicting one lowers usage by its
    `ram_mb`. Models are evicted least recently used first (fewer hits first on a tie), never a
    protected one, and only as many as needed, both for memory and to keep at most
    `MAX_RESIDENT` models loaded. When protected models alone exceed `MAX_RESIDENT`, memory
    decides. When the model cannot fit even with every unprotected model unloaded, nothing is
    evicted. A model of unknown size frees nothing in these sums, and the reason names it.

    Args:
        resident: The models loaded now, in any backend.
        incoming: The model to load.
        incoming_mb: The system memory it will need.
        profile: The memory snapshot to plan against.
        cache_limit: The share of total memory (0..1) that may be in use with models cached.
        protect: Names of models that must stay loaded, such as one answering a query.

    Returns:
        The plan, with a reason naming the sizes, the evicted models and the limit.
    """
    if any(model_key(model.name) == model_key(incoming) for model in resident):
        return EvictionPlan(True, (), 0.0, f"{incoming} is already loaded")
    protected = {model_key(name) for name in protect}
    candidates = _lru_order([m for m in resident if model_key(m.name) not in protected])
    limit_mb = cache_limit * profile.total_mb
    limit_text = f"the {format_pct(cache_limit)} cache limit"
    need_text = f"{incoming} needs {format_mb(incoming_mb)}"

    def fits(freed_mb: float) -> bool:
        return (
            profile.used_mb - freed_mb + incoming_mb <= limit_mb
            and incoming_mb <= profile.available_mb + freed_mb
        )

    freeable = sum(model.ram_mb for model in candidates)
    if not fits(freeable):
        room = max(0.0, min(limit_mb - profile.used_mb, profile.available_mb) + freeable)
        reason = f"{need_text} but only {format_mb(room)} can be freed under {limit_text}"
        kept = [model.name for model in resident if model_key(model.name) in protected]
        if kept:
            reason += f" while {_join(kept)} {'stays' if len(kept) == 1 else 'stay'} loaded"
        unsized = [model.name for model in candidates if model.size_mb is None]
        if unsized:
            reason += (
                f"; {_join(unsized)} {'reports' if len(unsized) == 1 else 'report'} no size,"
                " so unloading is not counted on to free any"
            )
        return EvictionPlan(False, (), 0.0, reason)

    over_count = min(len(candidates), max(0, len(resident) + 1 - MAX_RESIDENT))
    evict: list[CachedModel] = []
    freed = 0.0
    for model in candidates:
        if len(evict) >= over_count and fits(freed):
            break
        evict.append(model)
        freed += model.ram_mb
    if not evict:
        plural = "" if len(resident) == 1 else "s"
        loaded = f" alongside {len(resident)} loaded model{plural}" if resident else ""
        return EvictionPlan(True, (), 0.0, f"{need_text}; it fits{loaded} under {limit_text}")
    goals = []
    if not fits(0.0):
        goals.append(f"usage under {limit_text}")
    if over_count:
        goals.append(
            f"at most {MAX_RESIDENT} models loaded"
            if len(resident) + 1 - len(evict) <= MAX_RESIDENT
            else "fewer models loaded"
        )
    unloading = [f"{evict[0].name} (least recently used, {_freed_text(evict[0])})"]
    unloading += [f"{model.name} ({_freed_text(model)})" for model in evict[1:]]
    reason = f"{need_text}; unloading {_join(unloading)} keeps {' and '.join(goals)}"
    return EvictionPlan(True, tuple(evict), freed, reason)


def _freed_text(model: CachedModel) -> str:
    """What unloading a model frees, as the plan counts it: `1.2 GB`, or why it counts 0."""
    if model.size_mb is None:
        return "size unknown, counted as 0 MB"
    return format_mb(model.ram_mb)


def _join(items: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def plan_pressure_relief(
    resident: Sequence[CachedModel], level: PressureLevel, in_use: str | None
) -> tuple[CachedModel, ...]:
    """The models to unload because memory pressure rose.

    - normal: none.
    - elevated: keep the model in use and the `MAX_RESIDENT_UNDER_PRESSURE` most recently used
      others; unload the rest. With no model in use, that keeps the most recently used one.
    - critical: unload everything but the model in use (everything when none is in use).

    Args:
        resident: The models loaded now, in any backend.
        level: The current pressure level.
        in_use: The model answering or about to answer a query, if any.

    Returns:
        The models to unload, least recently used first.
    """
    if level is PressureLevel.NORMAL:
        return ()
    in_use_key = model_key(in_use) if in_use is not None else None
    others = _lru_order([m for m in resident if model_key(m.name) != in_use_key])
    if level is PressureLevel.CRITICAL:
        return tuple(others)
    return tuple(others[: max(0, len(others) - MAX_RESIDENT_UNDER_PRESSURE)])


class CacheTracker:
    """The engine's record of what every backend holds loaded, with sizes, last use and hits.

    Backends report what they hold (`sync`); the engine adds what only it knows: when a model
    answered a query and how often. Changed only from the engine's asyncio loop; another thread
    (the dashboard's memory sampling) may read `resident()`, and sees each change whole.

    Args:
        clock: The time source, epoch seconds; tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._models: dict[tuple[str, str], CachedModel] = {}

    def sync(self, backend: str, entries: Sequence[CachedModel]) -> None:
        """Replace a backend's residents with what it reports.

        Models still loaded keep their hits, last use and load time; the reported size, VRAM,
        context and expiry replace the old ones. A model seen for the first time without a
        load time counts as loaded now.

        Args:
            backend: The backend that reported.
            entries: Everything it holds loaded now.
        """
        now = self._clock()
        models = {key: model for key, model in self._models.items() if key[0] != backend}
        for entry in entries:
            key = (backend, model_key(entry.name))
            known = self._models.get(key)
            if known is not None:
                entry = replace(
                    entry, hits=known.hits, last_used=known.last_used, loaded_at=known.loaded_at
                )
            elif entry.loaded_at == 0.0:
                entry = replace(entry, loaded_at=now)
            models[key] = replace(entry, backend=backend)
        # Swapped in at once, so a reader on another thread never sees the backend half synced.
        self._models = models

    def record_load(
        self, backend: str, name: str, size_mb: float, context_length: int | None = None
    ) -> None:
        """Note that the engine loaded a model.

        A freshly loaded model counts as just used, so the next plan does not evict what was
        just loaded. A reload (say with a new context) keeps the model's hit count.

        Args:
            backend: The backend that loaded it.
            name: The model.
            size_mb: The memory it occupies.
            context_length: The context it was loaded with, when known.
        """
        now = self._clock()
        key = (backend, model_key(name))
        known = self._models.get(key)
        self._models[key] = CachedModel(
            name=name,
            backend=backend,
            size_mb=size_mb,
            context_length=context_length,
            last_used=now,
            hits=known.hits if known else 0,
            loaded_at=now,
        )

    def record_use(self, backend: str, name: str) -> None:
        """Note that a loaded model answered a query: one more hit, last used now.

        A model the tracker does not hold is ignored; the next `sync` or `record_load` adds it.

        Args:
            backend: The backend that answered.
            name: The model.
        """
        key = (backend, model_key(name))
        known = self._models.get(key)
        if known is not None:
            self._models[key] = replace(known, hits=known.hits + 1, last_used=self._clock())

    def record_unload(self, backend: str, name: str) -> None:
        """Note that a model was unloaded; an unknown one is ignored.

        Args:
            backend: The backend that held it.
            name: The model.
        """
        self._models.pop((backend, model_key(name)), None)

    def resident(self) -> list[CachedModel]:
        """Every loaded model in every backend, most recently used first.

        A model past the time its backend said it would unload it (Ollama's `expires_at`) is
        gone or going, and is left out at once, without asking the backend again.
        """
        now = self._clock()
        models = list(self._models.values())  # in one step: a thread may call this mid-change
        return sorted(
            (model for model in models if model.expires_at is None or model.expires_at > now),
            key=lambda model: (model.last_used, model.hits),
            reverse=True,
        )

    def get(self, name: str) -> CachedModel | None:
        """The loaded model called `name` in any backend (`x` matches `x:latest`), or None.

        When several backends hold it, the most recently used one is returned.
        """
        key = model_key(name)
        return next((m for m in self.resident() if model_key(m.name) == key), None)

    def total_mb(self) -> float | None:
        """Memory held by every loaded model, RAM and VRAM together; None when a backend
        reports no size for one of them."""
        sizes = [model.size_mb for model in self.resident()]
        if any(size is None for size in sizes):
            return None
        return sum(size for size in sizes if size is not None)

    def known_total_mb(self) -> float:
        """Memory held by the loaded models whose size is known: what unloading them all is
        counted on to free."""
        return sum(model.size_mb for model in self.resident() if model.size_mb is not None)


@dataclass(frozen=True)
class UsageRecord:
    """One query's model choice, the input to predictive preloading.

    Attributes:
        complexity: The query's complexity (`low`, `medium`, `high`).
        model: The model that answered.
        at: When (epoch seconds).
    """

    complexity: str
    model: str
    at: float


def predictive_choice(
    history: Sequence[UsageRecord], complexity: str, *, window: int = 20
) -> str | None:
    """The model to preload for a complexity: the one used most often for it recently.

    Only the last `window` records of that complexity count (by `at`; equal times keep their
    order in `history`), so an old habit fades once `window` newer queries of that kind were
    answered by other models. `x` and `x:latest` count as one model. A tie goes to the model
    used most recently.

    Args:
        history: Past choices, in any order.
        complexity: The complexity to preload for.
        window: How many of the latest records of that complexity to count.

    Returns:
        The model's name as it was last recorded, or None without history for that complexity.

    Raises:
        ValueError: `window` is below 1.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    matching = sorted((r for r in history if r.complexity == complexity), key=lambda r: r.at)
    counts: dict[str, int] = {}
    latest: dict[str, tuple[int, str]] = {}
    for position, record in enumerate(matching[-window:]):
        key = model_key(record.model)
        counts[key] = counts.get(key, 0) + 1
        latest[key] = (position, record.model)
    if not counts:
        return None
    best = max(counts, key=lambda key: (counts[key], latest[key][0]))
    return latest[best][1]
