"""nemo-tui's figures as Prometheus metric families, built from one snapshot at a time.

A `Snapshot` holds everything the metrics say, copied at one moment from the engine (this
machine's memory and models, the backends, the current recommendations), the hosts' last
statuses and the history's counters; `metric_families` turns it into metric families, and
`SnapshotCollector` hands a fresh one to a registry on every scrape. The snapshot is taken on
the engine's event loop (`take_snapshot`); building the families only reads it, so any thread
may do that.

Memory is in bytes, times in seconds (durations) or seconds since the epoch (`_timestamp_`
names), shares in 0..1 (`_ratio`), as Prometheus names them. Labels: `host` (a name from the
config: `local_host.name` for this machine), `model`, `backend` (the server kind: ollama,
openai, embedded, gemini), `reason`, `complexity`, `level`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nemo_tui import __version__
from nemo_tui.backends.base import BackendHealth
from nemo_tui.core.memory.profile import PressureLevel
from nemo_tui.core.models.backend_names import backend_host, backend_kind
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import Recommendation
from nemo_tui.core.models.routing import CLOUD_HOST
from nemo_tui.core.reports.metrics import AnalysisCounts, EvictionCounts, QueryCounts
from nemo_tui.engine.pipeline import EVICTION_REASONS, FALLBACK_REASONS
from nemo_tui.exporter.counters import HistoryCounters, LatencyHistogram
from nemo_tui.hosts.status import HostModel, HostStatus, local_status
from nemo_tui.units import MB

if TYPE_CHECKING:
    from nemo_tui.engine import Engine

PREFIX = "nemo_tui_"


class HostStatuses(Protocol):
    """Where the hosts' last statuses come from (a `HostMonitor`)."""

    def statuses(self) -> Sequence[HostStatus]:
        """Every host as last seen, without asking any of them now."""
        ...


@dataclass(frozen=True)
class HistoryFigures:
    """The history's counters at one moment (copies: the originals go on counting)."""

    totals: QueryCounts
    evictions: EvictionCounts
    analyses: AnalysisCounts
    first_token: LatencyHistogram
    duration: LatencyHistogram

    @classmethod
    def of(cls, counters: HistoryCounters) -> HistoryFigures:
        """Copy what `counters` holds now."""
        metrics = counters.metrics
        return cls(
            totals=copy.deepcopy(metrics.totals),
            evictions=copy.deepcopy(metrics.evictions),
            analyses=copy.copy(metrics.analyses),
            first_token=copy.deepcopy(counters.first_token),
            duration=copy.deepcopy(counters.duration),
        )


@dataclass(frozen=True)
class Snapshot:
    """Everything the metrics say, as it was at `taken_at`.

    Attributes:
        taken_at: When it was taken (epoch seconds).
        hosts: Every host: this machine first (as the engine sees it), then the others as the
            host monitor last saw them.
        backends: This machine's backends (and the other hosts' servers the engine uses) as
            last probed.
        recommendations: What this machine would pick now for each complexity.
        history: The history's counters; None when no history is kept.
    """

    taken_at: float
    hosts: tuple[HostStatus, ...]
    backends: tuple[BackendHealth, ...]
    recommendations: tuple[tuple[Complexity, Recommendation], ...]
    history: HistoryFigures | None


def take_snapshot(
    engine: Engine,
    *,
    hosts: HostStatuses | None = None,
    counters: HistoryCounters | None = None,
    clock: Callable[[], float] = time.time,
) -> Snapshot:
    """Read everything the metrics say now; call it on the engine's event loop.

    The history is read first (the lines added since the last snapshot), so the counters are
    as current as the rest.

    Args:
        engine: The engine: this machine's memory, models, backends and recommendations.
        hosts: The host monitor, for the other hosts; None for this machine only.
        counters: The history's counters, refreshed here; None exports no counters.
        clock: The wall clock.
    """
    if counters is not None:
        counters.refresh()
    now = clock()
    statuses = list(hosts.statuses()) if hosts is not None else []
    local = next((status for status in statuses if status.local), None)
    others = tuple(status for status in statuses if not status.local)
    return Snapshot(
        taken_at=now,
        hosts=(_local_host(engine, local, now), *others),
        backends=tuple(engine.healths()),
        recommendations=tuple((c, engine.recommend_now(c)) for c in Complexity),
        history=HistoryFigures.of(counters) if counters is not None else None,
    )


def _local_host(engine: Engine, monitored: HostStatus | None, now: float) -> HostStatus:
    """This machine: memory and models as the engine sees them now, which `stats --json` also
    reports; its servers' own gauges and answer time from the host monitor's last check."""
    models = tuple(
        HostModel(
            name=model.name,
            server=model.backend,
            size_mb=model.size_mb,
            vram_mb=model.vram_mb,
            expires_at=(
                None if model.expires_at is None else datetime.fromtimestamp(model.expires_at, UTC)
            ),
        )
        for model in engine.cached_models()
        if backend_host(model.backend) is None
    )
    seen = monitored.memory if monitored is not None else None
    return local_status(
        engine.config,
        engine.sample(),
        checked_at=now,
        models=models,
        kv_cache_percent=seen.kv_cache_percent if seen is not None else None,
        requests_running=seen.requests_running if seen is not None else None,
        latency_ms=monitored.latency_ms if monitored is not None else None,
    )


class SnapshotCollector(Collector):
    """A Prometheus collector that builds every family from a snapshot at each collection.

    Args:
        source: Gives the snapshot to export; called once per collection, from the thread
            that collects (an HTTP server's, or the one writing a text file).
    """

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        """The metric families of a fresh snapshot."""
        return metric_families(self._source())


def metric_families(snapshot: Snapshot) -> list[Metric]:
    """Every metric family a snapshot makes, in a stable order."""
    families = [
        *_meta(snapshot),
        *_host_families(snapshot.hosts),
        *_model_families(snapshot.hosts),
        _backend_family(snapshot.backends, _local_name(snapshot)),
        *_recommendation_families(snapshot.recommendations, _local_name(snapshot)),
    ]
    if snapshot.history is not None:
        families.extend(_history_families(snapshot.history))
    return families


def _local_name(snapshot: Snapshot) -> str:
    return next(host.name for host in snapshot.hosts if host.local)


def _gauge(name: str, help_text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, help_text, labels=list(labels))


def _counter(name: str, help_text: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help_text, labels=list(labels))


def _meta(snapshot: Snapshot) -> Iterator[Metric]:
    info = _gauge("build_info", "The nemo-tui version that exports these metrics.", ["version"])
    info.add_metric([__version__], 1)
    yield info
    taken = _gauge(
        "snapshot_timestamp_seconds",
        "When these figures were read (before the scrape only when nemo-tui's event loop was"
        " too busy to answer it in time).",
    )
    taken.add_metric([], snapshot.taken_at)
    yield taken


_MEMORY = (
    (
        "total_mb",
        "memory_total_bytes",
        "Memory the host has (a container's limit, when one applies to nemo-tui).",
    ),
    (
        "available_mb",
        "memory_available_bytes",
        "Memory that can still be allocated without swapping.",
    ),
    ("used_mb", "memory_used_bytes", "Memory in use: total less available."),
    ("swap_total_mb", "swap_total_bytes", "Swap space the host has."),
    ("swap_used_mb", "swap_used_bytes", "Swap space in use."),
)
"""`HostMemory` field (MB), metric name, help text: each exported in bytes where known."""
_PSI = (
    ("psi_some_avg10", "psi_some_avg10_ratio", "some"),
    ("psi_full_avg10", "psi_full_avg10_ratio", "all"),
)


def _host_families(hosts: Sequence[HostStatus]) -> Iterator[Metric]:
    up = _gauge(
        "host_up",
        "1 when the host answered (one of its model servers or its node_exporter); this machine"
        " is always up.",
        ["host"],
    )
    for host in hosts:
        up.add_metric([host.name], float(host.up))
    yield up

    for field, name, help_text in _MEMORY:
        family = _gauge(f"host_{name}", f"{help_text} Absent when unknown.", ["host"])
        for host in hosts:
            value = getattr(host.memory, field) if host.memory is not None else None
            if value is not None:
                family.add_metric([host.name], value * MB)
        yield family

    for field, name, tasks in _PSI:
        family = _gauge(
            f"host_{name}",
            f"Share of the last 10 s in which {tasks} tasks stalled waiting for memory (Linux"
            " PSI), 0..1. Absent where the kernel does not report it.",
            ["host"],
        )
        for host in hosts:
            value = getattr(host.memory, field) if host.memory is not None else None
            if value is not None:
                family.add_metric([host.name], value / 100)
        yield family

    pressure = _gauge(
        "host_memory_pressure",
        "1 for the host's memory pressure level now (normal, elevated, critical: nemo-tui's"
        " rules, which unload models at critical), 0 for the others. Absent when the host's"
        " memory is unknown.",
        ["host", "level"],
    )
    for host in hosts:
        if host.pressure is not None:
            for level in PressureLevel:
                pressure.add_metric([host.name, level.value], float(level is host.pressure))
    yield pressure

    limit = _gauge(
        "host_cache_limit_ratio",
        "Largest share of the host's memory that loaded models may use (cache_limit).",
        ["host"],
    )
    for host in hosts:
        limit.add_metric([host.name], host.cache_limit)
    yield limit

    yield from _server_gauges(hosts)
    yield from _gpu_families(hosts)

    checked = _gauge(
        "host_checked_timestamp_seconds",
        "When the host's figures were last read.",
        ["host"],
    )
    latency = _gauge(
        "host_latency_seconds",
        "The quickest answer among the host's servers and exporter at the last check. Absent"
        " when none answered.",
        ["host"],
    )
    for host in hosts:
        checked.add_metric([host.name], host.checked_at)
        if host.latency_ms is not None:
            latency.add_metric([host.name], host.latency_ms / 1000)
    yield checked
    yield latency


def _server_gauges(hosts: Sequence[HostStatus]) -> Iterator[Metric]:
    kv_cache = _gauge(
        "host_kv_cache_usage_ratio",
        "How full the KV cache of the host's vLLM or llama-server is, 0..1. Absent when no"
        " server reports it.",
        ["host"],
    )
    running = _gauge(
        "host_requests_running",
        "Requests the host's OpenAI-compatible server is working on. Absent when no server"
        " reports it.",
        ["host"],
    )
    for host in hosts:
        memory = host.memory
        if memory is None:
            continue
        if memory.kv_cache_percent is not None:
            kv_cache.add_metric([host.name], memory.kv_cache_percent / 100)
        if memory.requests_running is not None:
            running.add_metric([host.name], memory.requests_running)
    yield kv_cache
    yield running


def _gpu_families(hosts: Sequence[HostStatus]) -> Iterator[Metric]:
    total = _gauge("host_gpu_memory_total_bytes", "Memory of each GPU.", ["host", "gpu"])
    used = _gauge("host_gpu_memory_used_bytes", "Memory in use on each GPU.", ["host", "gpu"])
    for host in hosts:
        for gpu in host.memory.gpus if host.memory is not None else ():
            labels = [host.name, str(gpu.index)]
            total.add_metric(labels, gpu.total_mb * MB)
            used.add_metric(labels, gpu.used_mb * MB)
    yield total
    yield used


def _model_families(hosts: Sequence[HostStatus]) -> Iterator[Metric]:
    labels = ["host", "model", "backend"]
    loaded = _gauge("model_loaded", "1 for every model loaded on a host.", labels)
    size = _gauge(
        "model_size_bytes",
        "Memory a loaded model takes, RAM and VRAM together. Absent when its server does not"
        " say (vLLM).",
        labels,
    )
    vram = _gauge(
        "model_vram_bytes",
        "The part of a loaded model in GPU memory. Absent when its server does not say.",
        labels,
    )
    expires = _gauge(
        "model_expires_timestamp_seconds",
        "When the server will unload the model on its own (Ollama's keep_alive). Absent when"
        " it is kept until unloaded, or the server does not say.",
        labels,
    )
    for host in hosts:
        for model in host.models:
            values = [host.name, model.name, backend_kind(model.server)]
            loaded.add_metric(values, 1)
            if model.size_mb is not None:
                size.add_metric(values, model.size_mb * MB)
            if model.vram_mb is not None:
                vram.add_metric(values, model.vram_mb * MB)
            if model.expires_at is not None:
                expires.add_metric(values, model.expires_at.timestamp())
    yield from (loaded, size, vram, expires)


def _backend_family(backends: Sequence[BackendHealth], local: str) -> Metric:
    up = _gauge(
        "backend_up",
        "1 when the model server answered nemo-tui's last probe.",
        ["host", "backend"],
    )
    for health in backends:
        up.add_metric(
            [backend_host(health.backend) or local, backend_kind(health.backend)],
            float(health.up),
        )
    return up


def _recommendation_families(
    recommendations: Sequence[tuple[Complexity, Recommendation]], local: str
) -> Iterator[Metric]:
    info = _gauge(
        "recommendation_info",
        "The model nemo-tui would pick now for a query of each complexity; `host` is where it"
        " would run (this machine, or cloud).",
        ["complexity", "host", "model", "backend", "tier"],
    )
    fits = _gauge(
        "recommendation_fits",
        "1 when the recommended model fits in memory under the cache limit now (evicting what"
        " the recommendation says).",
        ["complexity"],
    )
    estimate = _gauge(
        "recommendation_estimated_bytes",
        "Memory the recommended model is estimated to take at the planned context. Absent for"
        " a cloud model.",
        ["complexity"],
    )
    for complexity, rec in recommendations:
        host = local if rec.local else CLOUD_HOST
        info.add_metric([complexity.value, host, rec.model, rec.backend, rec.tier.value], 1)
        fits.add_metric([complexity.value], float(rec.fits))
        if rec.local and rec.estimate is not None:
            estimate.add_metric([complexity.value], rec.estimate.total_mb * MB)
    yield from (info, fits, estimate)


_COUNTER_NOTE = (
    " Counted from the history all nemo-tui processes share: it starts from the newest records"
    " there, so restarting the exporter can look like a counter reset."
)


def _history_families(history: HistoryFigures) -> Iterator[Metric]:
    totals = history.totals
    for name, value, help_text in (
        ("queries", totals.queries, "Queries answered or failed."),
        ("query_failures", totals.failed, "Queries no model answered."),
        ("cache_hits", totals.cache_hits, "Queries whose model its server already held."),
        (
            "cache_misses",
            totals.cache_misses,
            "Queries whose model had to be loaded first (a cloud query, or one whose server"
            " does not say, is neither a hit nor a miss).",
        ),
        ("truncations", totals.truncated, "Queries whose prompt nemo-tui shrank to fit."),
        (
            "server_truncations",
            totals.server_truncated,
            "Queries whose prompt the server cut itself because it did not fit its context.",
        ),
        ("analyses", history.analyses.run, "Analysis scripts run."),
        (
            "analyses_failed",
            history.analyses.failed,
            "Analysis scripts that did not exit with status 0 (an error, a limit, stopped).",
        ),
    ):
        family = _counter(name, help_text + _COUNTER_NOTE)
        family.add_metric([], value)
        yield family

    fallbacks = _counter(
        "fallbacks",
        "Hand-overs of a query to the next model, by why the model left failed: out_of_memory,"
        " unreachable, no_first_token, model_not_found, busy, error." + _COUNTER_NOTE,
        ["reason"],
    )
    for reason, count in _with_known(FALLBACK_REASONS, totals.fallbacks_by_reason).items():
        fallbacks.add_metric([reason], count)
    yield fallbacks

    evictions = _counter(
        "evictions",
        "Models nemo-tui unloaded, by why: make_room (for another model), pressure (critical"
        " memory pressure), caching_off (after each answer), manual (unload, clear-cache)."
        " Models a server unloads on its own are not counted." + _COUNTER_NOTE,
        ["reason"],
    )
    freed = _counter(
        "eviction_freed_bytes",
        "Memory given back by the models nemo-tui unloaded, of those whose server measured it."
        + _COUNTER_NOTE,
        ["reason"],
    )
    counts = history.evictions
    for reason, count in _with_known(EVICTION_REASONS, counts.by_reason).items():
        evictions.add_metric([reason], count)
        freed.add_metric([reason], counts.freed_mb_by_reason.get(reason, 0.0) * MB)
    yield evictions
    yield freed

    yield _histogram(
        "query_first_token_seconds",
        "Seconds from sending a query to its first token, of the answered queries (a cold"
        " load counts in it)." + _COUNTER_NOTE,
        history.first_token,
    )
    yield _histogram(
        "query_duration_seconds",
        "Seconds from sending a query to the end of its answer, of the answered queries."
        + _COUNTER_NOTE,
        history.duration,
    )


def _with_known(known: Iterable[str], counts: Mapping[str, float]) -> dict[str, float]:
    """Counts for every known category (0 when none yet), and any other one that occurred."""
    return {**dict.fromkeys(known, 0), **counts}


def _histogram(name: str, help_text: str, histogram: LatencyHistogram) -> Metric:
    buckets = [
        ("+Inf" if math.isinf(bound) else repr(bound), count)
        for bound, count in histogram.cumulative()
    ]
    return HistogramMetricFamily(
        PREFIX + name, help_text, buckets=buckets, sum_value=histogram.sum_s
    )
