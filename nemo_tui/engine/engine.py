"""The one shared engine: owns all model traffic, runs queries one at a time, manages the cache.

Callers submit a Query and read typed events; the CLI and the dashboard are both just
subscribers. Queries run in submission order on one worker task; cache actions (preload, unload,
clear) take the same lock, so no two operations ever talk to a model server at once (which
llama-cpp-python's server, for one, punishes by interrupting the running stream).

A monitor task samples memory every `gauge_interval_s`: a change of pressure level is announced,
and `critical` pressure evicts every model but the one in use. Every `refresh_interval_s` it
re-probes the backends (one that comes back is used again), re-reads what they hold, and, when
idle, preloads the model most used lately (`predictive_preloading`). On a simulated machine every
memory sample counts the models the engine knows to be loaded, so it fills up as a real one would.
What a backend holds is also re-read after every query it answers, and a model whose `expires_at`
has passed drops out of the record when it does, without asking the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from nemo_tui.backends.base import Backend, BackendError, BackendHealth
from nemo_tui.config import Config
from nemo_tui.core.analysis.run import AnalysisRun, RunLimits
from nemo_tui.core.memory.profile import (
    MemoryProfile,
    MemorySampler,
    PressureLevel,
    PressureWatcher,
    pressure_level,
    with_loaded_models,
)
from nemo_tui.core.models.backend_names import backend_host, backend_kind
from nemo_tui.core.models.cache_policy import (
    CachedModel,
    CacheTracker,
    UsageRecord,
    plan_pressure_relief,
    plan_room,
    predictive_choice,
)
from nemo_tui.core.models.catalog import Catalog, build_catalog, model_key
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import (
    Recommendation,
    RecommendationRequest,
    batch_for,
    memory_budget_mb,
    planned_context,
)
from nemo_tui.core.reports.memory_json import memory_json
from nemo_tui.core.reports.metrics import AnalysisRecord, Metrics
from nemo_tui.engine.history import append_history, load_history
from nemo_tui.engine.pipeline import (
    EVICTED_BY_HAND,
    EVICTED_FOR_ROOM,
    EVICTED_UNDER_PRESSURE,
    RunEnvironment,
    RunState,
    evict,
    run_query,
)
from nemo_tui.engine.planning import QueryPlan, plan_query, remote_hosts_from, route_query
from nemo_tui.engine.registry import BackendRegistry
from nemo_tui.errors import NemoError
from nemo_tui.events import (
    FINAL_EVENTS,
    BackendsChanged,
    Cancelled,
    Done,
    EngineEvent,
    Failed,
    HostsChanged,
    Loading,
    PressureChanged,
    Query,
    Queued,
    Token,
)
from nemo_tui.sandbox.libraries import detect_libraries
from nemo_tui.sandbox.runner import ScriptRun
from nemo_tui.units import format_mb, format_pct, format_seconds

if TYPE_CHECKING:
    from nemo_tui.hosts.monitor import HostMonitor
    from nemo_tui.hosts.status import HostStatus

PROBE_TIMEOUT_S = 2.0
MIN_SCRIPT_MEMORY_MB = 256.0
"""Below this cap a script cannot even import numpy; refusing says more than a MemoryError."""


@dataclass(frozen=True)
class CacheActionResult:
    """What a preload, unload or clear did, or why it was refused."""

    ok: bool
    message: str
    evicted: tuple[str, ...] = ()
    freed_mb: float | None = None


_END = object()


class _Text:
    """Answer text of one query that its reader has not reached yet; read as one Token."""

    __slots__ = ("parts", "query_id")

    def __init__(self, query_id: int, text: str) -> None:
        self.query_id = query_id
        self.parts = [text]


class _Channel:
    """An unbounded queue of events, read by one reader, that ends with a sentinel.

    A deque and at most one waiting future: with a single reader, `asyncio.Queue`'s general
    bookkeeping (getter and putter lists, task counting) is most of what a token costs here.

    Answer text that comes faster than the reader reads it is joined: the pieces that arrive
    before the reader gets to them become one Token. A burst of thousands of tokens then costs a
    list append each, not an event object, a hand-over and a reader step each. A reader that
    keeps up (any model streaming slower than the event loop turns) still gets one Token per
    piece, and text is never joined across another event.
    """

    __slots__ = ("_items", "_text", "_waiter")

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._text: _Text | None = None
        """Unread text at the end of the queue, which more text of the same query joins."""

    def put(self, item: object) -> None:
        self._text = None
        self._items.append(item)
        self._wake()

    def put_text(self, query_id: int, text: str) -> None:
        pending = self._text
        if pending is not None and pending.query_id == query_id:
            pending.parts.append(text)  # the reader was woken when this text began
            return
        self._text = pending = _Text(query_id, text)
        self._items.append(pending)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> AsyncIterator[EngineEvent]:
        items = self._items
        while True:
            while items:
                item = items.popleft()
                if item is _END:
                    return
                if type(item) is _Text:
                    if item is self._text:
                        self._text = None  # taken: later text starts a new Token
                    yield Token(item.query_id, "".join(item.parts))
                else:
                    yield item  # type: ignore[misc]
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            await waiter


class _LoadedModelsSampler:
    """The engine's memory samples: the sampler's, with loaded models in any simulated figures.

    A real machine's figures already include what its model servers hold; a simulated machine's
    do not, so without this it would never fill up, and eviction, fits and pressure would never
    act as they would on a machine of that size. Every reader of memory in the engine (monitor,
    recommender, pipeline, stats, the dashboard's gauges) samples through this one place.
    """

    def __init__(self, sampler: MemorySampler, registry: BackendRegistry) -> None:
        self._sampler = sampler
        self._registry = registry

    def sample(self) -> MemoryProfile:
        """One snapshot; on a simulated machine, with every loaded model counted in it."""
        profile = self._sampler.sample()
        if not profile.any_simulated:
            return profile
        # The dashboard samples from a thread: `resident()` copies the residents in one step.
        # Only this machine's: other hosts' models fill other hosts' memory.
        resident = self._registry.residents_on(None)
        return with_loaded_models(
            profile,
            sum(self._size_mb(model) for model in resident),
            sum(model.vram_mb for model in resident),
        )

    def _size_mb(self, model: CachedModel) -> float:
        """What the backend measured, or the catalog's estimate when it reports no size."""
        if model.size_mb is not None:
            return model.size_mb
        spec = self._registry.catalog.get(model.name)
        return spec.estimate(model.context_length).total_mb if spec is not None else 0.0


class QueryHandle:
    """A submitted query: its events, its result, and a way to stop it."""

    def __init__(self, query: Query, engine: Engine) -> None:
        self.query = query
        self._engine = engine
        self._channel = _Channel()
        self._final: asyncio.Future[EngineEvent] = asyncio.get_running_loop().create_future()
        self.cancel_requested = False

    def events(self) -> AsyncIterator[EngineEvent]:
        """This query's events; the iteration ends after Done, Failed or Cancelled.

        Answer text that arrives while the reader is busy comes as one Token, pieces joined.
        """
        return self._channel.drain()

    def cancel(self) -> None:
        """Stop the query: a queued one never starts, a running one stops streaming promptly."""
        self.cancel_requested = True
        self._engine._cancel(self)

    async def result(self) -> Done | Failed | Cancelled:
        """Wait for the final event."""
        final = await self._final
        assert isinstance(final, Done | Failed | Cancelled)
        return final

    def _deliver(self, event: EngineEvent) -> None:
        self._channel.put(event)

    def _finish(self, event: EngineEvent) -> None:
        self._channel.put(event)
        self._channel.put(_END)
        if not self._final.done():
            self._final.set_result(event)


class Engine:
    """The shared engine. Create it, `await start()`, submit queries, `await aclose()`.

    Args:
        config: The validated configuration; replace it later with `update_config`.
        sampler: Where memory profiles come from (real or simulated).
        backends: The backends in fallback order; None builds them from the config.
        catalog: The model catalog; None builds it from the config.
        monitor: Run the background monitor (pressure, health, predictive preloading).
        history_path: A file where per-query metrics are kept between runs.
        clock: The wall clock (epoch seconds) that models' expiry and last use are read
            against; tests pass a fake one.
    """

    def __init__(
        self,
        config: Config,
        *,
        sampler: MemorySampler,
        backends: Sequence[Backend] | None = None,
        catalog: Catalog | None = None,
        monitor: bool = True,
        history_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if backends is None:
            from nemo_tui.backends.discovery import build_backends

            backends = build_backends(config)
        self.metrics = Metrics()
        self._tracker = CacheTracker(clock)
        self._registry = BackendRegistry(backends, catalog or build_catalog(config), self._tracker)
        self._env = RunEnvironment(
            config=config,
            sampler=_LoadedModelsSampler(sampler, self._registry),
            registry=self._registry,
            tracker=self._tracker,
            metrics=self.metrics,
            num_thread=config.backends.embedded.n_threads,
            history=history_path,
        )
        if history_path is not None:
            load_history(history_path, self.metrics)
        self._watcher = PressureWatcher(config.memory_thresholds.pressure_threshold)
        self._monitor_enabled = monitor
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[QueryHandle] = asyncio.Queue()
        self._handles: dict[int, QueryHandle] = {}
        self._subscribers: list[_Channel] = []
        self._running: tuple[QueryHandle, asyncio.Task[EngineEvent], RunState] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_query_end = time.monotonic()
        self._started = False
        self._libraries: tuple[str | None, tuple[str, ...]] | None = None
        """The interpreter scripts run in, and what it can import besides the standard library."""
        self._script: ScriptRun | None = None
        self._hosts: HostMonitor | None = None
        """The lab's other hosts (config `hosts`): their memory and status; None without any."""

    @property
    def config(self) -> Config:
        """The settings the next query will use."""
        return self._env.config

    @property
    def catalog(self) -> Catalog:
        """The catalog, including models discovered on the backends."""
        return self._registry.catalog

    async def start(self) -> list[BackendHealth]:
        """Probe the backends, learn their models, and start the worker (and monitor)."""
        if self.config.hosts:
            # Imported only with hosts: it pulls in httpx, which the dashboard's first frame
            # does without.
            from nemo_tui.hosts.monitor import HostMonitor

            self._hosts = HostMonitor(self.config, self._env.sampler, timeout_s=PROBE_TIMEOUT_S)
        # At once: a host that hangs costs the start one timeout, not one per question asked.
        healths, _ = await asyncio.gather(
            self._registry.probe(PROBE_TIMEOUT_S), self.refresh_hosts()
        )
        self._tasks.append(asyncio.create_task(self._work(), name="nemo-engine-worker"))
        if self._monitor_enabled:
            self._tasks.append(asyncio.create_task(self._monitor(), name="nemo-engine-monitor"))
        self._started = True
        return healths

    async def aclose(self) -> None:
        """Stop the worker and monitor, cancel what runs, and close every backend.

        Every query not yet finished, running or queued, ends as Cancelled (the running one
        with its partial answer), so no `result()` waits forever, even when the worker had died.
        """
        running = self._running
        if running is not None:
            running[1].cancel()
        self.stop_analysis()
        for task in self._tasks:
            task.cancel()
        # A worker that died of a bug still lets the rest close.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for query_id, handle in list(self._handles.items()):
            state = running[2] if running is not None and running[0] is handle else RunState()
            self._emit(Cancelled(query_id, state.text, state.model))
        for backend in self._registry.backends:
            with contextlib.suppress(Exception):
                await backend.aclose()
        if self._hosts is not None:
            with contextlib.suppress(Exception):
                await self._hosts.aclose()
        for channel in self._subscribers:
            channel.put(_END)
        self._subscribers.clear()

    def submit(self, query: Query) -> QueryHandle:
        """Queue a query; it runs after those submitted before it."""
        if not self._started:
            raise RuntimeError("Engine.start() must be awaited before submitting queries")
        handle = QueryHandle(query, self)
        self._handles[query.id] = handle
        ahead = self._queue.qsize() + (1 if self._running is not None else 0)
        self._queue.put_nowait(handle)
        self._emit(Queued(query.id, ahead))
        return handle

    def subscribe(self) -> AsyncIterator[EngineEvent]:
        """Every event the engine emits, until it closes.

        Answer text that arrives while the reader is busy comes as one Token, pieces joined.
        """
        channel = _Channel()
        self._subscribers.append(channel)
        return channel.drain()

    def update_config(self, config: Config) -> None:
        """Use new settings from the next query on."""
        self._env.config = config
        self._env.num_thread = config.backends.embedded.n_threads
        self._watcher = PressureWatcher(config.memory_thresholds.pressure_threshold)

    def sample(self) -> MemoryProfile:
        """The current memory profile; on a simulated machine the loaded models count in it."""
        return self._env.sampler.sample()

    def pressure(self, profile: MemoryProfile) -> PressureLevel:
        """The pressure level of a profile under the current threshold."""
        return pressure_level(profile, self.config.memory_thresholds.pressure_threshold)

    def recommend_now(self, complexity: Complexity = Complexity.MEDIUM) -> Recommendation:
        """What would be picked for a query of this complexity right now, on whichever host of
        the lab routing would send it to (the reason names another host when it is one)."""
        inputs = self._env.planning_inputs()
        request = RecommendationRequest(
            complexity,
            inputs.catalog,
            installed=inputs.installed,
            loaded=inputs.loaded,
            avoid=inputs.avoid,
            backends_up=inputs.backends_up,
        )
        rec, _, _ = route_query(
            request, inputs.profile, self.config, inputs.remotes, local_host=inputs.local_host
        )
        return rec

    def plan_query(self, query: Query) -> QueryPlan:
        """How a query would run now, without running it (for a preview before sending).

        Raises:
            NemoError: the model is unknown or the data file cannot be read.
        """
        return plan_query(query, self._env.planning_inputs())

    def model_choices(self) -> list[str]:
        """Every installed or configured model: installed ones first, smallest tier first."""
        installed = self._registry.installed_names()
        specs = sorted(
            self._registry.catalog,
            key=lambda s: (s.name not in installed, s.tier.rank, s.name),
        )
        return [s.name for s in specs]

    def healths(self) -> list[BackendHealth]:
        """The last probe of every backend."""
        return self._registry.healths()

    def cached_models(self) -> list[CachedModel]:
        """Every model resident in a backend, most recently used first.

        As of the last time the backends were asked (after every query, on every refresh),
        less the models whose backend has let them go since (past their `expires_at`).
        """
        return self._tracker.resident()

    def installed_names(self) -> set[str]:
        """Every model an up backend can serve."""
        return self._registry.installed_names()

    async def refresh_hosts(self) -> list[HostStatus]:
        """Ask the lab's hosts for their memory and models again (a down one waits out its
        backoff); routing uses what they answer from the next query on.

        Returns:
            Every host, this machine first; empty when no other host is configured.
        """
        if self._hosts is None:
            return []
        statuses = await self._hosts.refresh()
        self._env.remote_hosts = remote_hosts_from(statuses)
        self._emit(HostsChanged(tuple(statuses)))
        return statuses

    @property
    def hosts(self) -> HostMonitor | None:
        """The lab's other hosts as last asked (refresh with `refresh_hosts`); None without
        any."""
        return self._hosts

    def host_statuses(self) -> list[HostStatus]:
        """The lab's hosts as last asked, this machine first; empty without other hosts."""
        return self._hosts.statuses() if self._hosts is not None else []

    async def refresh(self) -> None:
        """Re-read which models the backends hold."""
        async with self._lock:
            await self._registry.sync_loaded()

    async def probe(self) -> list[BackendHealth]:
        """Probe the backends again now."""
        async with self._lock:
            return await self._registry.probe(PROBE_TIMEOUT_S)

    async def preload(self, model: str, host: str | None = None) -> CacheActionResult:
        """Load a model so the next query using it starts fast, if memory allows.

        Args:
            model: The model.
            host: The host to load it on: another host's name; None or this machine's name for
                this machine.
        """
        async with self._lock:
            return await self._preload(model, query_id=0, host=self._remote(host))

    async def unload(self, model: str, host: str | None = None) -> CacheActionResult:
        """Unload one resident model from the host where it is loaded.

        Args:
            model: The model.
            host: The host to unload it from; None finds it: this machine first, else the one
                other host that holds it.
        """
        async with self._lock:
            resident = self._find_loaded(model, host)
            if isinstance(resident, str):
                return CacheActionResult(False, resident)
            freed = await self._evict(resident, "unloaded by hand", EVICTED_BY_HAND)
            return CacheActionResult(
                True, f"Unloaded {resident.name}{_freed(freed)}", (resident.name,), freed
            )

    async def clear_cache(
        self, host: str | None = None, *, all_hosts: bool = False
    ) -> CacheActionResult:
        """Unload every resident model of one host (None: this machine), or of every host.

        Another host's models are shared with that host's other users: they go only when asked.
        """
        async with self._lock:
            await self._registry.sync_loaded()
            resident = (
                self._tracker.resident()
                if all_hosts
                else self._registry.residents_on(self._remote(host))
            )
            if not resident:
                return CacheActionResult(True, "No models were loaded")
            freed_total = 0.0
            measured = False
            for model in resident:
                freed = await self._evict(model, "cache cleared", EVICTED_BY_HAND)
                if freed is not None:
                    freed_total += freed
                    measured = True
            names = tuple(m.name for m in resident)
            total = freed_total if measured else None
            return CacheActionResult(
                True, f"Unloaded {', '.join(names)}{_freed(total)}", names, total
            )

    async def script_libraries(self) -> tuple[str, ...]:
        """Libraries besides the standard library that an analysis script can import.

        Asked of the Python that runs scripts (`analysis.python`), once per interpreter.

        Raises:
            NemoError: that Python cannot be run.
        """
        python = self.config.analysis.python
        if self._libraries is None or self._libraries[0] != python:
            self._libraries = (python, await asyncio.to_thread(detect_libraries, python))
        return self._libraries[1]

    def analysis_limits(self) -> RunLimits:
        """The limits a script started now would run under.

        The memory cap is what the recommender sees as free under the cache limit, so a script
        cannot push the machine into swap while models are cached (and `analysis.max_memory_mb`
        when that is lower).

        Raises:
            NemoError: too little memory is free to run a script.
        """
        settings = self.config.analysis
        cache_limit = self.config.memory_thresholds.cache_limit
        free_mb = max(0.0, memory_budget_mb(self.sample(), cache_limit))
        cap_mb = free_mb if settings.max_memory_mb is None else min(free_mb, settings.max_memory_mb)
        if cap_mb < MIN_SCRIPT_MEMORY_MB:
            if free_mb < MIN_SCRIPT_MEMORY_MB:
                why = (
                    f"{format_mb(free_mb)} is free under the {format_pct(cache_limit)} cache limit"
                )
                fix = "unload a model, or raise memory_thresholds.cache_limit"
            else:
                why = f"analysis.max_memory_mb is {format_mb(cap_mb)}"
                fix = f"raise analysis.max_memory_mb to at least {MIN_SCRIPT_MEMORY_MB:.0f}"
            raise NemoError(
                f"not running the script: {why}, and a script needs at least"
                f" {format_mb(MIN_SCRIPT_MEMORY_MB)}",
                fix=fix,
            )
        return RunLimits(
            memory_mb=cap_mb,
            cpu_s=settings.cpu_time_s,
            wall_s=settings.wall_time_s,
            output_bytes=settings.output_limit_kb * 1024,
            file_mb=settings.file_limit_mb,
        )

    async def run_analysis(
        self, code: str, data_file: Path, *, repaired: bool = False
    ) -> AnalysisRun:
        """Run an analysis script on a data file, in a child process under `analysis_limits()`.

        Args:
            code: The script.
            data_file: The file it reads (passed as its first argument).
            repaired: Whether the script came from a repair round (for the stats).

        Raises:
            NemoError: a script is already running, too little memory is free, or the Python
                that runs scripts cannot be started.
        """
        if self._script is not None:
            raise NemoError("a script is already running", fix="wait for it, or stop it")
        limits = self.analysis_limits()
        run = ScriptRun.start(code, data_file, limits, python=self.config.analysis.python)
        self._script = run
        try:
            result = await run.wait()
        finally:
            self._script = None
        record = AnalysisRecord(result.ok, repaired, result.peak_rss_mb, time.time())
        self.metrics.analyses.record(record)
        if self._env.history is not None:
            append_history(self._env.history, record)
        return result

    def stop_analysis(self) -> bool:
        """Stop the running script, if any; its `run_analysis` returns it as cancelled."""
        script = self._script
        if script is None:
            return False
        script.kill()
        return True

    def analysis_rss_mb(self) -> float | None:
        """The running script's memory now; None when no script runs."""
        script = self._script
        return script.rss_mb() if script is not None else None

    def stats(self) -> dict[str, object]:
        """What `getMemoryStats` reported in the original: system, models, settings, metrics.

        A resident model's `size_mb` is None when its backend reports no size, and so is
        `resident_total_mb` then: a size nobody measured is not 0.
        """
        profile = self.sample()
        resident = self._tracker.resident()
        total = self._tracker.total_mb()
        return {
            "system": memory_json(profile, self.pressure(profile)),
            "models": {
                "resident": [
                    {
                        "name": m.name,
                        "backend": m.backend,
                        "host": backend_host(m.backend) or self.config.local_host.name,
                        "size_mb": round(m.size_mb, 1) if m.size_mb is not None else None,
                        "vram_mb": round(m.vram_mb, 1),
                        "context_length": m.context_length,
                        "expires_at": m.expires_at,
                        "hits": m.hits,
                        "last_used": m.last_used,
                    }
                    for m in resident
                ],
                "resident_total_mb": round(total, 1) if total is not None else None,
                "installed": sorted(self._registry.installed_names()),
            },
            "optimization": msgspec.to_builtins(self.config.optimization),
            "metrics": self.metrics.to_json(),
            "backends": [
                {
                    "name": h.backend,
                    "url": h.url,
                    "up": h.up,
                    "version": h.version,
                    "detail": h.detail,
                }
                for h in self._registry.healths()
            ],
        }

    def _emit(self, event: EngineEvent) -> None:
        query_id = event.query_id
        handle = self._handles.get(query_id) if query_id else None
        if handle is not None:
            if isinstance(event, FINAL_EVENTS):
                del self._handles[query_id]
                handle._finish(event)
            else:
                handle._deliver(event)
        for channel in self._subscribers:
            channel.put(event)

    def _emit_text(self, query_id: int, text: str) -> None:
        """A piece of a query's answer, for its handle and every subscriber, as a Token."""
        handle = self._handles.get(query_id)
        if handle is not None:
            handle._channel.put_text(query_id, text)
        for channel in self._subscribers:
            channel.put_text(query_id, text)

    def _cancel(self, handle: QueryHandle) -> None:
        if self._running is not None and self._running[0] is handle:
            self._running[1].cancel()

    async def _work(self) -> None:
        """Run queued queries one at a time, in order."""
        while True:
            handle = await self._queue.get()
            if handle.cancel_requested:
                self._emit(Cancelled(handle.query.id))
                continue
            state = RunState()
            async with self._lock:
                if handle.cancel_requested:
                    # Cancelled while a preload or a probe held the engine.
                    self._emit(Cancelled(handle.query.id))
                    continue
                task = asyncio.create_task(
                    run_query(self._env, handle.query, state, self._emit, self._emit_text),
                    name=f"nemo-query-{handle.query.id}",
                )
                self._running = (handle, task, state)
                try:
                    final = await task
                except asyncio.CancelledError:
                    if not handle.cancel_requested:
                        raise  # the worker itself is being stopped
                    final = Cancelled(handle.query.id, state.text, state.model)
                except Exception as exc:  # a bug must not kill the worker and every later query
                    final = Failed(handle.query.id, _internal_error(exc), state.text, state.model)
                finally:
                    self._running = None
                    self._last_query_end = time.monotonic()
            self._emit(final)

    async def _monitor(self) -> None:
        """Pressure every gauge interval; health, residents and predictions every refresh."""
        next_refresh = time.monotonic() + self.config.monitor.refresh_interval_s
        while True:
            await asyncio.sleep(self.config.monitor.gauge_interval_s)
            profile = self.sample()
            change = self._watcher.update(profile)
            if change is not None:
                action = await self._relieve_pressure(change.current)
                self._emit(PressureChanged(change, action))
            elif self._watcher.level is PressureLevel.CRITICAL:
                # Pressure that stays critical keeps relieving: a model loaded since the last
                # relief (by another client of the server, say) goes too, each with its Evicting.
                await self._relieve_pressure(PressureLevel.CRITICAL)
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + self.config.monitor.refresh_interval_s
                await self.refresh_hosts()
                await self._refresh_health()
                await self._predictive_preload()

    async def _relieve_pressure(self, level: PressureLevel) -> str:
        """Evict per the cache policy; under critical pressure this cannot wait for the query."""
        in_use = self._running[2].model or None if self._running else None
        # This machine's pressure: other hosts' models are theirs to keep.
        victims = plan_pressure_relief(self._registry.residents_on(None), level, in_use)
        if not victims:
            return ""
        for victim in victims:
            await self._evict(victim, f"memory pressure is {level.value}", EVICTED_UNDER_PRESSURE)
        return f"unloaded {', '.join(v.name for v in victims)} to relieve {level.value} pressure"

    async def _refresh_health(self) -> None:
        before = {h.backend: h.up for h in self._registry.healths()}
        if self._lock.locked():
            return  # a query is running; its own failures say enough
        async with self._lock:
            healths = await self._registry.probe(PROBE_TIMEOUT_S)
        if {h.backend: h.up for h in healths} != before:
            self._emit(BackendsChanged(tuple(healths)))

    async def _predictive_preload(self) -> None:
        config = self.config
        if (
            not config.optimization.predictive_preloading
            or not config.optimization.enable_model_caching
            or self._lock.locked()
            or self._script is not None  # a running script was promised the free memory
            or not self._env.usage
            # Idle means a whole refresh interval without a query.
            or time.monotonic() - self._last_query_end < config.monitor.refresh_interval_s
        ):
            return
        last: UsageRecord = self._env.usage[-1]
        choice = predictive_choice(self._env.usage, last.complexity)
        if choice is None or self._registry.loaded_on(choice, None) is not None:
            return
        profile = self.sample()
        if self.pressure(profile) is not PressureLevel.NORMAL:
            return
        async with self._lock:
            await self._preload(choice, query_id=0, evict_others=False)

    async def _preload(
        self, model: str, *, query_id: int, evict_others: bool = True, host: str | None = None
    ) -> CacheActionResult:
        spec = self._registry.catalog.get(model)
        if spec is None:
            return CacheActionResult(False, f"{model} is not a known model")
        if not spec.local:
            return CacheActionResult(False, f"{model} runs in the cloud; nothing to preload")
        where = f" on {host}" if host is not None else ""
        backend = self._registry.backend_for(spec, host)
        if backend is None:
            return CacheActionResult(
                False, f"{backend_kind(spec.backend)}{where} is not available for {model}"
            )
        if self._registry.loaded_on(model, host) is not None:
            return CacheActionResult(True, f"{model} is already loaded{where}")
        profile = self._env.profile_of(host)
        if profile is None:
            return CacheActionResult(
                False,
                f"Not loading {model}{where}: its memory cannot be read (give it a"
                " node_exporter_url), so nemo-tui cannot tell whether it fits",
            )
        # Room is made on the model's own host; another host's models are not this one's to evict.
        residents = self._registry.residents_on(host)
        evictable = (
            sum(m.size_mb for m in residents if m.size_mb is not None) if evict_others else 0.0
        )
        num_ctx = planned_context(spec, profile, self.config, evictable_mb=evictable)
        need_mb = spec.estimate(num_ctx).total_mb
        room = plan_room(residents, model, need_mb, profile, self._env.cache_limit_of(host))
        if not room.fits or (room.evict and not evict_others):
            return CacheActionResult(False, f"Not loading {model}: {room.reason}")
        evicted = []
        for victim in room.evict:
            await self._evict(victim, room.reason, EVICTED_FOR_ROOM)
            evicted.append(victim.name)
        self._emit(Loading(query_id, model, backend.name))
        started = time.perf_counter()
        options = self._env.options(
            Query(""), num_ctx, batch_for(spec, num_ctx, profile, self.config)
        )
        try:
            loaded = await backend.preload(model, options)
        except BackendError as exc:
            return CacheActionResult(
                False, f"Could not load {model}: {exc.one_line()}", tuple(evicted)
            )
        self._tracker.record_load(backend.name, model, need_mb, num_ctx)
        await self._registry.sync_loaded()
        took = format_seconds(time.perf_counter() - started)
        if loaded is False:
            # Another client of the server had loaded it: nothing was loaded, say so.
            message = f"{model} was already loaded on {host or backend.name}"
        else:
            message = f"Loaded {model}{where} ({format_mb(need_mb)} estimated) in {took}"
        if evicted:
            message += f"; unloaded {', '.join(evicted)} to make room"
        return CacheActionResult(True, message, tuple(evicted))

    def _remote(self, host: str | None) -> str | None:
        """A host name as the registry keys hosts: None for this machine."""
        return None if host is None or host == self.config.local_host.name else host

    def _find_loaded(self, model: str, host: str | None) -> CachedModel | str:
        """The loaded model to act on, or why there is none (not loaded, or on several hosts)."""
        if host is not None:
            remote = self._remote(host)
            found = self._registry.loaded_on(model, remote)
            return found if found is not None else f"{model} is not loaded on {host}"
        local = self._registry.loaded_on(model, None)
        if local is not None:
            return local
        key = model_key(model)
        elsewhere = [m for m in self._tracker.resident() if model_key(m.name) == key]
        if not elsewhere:
            return f"{model} is not loaded"
        if len(elsewhere) > 1:
            hosts = ", ".join(sorted(backend_host(m.backend) or "" for m in elsewhere))
            return f"{model} is loaded on {hosts}: say which host"
        return elsewhere[0]

    async def _evict(self, model: CachedModel, reason: str, kind: str) -> float | None:
        try:
            return await evict(
                self._env, 0, model.name, model.backend, reason, self._emit, kind=kind
            )
        except BackendError:
            return None


def _freed(freed_mb: float | None) -> str:
    return f", {format_mb(freed_mb)} freed" if freed_mb is not None else ""


def _internal_error(exc: Exception) -> BackendError:
    return BackendError(
        f"internal error: {type(exc).__name__}: {exc}",
        backend="engine",
        fix="please report this; the engine keeps serving other queries",
    )
