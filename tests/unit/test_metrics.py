"""Query metrics: rates, counts, nearest-rank percentiles and the stable JSON shape."""

from __future__ import annotations

import json

import pytest

from nemo_tui.core.reports.metrics import Metrics, percentile
from tests.fakes.query_records import query_record as query


def test_no_queries_means_no_rates() -> None:
    metrics = Metrics()
    assert metrics.queries == 0
    assert metrics.cache_hit_rate is None
    assert metrics.truncation_rate is None
    assert metrics.fallback_rate is None
    assert metrics.cloud_share is None
    assert metrics.failure_rate is None
    assert (metrics.failures, metrics.load_failures, metrics.server_truncations) == (0, 0, 0)
    assert metrics.latency_percentiles() == {
        "total_s": {"p50": None, "p90": None, "p99": None},
        "first_token_s": {"p50": None, "p90": None, "p99": None},
        "tokens_per_s": {"p50": None, "p90": None, "p99": None},
    }


def test_rates_are_shares_of_recorded_queries() -> None:
    metrics = Metrics()
    metrics.record(query(cache_hit=True, truncated=True))
    metrics.record(query(cache_hit=False, fallbacks=2, local=False))
    metrics.record(query(cache_hit=None, server_truncated=True, load_failed=True))
    metrics.record(query(cache_hit=True, failed=True, fallbacks=1, local=False))
    assert metrics.queries == 4
    # cache_hit None is unknown, not a miss: 2 hits of 3 known.
    assert metrics.cache_hit_rate == pytest.approx(2 / 3)
    assert metrics.truncation_rate == 0.25
    assert metrics.server_truncations == 1
    assert metrics.fallback_rate == 0.5
    assert metrics.cloud_share == 0.5
    assert metrics.failures == 1
    assert metrics.failure_rate == 0.25
    assert metrics.load_failures == 1


def test_cache_hit_rate_is_none_when_never_known() -> None:
    metrics = Metrics()
    metrics.record(query(cache_hit=None))
    assert metrics.cache_hit_rate is None
    assert metrics.truncation_rate == 0.0


def test_history_is_bounded_but_the_query_count_is_not() -> None:
    metrics = Metrics(capacity=3)
    metrics.record(query(failed=True, at=1.0))
    for at in (2.0, 3.0, 4.0):
        metrics.record(query(at=at))
    assert metrics.queries == 4
    assert metrics.capacity == 3
    # The failure has left the window.
    assert metrics.failures == 0
    assert [r.at for r in metrics.recent(10)] == [2.0, 3.0, 4.0]


def test_recent_returns_the_latest_oldest_first() -> None:
    metrics = Metrics()
    for at in range(5):
        metrics.record(query(at=float(at)))
    assert [r.at for r in metrics.recent(2)] == [3.0, 4.0]
    assert metrics.recent(0) == []


def test_capacity_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Metrics(capacity=0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile([7.0], 50) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([], 50) is None
    assert percentile([4.0, 8.0], 0) == 4.0


def test_latency_percentiles_skip_failures_and_missing_values() -> None:
    metrics = Metrics()
    for total in (1.0, 2.0, 3.0, 4.0):
        metrics.record(query(total_s=total, first_token_s=total / 10, tokens_per_s=total * 10))
    metrics.record(query(total_s=0.1, failed=True, first_token_s=None, tokens_per_s=None))
    metrics.record(query(total_s=5.0, first_token_s=None, tokens_per_s=None))
    latency = metrics.latency_percentiles()
    assert latency["total_s"] == {"p50": 3.0, "p90": 5.0, "p99": 5.0}
    assert latency["first_token_s"] == {"p50": 0.2, "p90": 0.4, "p99": 0.4}
    assert latency["tokens_per_s"] == {"p50": 20.0, "p90": 40.0, "p99": 40.0}


def test_json_has_stable_keys_and_serializes() -> None:
    metrics = Metrics()
    metrics.record(query(truncated=True))
    data = metrics.to_json()
    assert list(data) == [
        "queries",
        "cache_hit_rate",
        "truncation_rate",
        "server_truncations",
        "fallback_rate",
        "cloud_share",
        "failures",
        "load_failures",
        "latency",
        "analyses",
        "totals",
        "evictions",
    ]
    assert data["queries"] == 1
    assert data["truncation_rate"] == 1.0
    assert data["latency"] == metrics.latency_percentiles()
    assert json.loads(json.dumps(data)) == data


def test_empty_json_uses_null_rates() -> None:
    data = Metrics().to_json()
    assert data["cache_hit_rate"] is None
    assert data["cloud_share"] is None
    assert data["queries"] == 0
