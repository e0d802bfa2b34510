"""The metrics as Prometheus reads them: an engine with scripted backends answers, falls back
and evicts; what is exported, parsed with prometheus_client's own text parser, says what
`engine.stats()` (`stats --json`) says. Also: the counters follow the shared history file
exactly once per record, and the endpoint answers even while the event loop is busy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nemo_tui.backends.base import (
    BackendError,
    BackendUnavailable,
    ModelNotFound,
    OutOfMemory,
    RateLimited,
    StreamBroken,
)
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.reports.metrics import AnalysisRecord, EvictionRecord, Metrics
from nemo_tui.engine import Engine
from nemo_tui.engine.history import append_history, load_history
from nemo_tui.engine.pipeline import (
    EVICTION_REASONS,
    FALLBACK_REASONS,
    FirstTokenTimeout,
    fallback_reason,
)
from nemo_tui.errors import NemoError
from nemo_tui.events import Done, Query
from nemo_tui.exporter import serve as serve_module
from nemo_tui.exporter.collector import Snapshot, SnapshotCollector, take_snapshot
from nemo_tui.exporter.counters import HistoryCounters
from nemo_tui.exporter.serve import serve, write_textfile
from nemo_tui.hosts.status import HostMemory, HostModel, HostStatus, local_status
from nemo_tui.units import MB
from tests.engine.test_engine import ChangingSampler, collect, started
from tests.fakes import Script, ScriptedBackend
from tests.fakes.query_records import query_record

MB_ROUNDING = 0.05 * MB
"""`stats --json` rounds memory to 0.1 MB; the metrics carry it unrounded, in bytes."""


@dataclass
class Scrape:
    """One exposition parsed by prometheus_client's parser: every sample by name and labels."""

    types: dict[str, str]
    samples: dict[str, dict[frozenset[tuple[str, str]], float]]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None when it is absent."""
        return self.samples.get(name, {}).get(frozenset(labels.items()))

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample of a name."""
        return [dict(labels) for labels in self.samples.get(name, {})]

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples of a name by the value of one label."""
        return {dict(labels)[label]: value for labels, value in self.samples.get(name, {}).items()}


def parse(text: str) -> Scrape:
    """Parse Prometheus text format the way prometheus_client reads a scrape."""
    types: dict[str, str] = {}
    samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            labels = frozenset(sample.labels.items())
            series = samples.setdefault(sample.name, {})
            assert labels not in series, f"duplicate series {sample.name}{dict(labels)}"
            series[labels] = sample.value
    return Scrape(types, samples)


def scrape(snapshot: Snapshot) -> Scrape:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot))
    return parse(generate_latest(registry).decode("utf-8"))


def section(stats: dict[str, Any], *keys: str) -> Any:
    value: Any = stats
    for key in keys:
        value = value[key]
    return value


OUT_OF_MEMORY = OutOfMemory(
    "model requires more system memory (3.9 GiB) than is available (1.2 GiB)", backend="ollama"
)


async def engine_that_did_things(history: Path) -> tuple[Engine, ScriptedBackend]:
    """An engine that answered two queries (one after an out-of-memory fallback, one from
    cache), loaded a model and unloaded it by hand."""
    ollama = ScriptedBackend(
        "ollama", ("tinyllama", "phi3:mini"), sizes_mb={"tinyllama": 900.0, "phi3:mini": 3900.0}
    )
    ollama.scripts["phi3:mini"] = Script(error=OUT_OF_MEMORY)
    engine = await started([ollama], sampler=ChangingSampler(16, 12), history=history)
    first = await collect(engine, Query("Explain how vaccines train the immune system."))
    second = await collect(engine, Query("hi"))
    assert isinstance(first[-1], Done) and first[-1].fallbacks == ("phi3:mini",)
    assert isinstance(second[-1], Done) and second[-1].cache_hit is True
    assert (await engine.preload("phi3:mini")).ok
    assert (await engine.unload("phi3:mini")).ok
    return engine, ollama


async def test_a_scrape_says_what_stats_json_says(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    engine, _ = await engine_that_did_things(history)
    try:
        snapshot = take_snapshot(engine, counters=HistoryCounters(history))
        stats = engine.stats()
        recommended = engine.recommend_now(Complexity.MEDIUM)
    finally:
        await engine.aclose()
    got = scrape(snapshot)
    metrics = section(stats, "metrics")
    totals = metrics["totals"]

    assert got.value("nemo_tui_queries_total") == metrics["queries"] == 2
    assert got.value("nemo_tui_cache_hits_total") == totals["cache_hits"] == 1
    assert got.value("nemo_tui_cache_misses_total") == totals["cache_misses"] == 1
    assert got.value("nemo_tui_truncations_total") == totals["truncated"]
    assert got.value("nemo_tui_server_truncations_total") == totals["server_truncated"]
    assert got.value("nemo_tui_query_failures_total") == totals["failed"] == 0
    fallbacks = got.by("nemo_tui_fallbacks_total", "reason")
    assert {r: n for r, n in fallbacks.items() if n} == totals["fallbacks_by_reason"]
    assert totals["fallbacks_by_reason"] == {"out_of_memory": 1}
    assert set(fallbacks) == set(FALLBACK_REASONS)
    evictions = got.by("nemo_tui_evictions_total", "reason")
    assert metrics["evictions"]["by_reason"] == {"manual": {"count": 1, "freed_mb": 3900.0}}
    assert {r: n for r, n in evictions.items() if n} == {"manual": 1}
    assert set(evictions) == set(EVICTION_REASONS)
    freed = got.value("nemo_tui_eviction_freed_bytes_total", reason="manual")
    assert freed == 3900 * MB
    assert got.value("nemo_tui_analyses_total") == metrics["analyses"]["run"]
    assert got.value("nemo_tui_query_duration_seconds_count") == 2
    assert got.value("nemo_tui_query_first_token_seconds_count") == 2
    assert got.value("nemo_tui_query_duration_seconds_bucket", le="+Inf") == 2

    system = section(stats, "system")
    for name, key in (
        ("memory_total_bytes", "total_mb"),
        ("memory_available_bytes", "available_mb"),
        ("memory_used_bytes", "used_mb"),
        ("swap_used_bytes", "swap_used_mb"),
    ):
        exported = got.value(f"nemo_tui_host_{name}", host="local")
        assert exported == pytest.approx(system[key] * MB, abs=MB_ROUNDING), name
    levels = got.by("nemo_tui_host_memory_pressure", "level")
    assert levels == {"normal": 1.0, "elevated": 0.0, "critical": 0.0}
    assert system["pressure"] == "normal"

    resident = section(stats, "models", "resident")
    assert sorted(got.series("nemo_tui_model_loaded"), key=lambda s: s["model"]) == sorted(
        ({"host": "local", "model": m["name"], "backend": m["backend"]} for m in resident),
        key=lambda s: s["model"],
    )
    for model in resident:
        labels = {"host": "local", "model": model["name"], "backend": model["backend"]}
        assert got.value("nemo_tui_model_size_bytes", **labels) == model["size_mb"] * MB
        assert got.value("nemo_tui_model_expires_timestamp_seconds", **labels) is None
    assert [m["name"] for m in resident] == ["tinyllama"]

    [medium] = [
        s for s in got.series("nemo_tui_recommendation_info") if s["complexity"] == "medium"
    ]
    assert (medium["model"], medium["backend"], medium["tier"], medium["host"]) == (
        recommended.model,
        recommended.backend,
        recommended.tier.value,
        "local",
    )
    assert got.value("nemo_tui_recommendation_fits", complexity="medium") == recommended.fits
    assert got.by("nemo_tui_backend_up", "backend") == {"ollama": 1.0}


async def test_the_types_and_units_are_what_prometheus_expects(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    engine, _ = await engine_that_did_things(history)
    try:
        got = scrape(take_snapshot(engine, counters=HistoryCounters(history)))
    finally:
        await engine.aclose()
    for name, kind in got.types.items():
        assert name.startswith("nemo_tui_"), name
        if kind == "counter":
            assert f"{name}_total" in got.samples, name
        # Base units only: bytes and seconds, never the MB and ms nemo-tui shows people.
        assert not {"mb", "ms", "percent"} & set(name.split("_")), name
    assert got.types["nemo_tui_query_first_token_seconds"] == "histogram"
    assert got.types["nemo_tui_query_duration_seconds"] == "histogram"
    assert got.types["nemo_tui_evictions"] == "counter"
    assert got.types["nemo_tui_model_loaded"] == "gauge"
    buckets = got.by("nemo_tui_query_duration_seconds_bucket", "le")
    counts = list(buckets.values())
    assert counts == sorted(counts), "buckets are cumulative"


async def test_without_a_history_no_counters_are_exported() -> None:
    engine = await started([ScriptedBackend()])
    try:
        got = scrape(take_snapshot(engine))
    finally:
        await engine.aclose()
    assert got.value("nemo_tui_host_up", host="local") == 1.0
    assert not [name for name in got.samples if name.endswith("_total")]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OUT_OF_MEMORY, "out_of_memory"),
        (BackendUnavailable("connection refused", backend="ollama"), "unreachable"),
        (FirstTokenTimeout("no answer", backend="ollama"), "no_first_token"),
        (ModelNotFound("model 'x' not found", backend="ollama"), "model_not_found"),
        (RateLimited("slow down", backend="gemini"), "busy"),
        (StreamBroken("closed", backend="ollama"), "error"),
        (BackendError("500", backend="ollama"), "error"),
        (NemoError("x is not in the catalog"), "error"),
    ],
)
def test_every_failure_falls_in_a_known_reason(error: NemoError, reason: str) -> None:
    assert fallback_reason(error) == reason
    assert reason in FALLBACK_REASONS


# -- the counters follow the history file --------------------------------------------------------


def query_line(**changes: Any) -> bytes:
    return json.dumps(dataclasses.asdict(query_record(**changes))).encode() + b"\n"


def old_query_line(**changes: Any) -> bytes:
    """A query as an earlier version wrote it: no `fallback_reasons`."""
    fields = dataclasses.asdict(query_record(**changes))
    del fields["fallback_reasons"]
    return json.dumps(fields).encode() + b"\n"


def test_old_history_lines_still_count_and_new_kinds_load(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(old_query_line(fallbacks=1, at=1.0) + b'{"kind": "future", "at": 2.0}\n')
    append_history(path, EvictionRecord("tinyllama", "ollama", "make_room", 900.0, 3.0))
    append_history(path, AnalysisRecord(ok=False, repaired=False, peak_rss_mb=None, at=4.0))
    append_history(path, query_record(fallbacks=1, fallback_reasons=("busy",), at=5.0))

    metrics = Metrics()
    assert load_history(path, metrics) == 4
    counters = HistoryCounters(path)
    assert counters.refresh() == 4

    for counted in (metrics, counters.metrics):
        assert counted.queries == 2
        assert dict(counted.totals.fallbacks_by_reason) == {"busy": 1}
        assert dict(counted.evictions.by_reason) == {"make_room": 1}
        assert counted.evictions.freed_mb_by_reason == {"make_room": 900.0}
        assert (counted.analyses.run, counted.analyses.failed) == (1, 1)


def test_lines_other_processes_append_count_once_each(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    counters = HistoryCounters(path)
    assert counters.refresh() == 0  # no history yet
    path.write_bytes(query_line(at=1.0) + query_line(at=2.0, cache_hit=False))
    assert counters.refresh() == 2
    assert counters.refresh() == 0

    with path.open("ab") as out:  # another process, halfway through writing a line
        line = query_line(at=3.0, truncated=True)
        out.write(line[:20])
        out.flush()
        assert counters.refresh() == 0
        out.write(line[20:])
    assert counters.refresh() == 1

    totals = counters.metrics.totals
    assert (totals.queries, totals.cache_hits, totals.cache_misses, totals.truncated) == (
        3,
        2,
        1,
        1,
    )
    assert counters.duration.count == 3


def test_a_trimmed_history_never_makes_a_counter_fall(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"".join(query_line(at=float(i)) for i in range(1, 11)))
    counters = HistoryCounters(path)
    assert counters.refresh() == 10
    # Another process trims the file to its newest lines, then a query is added: the file is
    # replaced, and only the record newer than those counted is new.
    trimmed = tmp_path / "trimmed"
    trimmed.write_bytes(b"".join(query_line(at=float(i)) for i in range(8, 11)))
    os.replace(trimmed, path)
    append_history(path, query_record(at=11.0))

    assert counters.refresh() == 1
    assert counters.metrics.queries == 11
    append_history(path, query_record(at=12.0))
    assert counters.refresh() == 1
    assert counters.metrics.queries == 12


def test_the_first_read_counts_what_stats_json_counts(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"".join(query_line(at=float(i)) for i in range(1, 8)) + b"not json\n")
    stats = Metrics(capacity=5)
    load_history(path, stats)
    counters = HistoryCounters(path, capacity=5)
    counters.refresh()
    assert counters.metrics.queries == stats.queries == 4


# -- other hosts --------------------------------------------------------------------------------


class Monitor:
    """The host monitor's last statuses, as a test sets them."""

    def __init__(self, statuses: Sequence[HostStatus]) -> None:
        self._statuses = list(statuses)

    def statuses(self) -> list[HostStatus]:
        return self._statuses


EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)
GPU_BOX = HostStatus(
    name="gpu-box",
    local=False,
    up=True,
    reason=None,
    memory=HostMemory(ram_source="node_exporter", total_mb=65536.0, available_mb=8192.0),
    pressure=None,
    models=(HostModel("llama3.1:70b", "ollama", 42000.0, 24000.0, EXPIRES),),
    latency_ms=30.0,
    cache_limit=0.9,
    checked_at=2.0,
)
DOWN = HostStatus("old-box", False, False, "refused", None, None, (), None, 0.8, 3.0, 9.0)


async def test_other_hosts_are_labelled_by_name_and_this_one_comes_from_the_engine() -> None:
    engine = await started([ScriptedBackend()], sampler=ChangingSampler(16, 12))
    # The monitor's own view of this machine is older and smaller: only its servers' gauges
    # are taken from it.
    seen = local_status(engine.config, SimulatedSampler(1024, 512).sample(), checked_at=1.0)
    assert seen.memory is not None
    seen = dataclasses.replace(
        seen, memory=dataclasses.replace(seen.memory, kv_cache_percent=40.0), latency_ms=12.0
    )
    try:
        got = scrape(take_snapshot(engine, hosts=Monitor([seen, GPU_BOX, DOWN])))
    finally:
        await engine.aclose()
    assert got.by("nemo_tui_host_up", "host") == {"local": 1.0, "gpu-box": 1.0, "old-box": 0.0}
    assert got.by("nemo_tui_host_memory_total_bytes", "host") == {
        "local": 16 * 1024 * MB,
        "gpu-box": 65536 * MB,
    }
    assert got.value("nemo_tui_host_kv_cache_usage_ratio", host="local") == 0.4
    assert got.value("nemo_tui_host_latency_seconds", host="local") == pytest.approx(0.012)
    assert got.by("nemo_tui_host_cache_limit_ratio", "host")["gpu-box"] == 0.9
    labels = {"host": "gpu-box", "model": "llama3.1:70b", "backend": "ollama"}
    assert got.value("nemo_tui_model_loaded", **labels) == 1.0
    assert got.value("nemo_tui_model_size_bytes", **labels) == 42000 * MB
    assert got.value("nemo_tui_model_vram_bytes", **labels) == 24000 * MB
    assert got.value("nemo_tui_model_expires_timestamp_seconds", **labels) == EXPIRES.timestamp()
    assert "old-box" not in got.by("nemo_tui_host_memory_pressure", "host")
    assert got.value("nemo_tui_host_checked_timestamp_seconds", host="old-box") == 3.0


# -- the endpoint and the text file --------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path) -> Path:
    return tmp_path / "history.jsonl"


async def get(url: str) -> Scrape:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.mark.integration
async def test_the_endpoint_counts_a_query_asked_after_it_started(history: Path) -> None:
    engine = await started([ScriptedBackend()], history=history)
    endpoint = serve(engine, None, "127.0.0.1", 0, history=history)
    try:
        before = await get(endpoint.url)
        await collect(engine, Query("hi"))
        after = await get(endpoint.url)
        stats = engine.stats()
    finally:
        endpoint.close()
        await engine.aclose()
    assert before.value("nemo_tui_queries_total") == 0
    assert after.value("nemo_tui_queries_total") == section(stats, "metrics", "queries") == 1
    assert after.series("nemo_tui_model_loaded") == [
        {"host": "local", "model": "smollm2:135m", "backend": "embedded"}
    ]
    if sys.platform == "linux":  # where prometheus_client reads its process's figures
        assert after.value("process_start_time_seconds") is not None


@pytest.mark.integration
async def test_a_busy_event_loop_gets_the_last_snapshot_served(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve_module, "SNAPSHOT_TIMEOUT_S", 0.2)
    engine = await started([ScriptedBackend()], history=history)
    endpoint = serve(engine, None, "127.0.0.1", 0, history=history)
    answers: list[httpx.Response] = []

    def scrape_from_a_thread() -> None:
        answers.append(httpx.get(endpoint.url, timeout=10))

    try:
        first = await get(endpoint.url)
        scraper = threading.Thread(target=scrape_from_a_thread)
        scraper.start()
        time.sleep(0.6)  # the loop is stuck: the scrape cannot get a fresh snapshot
        await asyncio.to_thread(scraper.join, 10)
    finally:
        endpoint.close()
        await engine.aclose()
    [answer] = answers
    assert answer.status_code == 200
    served = parse(answer.text)
    taken = "nemo_tui_snapshot_timestamp_seconds"
    assert served.value(taken) == first.value(taken)


@pytest.mark.integration
async def test_a_port_in_use_is_an_error_naming_it(history: Path) -> None:
    engine = await started([ScriptedBackend()])
    endpoint = serve(engine, None, "127.0.0.1", 0, history=None)
    try:
        with pytest.raises(NemoError) as caught:
            serve(engine, None, "127.0.0.1", endpoint.port, history=history)
    finally:
        endpoint.close()
        await engine.aclose()
    assert f"127.0.0.1:{endpoint.port}" in caught.value.one_line()
    assert "in use" in caught.value.one_line()


async def test_the_text_file_is_replaced_whole(tmp_path: Path, history: Path) -> None:
    path = tmp_path / "nemo_tui.prom"
    path.write_text("old contents\n")
    engine = await started([ScriptedBackend()], history=history)
    try:
        await collect(engine, Query("hi"))
        write_textfile(path, take_snapshot(engine, counters=HistoryCounters(history)))
    finally:
        await engine.aclose()
    assert parse(path.read_text()).value("nemo_tui_queries_total") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl", "nemo_tui.prom"]


async def test_a_text_file_that_cannot_be_written_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "nemo_tui.prom"
    engine = await started([ScriptedBackend()])
    try:
        with pytest.raises(NemoError) as caught:
            write_textfile(path, take_snapshot(engine))
    finally:
        await engine.aclose()
    assert str(path) in caught.value.one_line()
