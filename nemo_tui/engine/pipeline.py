"""Run one query end to end: plan, make room, load, stream, record; fall back on failure.

Per query: complexity -> recommendation (or the override) -> prompt fitted to the model's
context -> room made under the cache limit and the model loaded -> answer streamed -> metrics.
A model that fails before its first token hands over to the next one in the chain (out of memory
-> next smaller local model -> cloud; unreachable -> next backend; no first token within
`max_wait_time_ms` -> next). Once tokens have been shown, a failure ends the query and the partial
answer is kept: restarting on another model would silently replace what the user already read.
An answer whose text stops coming for `max_stall_time_ms` is such a failure, so a server that
hangs mid-answer cannot hold the engine forever.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from nemo_tui.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    ModelNotFound,
    OutOfMemory,
    ServerBusy,
    StreamBroken,
    StreamEnd,
    TokenChunk,
)
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import MemoryProfile, MemorySampler
from nemo_tui.core.models.backend_names import backend_kind
from nemo_tui.core.models.cache_policy import CacheTracker, UsageRecord, plan_room
from nemo_tui.core.models.catalog import ModelSpec
from nemo_tui.core.models.recommender import (
    DEFAULT_BATCH,
    batch_for,
    context_for_prompt,
    planned_context,
)
from nemo_tui.core.models.routing import CLOUD_HOST
from nemo_tui.core.prompt.data_summary import DataSummaries
from nemo_tui.core.prompt.optimizer import OptimizedPrompt
from nemo_tui.core.reports.metrics import EvictionRecord, Metrics, QueryRecord
from nemo_tui.engine.history import append_history
from nemo_tui.engine.planning import (
    PlanningInputs,
    QueryPlan,
    RemoteHost,
    answer_tokens,
    fit_prompt,
    plan_query,
)
from nemo_tui.engine.registry import BackendRegistry
from nemo_tui.errors import NemoError
from nemo_tui.events import (
    Done,
    EngineEvent,
    Evicting,
    Failed,
    Fallback,
    Loading,
    Notice,
    PromptOptimized,
    Query,
    Recommended,
)
from nemo_tui.units import format_count, format_seconds

Emit = Callable[[EngineEvent], None]
EmitText = Callable[[int, str], None]
"""Hands on a piece of a query's answer (its id, the text); readers get it as a Token."""

OUT_OF_MEMORY_BACKOFF_S = 300.0
"""How long a model that failed to load for lack of memory is passed over by the recommender."""
EXACT_TRUNCATION_RATIO = 0.95
"""With exact token counts, a server that evaluated less than this share of the prompt cut it."""
ESTIMATED_TRUNCATION_RATIO = 0.75
"""With estimated counts the heuristic's error needs a wider margin before crying truncation."""
# How early a stall may be caught: a tenth of `max_stall_time_ms`, at most a second.
_STALL_SLACK_SHARE = 0.1
_STALL_SLACK_MAX_S = 1.0


class FirstTokenTimeout(BackendError):
    """The model produced no token within `max_wait_time_ms`."""

    title = "No answer in time"


class StreamStalled(StreamBroken):
    """The answer had started, then no more text came within `max_stall_time_ms`."""

    title = "Answer stalled"


_FALLBACK_REASONS: tuple[tuple[type[NemoError], str], ...] = (
    (OutOfMemory, "out_of_memory"),
    (BackendUnavailable, "unreachable"),
    (FirstTokenTimeout, "no_first_token"),
    (ModelNotFound, "model_not_found"),
    (ServerBusy, "busy"),
)

_OTHER_FAILURE = "error"
FALLBACK_REASONS = (*(reason for _, reason in _FALLBACK_REASONS), _OTHER_FAILURE)
"""Every category `fallback_reason` gives."""

# Why nemo-tui unloaded a model, as the history and the metrics count it.
EVICTED_FOR_ROOM = "make_room"
EVICTED_UNDER_PRESSURE = "pressure"
EVICTED_CACHING_OFF = "caching_off"
EVICTED_BY_HAND = "manual"
EVICTION_REASONS = (EVICTED_FOR_ROOM, EVICTED_UNDER_PRESSURE, EVICTED_CACHING_OFF, EVICTED_BY_HAND)


def fallback_reason(error: NemoError) -> str:
    """The category a model's failure is counted under when its query moves on to the next.

    A few categories, not the message: they label metrics, so there must be few of them.
    """
    return next(
        (reason for kind, reason in _FALLBACK_REASONS if isinstance(error, kind)), _OTHER_FAILURE
    )


@dataclass
class RunState:
    """What a running query has produced so far; read when it is cancelled."""

    model: str = ""
    parts: list[str] = field(default_factory=list)
    server_truncated: bool = False

    @property
    def text(self) -> str:
        """The answer so far."""
        return "".join(self.parts)


USAGE_RECORDS_KEPT = 1000
"""Predictive preloading counts the latest 20 answers of a complexity; a thousand of all kinds
is plenty, and a dashboard left open for weeks does not grow with every query."""


@dataclass
class RunEnvironment:
    """The engine's shared state a query run reads and updates."""

    config: Config
    sampler: MemorySampler
    registry: BackendRegistry
    tracker: CacheTracker
    metrics: Metrics
    usage: deque[UsageRecord] = field(default_factory=lambda: deque(maxlen=USAGE_RECORDS_KEPT))
    """Which model answered which complexity lately, for predictive preloading."""
    num_thread: int | None = None
    history: Path | None = None
    """Where per-query metrics are appended, when they are kept between runs."""
    out_of_memory: dict[str, float] = field(default_factory=dict)
    """Models that last failed for lack of memory, and when (so the next query skips them)."""
    data_summaries: DataSummaries = field(default_factory=DataSummaries)
    """Attached files' summaries, shared by previews, runs and fallbacks."""
    remote_hosts: dict[str, RemoteHost] = field(default_factory=dict)
    """The lab's other hosts that answered when last asked, by name, with their memory when it
    can be read."""

    def recently_out_of_memory(self) -> set[str]:
        """Models that failed to load for lack of memory within the back-off period."""
        now = time.time()
        return {m for m, at in self.out_of_memory.items() if now - at < OUT_OF_MEMORY_BACKOFF_S}

    def planning_inputs(self) -> PlanningInputs:
        """A fresh snapshot of everything the planner looks at."""
        return PlanningInputs(
            profile=self.sampler.sample(),
            config=self.config,
            catalog=self.registry.catalog,
            installed=self.registry.installed_names(),
            loaded=self.registry.resident(),
            data_summaries=self.data_summaries,
            avoid=self.recently_out_of_memory(),
            backends_up=self.registry.up_names(),
            remotes=tuple(
                replace(
                    host,
                    installed=self.registry.installed_names(host.name),
                    loaded=self.registry.resident(host.name),
                    backends_up=up,
                )
                for host in self.remote_hosts.values()
                if (up := self.registry.up_names(host.name))
            ),
            local_host=self.config.local_host.name,
        )

    def profile_of(self, host: str | None) -> MemoryProfile | None:
        """A host's memory now (None: this machine); another host's as last read, None when it
        cannot be read."""
        if host is None:
            return self.sampler.sample()
        remote = self.remote_hosts.get(host)
        return remote.profile if remote is not None else None

    def cache_limit_of(self, host: str | None) -> float:
        """The share of a host's memory models may use (None: this machine)."""
        remote = self.remote_hosts.get(host) if host is not None else None
        if remote is not None:
            return remote.cache_limit
        return self.config.memory_thresholds.cache_limit

    def host_label(self, host: str | None, spec: ModelSpec) -> str:
        """The host a model runs on, as events name it: this machine's name, another host's, or
        `cloud`."""
        if not spec.local:
            return CLOUD_HOST
        return host if host is not None else self.config.local_host.name

    def options(self, query: Query, num_ctx: int, num_batch: int) -> GenerationOptions:
        """Request options; load-time ones depend only on settings and the planned context."""
        return GenerationOptions(
            num_ctx=num_ctx,
            num_batch=num_batch,
            use_mmap=self.config.optimization.use_memory_mapping,
            num_thread=self.num_thread,
            max_tokens=answer_tokens(query),
            keep_alive=None if self.config.optimization.enable_model_caching else 0,
        )


@dataclass
class _Attempt:
    """One model's try at the query."""

    spec: ModelSpec
    backend: Backend
    prompt: OptimizedPrompt
    num_ctx: int
    num_batch: int
    host: str | None = None
    """The other host it runs on; None for this machine (and the cloud)."""


async def run_query(
    env: RunEnvironment, query: Query, state: RunState, emit: Emit, emit_text: EmitText
) -> EngineEvent:
    """Run a query to its final event (Done or Failed), emitting progress on the way.

    Cancellation propagates as `asyncio.CancelledError`; the caller reports `state.text`.
    """
    try:
        plan = plan_query(query, env.planning_inputs())
    except NemoError as exc:
        return Failed(query.id, exc)
    rec = plan.recommendation
    first_spec = env.registry.catalog.get(rec.model)
    host_label = env.host_label(plan.host, first_spec) if first_spec is not None else ""
    emit(Recommended(query.id, rec, plan.complexity, plan.override, plan.warning, host_label))
    chain: list[tuple[str | None, str]] = [(plan.host, rec.model), *plan.chain]
    tried: list[str] = []
    errors: list[NemoError] = []
    started = time.perf_counter()
    attempt: _Attempt | None = None
    unreachable: set[str] = set()
    used_local: dict[str, Backend] = {}
    fallback_reasons: list[str] = []
    for index, (host, name) in enumerate(chain):
        following = chain[index + 1] if index + 1 < len(chain) else None
        prepared = _prepare(
            env, query, plan, name, host, first=index == 0, emit=emit, unreachable=unreachable
        )
        if isinstance(prepared, NemoError):
            errors.append(prepared)
        else:
            attempt = prepared
            state.model = name
            if attempt.spec.local:
                used_local[attempt.backend.name] = attempt.backend
            try:
                done = await _run_attempt(
                    env, query, attempt, tried, state, emit, emit_text, started
                )
            except BackendError as exc:
                errors.append(exc)
                if isinstance(exc, OutOfMemory):
                    env.out_of_memory[name] = time.time()
                elif isinstance(exc, BackendUnavailable):
                    # The rest of this chain skips that server; the next query tries it again,
                    # so a restarted server is used at once.
                    unreachable.add(attempt.backend.name)
                if state.parts:
                    break
            else:
                env.out_of_memory.pop(name, None)
                _record(env, attempt, started, errors, done, state, fallback_reasons)
                env.usage.append(UsageRecord(plan.complexity.level.value, name, time.time()))
                await _resync(env, used_local, unreachable)
                return done
        tried.append(name if host is None else f"{name} on {host}")
        if following is not None:
            fallback_reasons.append(fallback_reason(errors[-1]))
            to_host, to_model = following
            to_spec = env.registry.catalog.get(to_model)
            to_label = env.host_label(to_host, to_spec) if to_spec is not None else ""
            emit(Fallback(query.id, name, to_model, errors[-1].one_line(), to_label))
    error = errors[-1] if errors else NemoError("no model could answer")
    if attempt is not None:
        _record(env, attempt, started, errors, None, state, fallback_reasons)
    await _resync(env, used_local, unreachable)
    return Failed(query.id, error, state.text, state.model or chain[-1][1])


def _prepare(
    env: RunEnvironment,
    query: Query,
    plan: QueryPlan,
    name: str,
    host: str | None,
    *,
    first: bool,
    emit: Emit,
    unreachable: set[str],
) -> _Attempt | NemoError:
    """Find the model's backend on its host and fit the prompt to its context; an error when it
    can't run."""
    spec = env.registry.catalog.get(name)
    if spec is None:
        return NemoError(f"{name} is not in the catalog")
    backend = env.registry.backend_for(spec, host)
    if backend is None or backend.name in unreachable:
        where = f" on {host}" if host is not None and spec.local else ""
        return BackendUnavailable(
            f"{backend_kind(spec.backend)}{where} is not available for {name}",
            backend=spec.backend,
            fix="start it, or check `nemo-tui models` and `nemo-tui hosts` for what is up",
        )
    if first:
        rec = plan.recommendation
        emit(PromptOptimized(query.id, name, plan.budget_tokens, plan.optimized))
        return _Attempt(spec, backend, plan.optimized, rec.num_ctx, rec.num_batch, host)
    profile = env.profile_of(host)
    prompt_tokens = plan.optimized.original_tokens
    if profile is None:
        # The host's own server manages its memory: plan for the prompt, not for free memory.
        num_ctx = context_for_prompt(prompt_tokens, spec)
        num_batch = min(num_ctx, DEFAULT_BATCH)
    else:
        num_ctx = planned_context(spec, profile, env.config, prompt_tokens)
        num_batch = batch_for(spec, num_ctx, profile, env.config)
    _, optimized, budget = fit_prompt(query, num_ctx, env.config, env.data_summaries)
    emit(PromptOptimized(query.id, name, budget, optimized))
    return _Attempt(spec, backend, optimized, num_ctx, num_batch, host)


async def _run_attempt(
    env: RunEnvironment,
    query: Query,
    attempt: _Attempt,
    tried: list[str],
    state: RunState,
    emit: Emit,
    emit_text: EmitText,
    started: float,
) -> Done:
    spec, backend = attempt.spec, attempt.backend
    options = env.options(query, attempt.num_ctx, attempt.num_batch)
    loaded_before: bool | None = False
    load_s: float | None = None
    if spec.local:
        loaded_before, load_s = await _make_room_and_load(env, query.id, attempt, options, emit)
    sent_tokens, exact = await _count_prompt(backend, spec.name, attempt.prompt)
    request_started = time.perf_counter()
    first_token_s: float | None = None
    end: StreamEnd | None = None
    wait_s = env.config.preferences.max_wait_time_ms / 1000
    stall_s = env.config.preferences.max_stall_time_ms / 1000
    stall_slack_s = min(stall_s * _STALL_SLACK_SHARE, _STALL_SLACK_MAX_S)
    clock = asyncio.get_running_loop().time
    deadline_moved_at = -math.inf
    query_id, parts = query.id, state.parts
    stream = backend.stream_chat(spec.name, [ChatMessage("user", attempt.prompt.text)], options)
    try:
        # One deadline: for the first token, then for the next text after the latest. It moves
        # only once a token comes `stall_slack_s` after its last move, not on every token, which
        # would cost a timer per token at thousands of tokens per second; so a stall is caught
        # between `stall_s - stall_slack_s` and `stall_s` after the last token.
        async with asyncio.timeout(wait_s) as deadline:
            async for event in stream:
                if isinstance(event, TokenChunk):
                    if first_token_s is None:
                        first_token_s = time.perf_counter() - request_started
                    now = clock()
                    if now - deadline_moved_at >= stall_slack_s:
                        deadline.reschedule(now + stall_s)
                        deadline_moved_at = now
                    parts.append(event.text)
                    emit_text(query_id, event.text)
                elif isinstance(event, StreamEnd):
                    end = event
                else:
                    emit(Notice(query_id, event.message))
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        if first_token_s is not None:
            raise StreamStalled(
                f"{_server_of(env, backend)} stopped sending the answer: no text for"
                f" {format_seconds(stall_s)}; the answer so far is kept",
                backend=backend.name,
                fix="check the server (its log, its load); raise preferences.max_stall_time_ms"
                " for a model that pauses that long",
            ) from exc
        raise FirstTokenTimeout(
            f"{spec.name} gave no answer within {format_seconds(wait_s)}",
            backend=backend.name,
            fix="raise preferences.max_wait_time_ms, or use a smaller model",
        ) from exc
    finally:
        # Closing the generator closes the HTTP response or stops the in-process generation,
        # so a cancelled or failed stream leaves the backend ready for the next request.
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    if first_token_s is None and end is not None:
        first_token_s = time.perf_counter() - request_started
    if end is None:
        raise StreamBroken(
            "the answer stream ended without its final message", backend=backend.name
        )
    state.server_truncated = _warn_if_server_truncated(
        query.id, end, sent_tokens, exact, attempt.num_ctx, emit
    )
    total_s = time.perf_counter() - started
    tokens_out = end.completion_tokens if end.completion_tokens is not None else len(state.parts)
    rate = _tokens_per_second(end, tokens_out, first_token_s, time.perf_counter() - request_started)
    if end.load_s is not None and (load_s is None or end.load_s > load_s):
        load_s = end.load_s
    if spec.local:
        env.tracker.record_use(backend.name, spec.name)
        if not env.config.optimization.enable_model_caching:
            await _unload_after_use(env, query.id, attempt, emit)
    return Done(
        query_id=query.id,
        model=spec.name,
        backend=backend.name,
        text=state.text,
        tokens_in=end.prompt_tokens if end.prompt_tokens is not None else sent_tokens,
        tokens_out=tokens_out,
        tokens_per_s=rate,
        load_s=load_s,
        first_token_s=first_token_s,
        total_s=total_s,
        cache_hit=_cache_hit(loaded_before, end.cold_start) if spec.local else None,
        local=spec.local,
        reduction_pct=attempt.prompt.reduction_pct,
        fallbacks=tuple(tried),
        host=env.host_label(attempt.host, spec),
    )


def _server_of(env: RunEnvironment, backend: Backend) -> str:
    """The backend's name and, when its last probe says, where it is: `ollama at http://...`."""
    url = next((h.url for h in env.registry.healths() if h.backend == backend.name), "")
    return f"{backend.name} at {url}" if url else backend.name


async def _make_room_and_load(
    env: RunEnvironment, query_id: int, attempt: _Attempt, options: GenerationOptions, emit: Emit
) -> tuple[bool | None, float | None]:
    """Evict what must go, then load the model unless it is resident with the same context.

    Whether it is resident is the engine's belief, good for planning only: the server's own
    word on whether it had to load the model decides the cache hit (see `_cache_hit`).

    Returns:
        Whether the server says the load it was asked for loaded the model (False when none
        was asked for), and the measured time of that load.
    """
    spec, backend, host = attempt.spec, attempt.backend, attempt.host
    resident = env.registry.loaded_on(spec.name, host)
    if resident is not None and resident.context_length in (None, attempt.num_ctx):
        return False, None
    profile = env.profile_of(host)
    need_mb = spec.estimate(attempt.num_ctx).total_mb
    if profile is not None:
        # Room is made on the model's own host: another host's models are never evicted for it.
        others = [m for m in env.registry.residents_on(host) if m.name != spec.name]
        room = plan_room(others, spec.name, need_mb, profile, env.cache_limit_of(host))
        for victim in room.evict:
            await evict(
                env, query_id, victim.name, victim.backend, room.reason, emit, kind=EVICTED_FOR_ROOM
            )
        if not room.fits:
            emit(Notice(query_id, room.reason, warning=True))
    emit(Loading(query_id, spec.name, backend.name))
    load_started = time.perf_counter()
    loaded = await backend.preload(spec.name, options)
    load_s = time.perf_counter() - load_started
    env.tracker.record_load(backend.name, spec.name, need_mb, attempt.num_ctx)
    await env.registry.sync_backend(backend)
    return loaded, load_s


def _cache_hit(loaded_before: bool | None, loaded_for_answer: bool | None) -> bool | None:
    """Whether a query found its model in memory, by what the server reported.

    A miss when the preload or the answer itself loaded the model (an expired or evicted model
    is reloaded by the answer, whatever the engine believed); a hit when the server says
    neither did; None when it does not say, rather than a guess.
    """
    if loaded_before or loaded_for_answer:
        return False
    if loaded_before is None or loaded_for_answer is None:
        return None
    return True


async def _resync(env: RunEnvironment, used: dict[str, Backend], unreachable: set[str]) -> None:
    """Re-read what the local backends a query used hold now.

    A load may have made the server evict other models, or the model may have expired and been
    reloaded, so the record of loaded models is set to what the servers report after every
    query; a server found unreachable is not asked again.
    """
    for name, backend in used.items():
        if name not in unreachable:
            await env.registry.sync_backend(backend)


async def evict(
    env: RunEnvironment,
    query_id: int,
    model: str,
    backend_name: str,
    reason: str,
    emit: Emit,
    *,
    kind: str,
) -> float | None:
    """Unload one model, record it and say so. Returns the memory freed where measurable.

    Args:
        env: The engine's state.
        query_id: The query it is done for, 0 for none.
        model: The model to unload.
        backend_name: The backend that holds it.
        reason: Why, in words, for the `Evicting` event.
        emit: Where the event goes.
        kind: Why, as the category the metrics count (one of the `EVICTED_*` names).
    """
    backend = env.registry.backend(backend_name)
    freed = await backend.unload(model) if backend is not None else None
    env.tracker.record_unload(backend_name, model)
    record = EvictionRecord(model, backend_name, kind, freed, time.time())
    env.metrics.evictions.record(record)
    if env.history is not None:
        append_history(env.history, record)
    emit(Evicting(query_id, model, backend_name, reason, freed))
    return freed


async def _unload_after_use(
    env: RunEnvironment, query_id: int, attempt: _Attempt, emit: Emit
) -> None:
    """With model caching off the model leaves memory after every answer."""
    await evict(
        env,
        query_id,
        attempt.spec.name,
        attempt.backend.name,
        "model caching is off",
        emit,
        kind=EVICTED_CACHING_OFF,
    )


async def _count_prompt(backend: Backend, model: str, prompt: OptimizedPrompt) -> tuple[int, bool]:
    """Tokens in the prompt: exact when the backend tokenizes, else the optimizer's estimate."""
    try:
        tokens = await backend.tokenize(model, prompt.text)
    except BackendError:
        tokens = None
    if tokens is None:
        return prompt.optimized_tokens, False
    return len(tokens), True


def _warn_if_server_truncated(
    query_id: int,
    end: StreamEnd,
    sent: int,
    exact: bool,
    num_ctx: int,
    emit: Emit,
) -> bool:
    """Say so when the server evaluated clearly fewer prompt tokens than were sent.

    Returns:
        True when the server cut the prompt.
    """
    if end.prompt_tokens is None or sent <= 0:
        return False
    ratio = EXACT_TRUNCATION_RATIO if exact else ESTIMATED_TRUNCATION_RATIO
    if end.prompt_tokens >= sent * ratio:
        return False
    kind = "" if exact else "about "
    emit(
        Notice(
            query_id,
            f"the server read only {format_count(end.prompt_tokens)} of {kind}"
            f"{format_count(sent)} prompt tokens (num_ctx {format_count(num_ctx)}): it cut the"
            " start of the prompt, so the answer may miss context; turn on context truncation"
            " or use a model with a larger context",
            warning=True,
        )
    )
    return True


def _tokens_per_second(
    end: StreamEnd, tokens_out: int, first_token_s: float | None, stream_s: float
) -> float | None:
    if end.completion_tokens and end.eval_s:
        return end.completion_tokens / end.eval_s
    generating = stream_s - (first_token_s or 0.0)
    if tokens_out > 1 and generating > 0:
        return (tokens_out - 1) / generating
    return None


def _record(
    env: RunEnvironment,
    attempt: _Attempt,
    started: float,
    errors: list[NemoError],
    done: Done | None,
    state: RunState,
    fallback_reasons: list[str],
) -> None:
    """One metrics record per query, whatever it took to get there."""
    record = QueryRecord(
        model=attempt.spec.name,
        backend=attempt.backend.name,
        local=attempt.spec.local,
        cache_hit=done.cache_hit if done else None,
        truncated=attempt.prompt.truncated,
        server_truncated=state.server_truncated,
        fallbacks=len(done.fallbacks) if done else len(errors),
        failed=done is None,
        load_failed=any(isinstance(e, OutOfMemory) for e in errors),
        first_token_s=done.first_token_s if done else None,
        total_s=done.total_s if done else time.perf_counter() - started,
        load_s=done.load_s if done else None,
        tokens_out=done.tokens_out if done else 0,
        tokens_per_s=done.tokens_per_s if done else None,
        at=time.time(),
        fallback_reasons=tuple(fallback_reasons),
    )
    env.metrics.record(record)
    if env.history is not None:
        append_history(env.history, record)
