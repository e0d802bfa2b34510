"""Query statistics: cache hits, truncations, fallbacks, failures and latency percentiles.

This module owns `QueryRecord` (what one query did) and `Metrics`, a bounded history of them
with the figures the dashboard, `stats --json` and the troubleshooting guide read. Only the
counts in `Metrics.totals` (and the query count) outlive the history; every rate and percentile
describes the last `capacity` queries, so a problem that was fixed stops showing once enough new
queries ran.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PERCENTILES = (50, 90, 99)
"""The percentiles reported for each latency series."""


@dataclass(frozen=True)
class QueryRecord:
    """What one query did.

    Attributes:
        model: The model that answered, or the last one tried when all failed.
        backend: Its backend.
        local: Whether it ran on this machine (False for the cloud).
        cache_hit: Whether the model was already loaded; None when that cannot be known.
        truncated: Whether nemo-tui shrank the prompt to fit the context.
        server_truncated: Whether the server cut the prompt itself (it did not fit its context).
        fallbacks: How many other models were tried after the first choice failed.
        failed: Whether no model answered.
        load_failed: Whether a model failed to load on the way.
        first_token_s: Seconds until the first token, None when none arrived.
        total_s: Seconds from sending the query to the end of the answer (or the failure).
        load_s: Seconds spent loading the model, when reported.
        tokens_out: Tokens generated.
        tokens_per_s: Generation speed, when reported.
        at: When the query finished (epoch seconds).
        fallback_reasons: Why each model the query moved on from failed, one category per
            hand-over: `out_of_memory`, `unreachable`, `no_first_token`, `model_not_found`,
            `busy` or `error`. Empty in records written before reasons were kept.
    """

    model: str
    backend: str
    local: bool
    cache_hit: bool | None
    truncated: bool
    server_truncated: bool
    fallbacks: int
    failed: bool
    load_failed: bool
    first_token_s: float | None
    total_s: float
    load_s: float | None
    tokens_out: int
    tokens_per_s: float | None
    at: float
    fallback_reasons: tuple[str, ...] = ()


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least `pct` % of values at or below.

    Nearest rank always returns a value that was measured, which reads better on a dashboard
    than an interpolated one (a p99 of "12.3 s" was a real query).

    Args:
        values: The measurements, in any order.
        pct: The percentile, 0..100.

    Returns:
        The value, or None when there are no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class AnalysisRecord:
    """What one run of an analysis script did.

    Attributes:
        ok: Whether it ran to the end and exited 0.
        repaired: Whether the script came from a repair round.
        peak_rss_mb: Its peak memory, when measured.
        at: When it finished (epoch seconds).
    """

    ok: bool
    repaired: bool
    peak_rss_mb: float | None
    at: float


@dataclass
class AnalysisCounts:
    """What the analysis scripts run so far did.

    Attributes:
        run: Scripts run.
        failed: Runs that did not end with exit status 0: an error, a limit, or stopped by hand.
        repaired: Runs of a script corrected in a repair round that then succeeded.
        peak_rss_mb: The largest peak memory of any run, when measured.
    """

    run: int = 0
    failed: int = 0
    repaired: int = 0
    peak_rss_mb: float | None = None

    def record(self, record: AnalysisRecord) -> None:
        """Count one finished run."""
        self.run += 1
        if not record.ok:
            self.failed += 1
        elif record.repaired:
            self.repaired += 1
        if record.peak_rss_mb is not None:
            self.peak_rss_mb = max(record.peak_rss_mb, self.peak_rss_mb or 0.0)

    def to_json(self) -> dict[str, object]:
        """The `analyses` object of `stats --json`."""
        peak = self.peak_rss_mb
        return {
            "run": self.run,
            "failed": self.failed,
            "repaired": self.repaired,
            "peak_rss_mb": round(peak, 1) if peak is not None else None,
        }


@dataclass(frozen=True)
class EvictionRecord:
    """A model nemo-tui unloaded (not one its server let go of on its own).

    Attributes:
        model: The model unloaded.
        backend: The backend that held it.
        reason: Why, as a category: `make_room` (for another model), `pressure` (memory
            pressure), `caching_off` (after its answer, model caching being off) or `manual`
            (unloaded or cache cleared by hand).
        freed_mb: The memory it gave back, when the backend measured it.
        at: When it was unloaded (epoch seconds).
    """

    model: str
    backend: str
    reason: str
    freed_mb: float | None
    at: float


@dataclass
class EvictionCounts:
    """The models nemo-tui unloaded so far, by reason.

    Attributes:
        by_reason: Evictions per reason category.
        freed_mb_by_reason: Memory they gave back, of the evictions whose backend measured it.
    """

    by_reason: Counter[str] = field(default_factory=Counter)
    freed_mb_by_reason: dict[str, float] = field(default_factory=dict)

    def record(self, record: EvictionRecord) -> None:
        """Count one eviction."""
        self.by_reason[record.reason] += 1
        if record.freed_mb is not None:
            freed = self.freed_mb_by_reason.get(record.reason, 0.0) + record.freed_mb
            self.freed_mb_by_reason[record.reason] = freed

    def to_json(self) -> dict[str, object]:
        """The `evictions` object of `stats --json`: the total, and per reason the count and
        the memory freed (null when no backend measured it)."""
        freed = self.freed_mb_by_reason
        return {
            "total": self.by_reason.total(),
            "by_reason": {
                reason: {
                    "count": count,
                    "freed_mb": round(freed[reason], 1) if reason in freed else None,
                }
                for reason, count in sorted(self.by_reason.items())
            },
        }


@dataclass
class QueryCounts:
    """What every query recorded so far did, those that left the bounded history included.

    Attributes:
        queries: Queries recorded.
        failed: Queries no model answered.
        cache_hits: Queries whose model the server already held.
        cache_misses: Queries whose model had to be loaded (queries where it is unknown, and
            cloud queries, are neither).
        truncated: Queries whose prompt nemo-tui shrank to fit.
        server_truncated: Queries whose prompt the server cut itself.
        fallbacks_by_reason: Hand-overs to the next model, by why the model left failed.
    """

    queries: int = 0
    failed: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    truncated: int = 0
    server_truncated: int = 0
    fallbacks_by_reason: Counter[str] = field(default_factory=Counter)

    def record(self, record: QueryRecord) -> None:
        """Count one finished query."""
        self.queries += 1
        self.failed += record.failed
        self.cache_hits += record.cache_hit is True
        self.cache_misses += record.cache_hit is False
        self.truncated += record.truncated
        self.server_truncated += record.server_truncated
        self.fallbacks_by_reason.update(record.fallback_reasons)

    def to_json(self) -> dict[str, object]:
        """The `totals` object of `stats --json`."""
        return {
            "queries": self.queries,
            "failed": self.failed,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "truncated": self.truncated,
            "server_truncated": self.server_truncated,
            "fallbacks_by_reason": dict(sorted(self.fallbacks_by_reason.items())),
        }


class Metrics:
    """A bounded history of queries and the figures derived from it.

    Rates are shares (0..1) of the queries in the history and None when it is empty. Not
    thread-safe: the engine records from one asyncio loop.

    Args:
        capacity: How many recent queries to keep.

    Raises:
        ValueError: `capacity` is below 1.
    """

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._history: deque[QueryRecord] = deque(maxlen=capacity)
        self.totals = QueryCounts()
        """Counts of every query recorded, not just those still in the history."""
        self.analyses = AnalysisCounts()
        """Analysis scripts run, counted like the queries (from the history kept between runs)."""
        self.evictions = EvictionCounts()
        """Models nemo-tui unloaded, counted like the queries."""

    def record(self, record: QueryRecord) -> None:
        """Add a finished query; the oldest one drops out once the history is full."""
        self._history.append(record)
        self.totals.record(record)

    @property
    def capacity(self) -> int:
        """How many recent queries the history keeps."""
        return self._history.maxlen or 0

    @property
    def queries(self) -> int:
        """Queries recorded since start, including those that left the history."""
        return self.totals.queries

    def _share(self, test: Callable[[QueryRecord], bool]) -> float | None:
        if not self._history:
            return None
        return sum(1 for record in self._history if test(record)) / len(self._history)

    def _count(self, test: Callable[[QueryRecord], bool]) -> int:
        return sum(1 for record in self._history if test(record))

    @property
    def cache_hit_rate(self) -> float | None:
        """Share of queries whose model was already loaded, of those where it is known."""
        known = [record.cache_hit for record in self._history if record.cache_hit is not None]
        return sum(known) / len(known) if known else None

    @property
    def truncation_rate(self) -> float | None:
        """Share of queries whose prompt nemo-tui shrank to fit."""
        return self._share(lambda record: record.truncated)

    @property
    def server_truncations(self) -> int:
        """Queries whose prompt the server cut itself, silently losing part of it."""
        return self._count(lambda record: record.server_truncated)

    @property
    def fallback_rate(self) -> float | None:
        """Share of queries that needed at least one fallback model."""
        return self._share(lambda record: record.fallbacks >= 1)

    @property
    def cloud_share(self) -> float | None:
        """Share of queries answered (or last tried) in the cloud."""
        return self._share(lambda record: not record.local)

    @property
    def failures(self) -> int:
        """Queries no model answered."""
        return self._count(lambda record: record.failed)

    @property
    def failure_rate(self) -> float | None:
        """Share of queries no model answered."""
        return self._share(lambda record: record.failed)

    @property
    def load_failures(self) -> int:
        """Queries during which a model failed to load."""
        return self._count(lambda record: record.load_failed)

    def latency_percentiles(self) -> dict[str, dict[str, float | None]]:
        """p50, p90 and p99 (nearest rank) of total time, first-token time and speed.

        Failed queries are left out: a quick failure is not a fast answer. Queries without a
        first token or a reported speed are left out of those series.

        Returns:
            `{"total_s": {"p50": .., "p90": .., "p99": ..}, "first_token_s": {..},
            "tokens_per_s": {..}}`, each value None without data.
        """
        answered = [record for record in self._history if not record.failed]
        series: dict[str, list[float]] = {
            "total_s": [record.total_s for record in answered],
            "first_token_s": [
                record.first_token_s for record in answered if record.first_token_s is not None
            ],
            "tokens_per_s": [
                record.tokens_per_s for record in answered if record.tokens_per_s is not None
            ],
        }
        return {
            name: {f"p{pct}": percentile(values, pct) for pct in PERCENTILES}
            for name, values in series.items()
        }

    def recent(self, n: int) -> list[QueryRecord]:
        """The last `n` queries, oldest first (fewer when the history is shorter)."""
        if n <= 0:
            return []
        return list(self._history)[-n:]

    def to_json(self) -> dict[str, object]:
        """The stable JSON keys of `stats --json`; rates are 0..1 or null.

        `totals`, `evictions` and `analyses` are counts, of every record since start (the
        history file's newest records, for a command that just started).
        """
        return {
            "queries": self.queries,
            "cache_hit_rate": self.cache_hit_rate,
            "truncation_rate": self.truncation_rate,
            "server_truncations": self.server_truncations,
            "fallback_rate": self.fallback_rate,
            "cloud_share": self.cloud_share,
            "failures": self.failures,
            "load_failures": self.load_failures,
            "latency": self.latency_percentiles(),
            "analyses": self.analyses.to_json(),
            "totals": self.totals.to_json(),
            "evictions": self.evictions.to_json(),
        }
