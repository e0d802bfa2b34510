"""HostMonitor against real servers on loopback: a real node_exporter for this machine,
node_exporter-format pages and fake Ollamas for the other hosts, and the pages llama-server,
vLLM and llama-swap serve."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from nemo_tui.config import Config, parse_config
from nemo_tui.core.memory.profile import MemorySampler, PressureLevel, SimulatedSampler
from nemo_tui.hosts.monitor import HostMonitor
from nemo_tui.hosts.status import HostMemory, HostStatus
from tests.fakes import FakeModel

from .servers import GIB, FixtureServer, closed_url, meminfo_kb, node_page, ollama_holding

MIB = 2**20
TINY = FakeModel("tinyllama", weights_mb=608.0)
PHI = FakeModel("phi3:mini", weights_mb=2100.0, context_length=4096)


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lab(
    *hosts: dict[str, Any],
    local_host: dict[str, Any] | None = None,
    local_ollama: str | None = None,
) -> Config:
    """A config with these hosts; this machine's Ollama only when given, no embedded model."""
    ollama: dict[str, Any] = {"enabled": local_ollama is not None}
    if local_ollama is not None:
        ollama["url"] = local_ollama
    data: dict[str, Any] = {
        "backends": {"ollama": ollama, "embedded": {"enabled": False}},
        "hosts": list(hosts),
    }
    if local_host is not None:
        data["local_host"] = local_host
    return parse_config(yaml.safe_dump(data))


def simulated() -> MemorySampler:
    """This machine as an 8 GB one with 6 GB free."""
    return SimulatedSampler(8192, 6144)


async def refresh(config: Config, sampler: MemorySampler | None = None) -> list[HostStatus]:
    monitor = HostMonitor(config, sampler or simulated())
    try:
        return await monitor.refresh()
    finally:
        await monitor.aclose()


def memory_of(status: HostStatus) -> HostMemory:
    assert status.memory is not None, status
    return status.memory


def loaded_mb(model: FakeModel, num_ctx: int = 2048) -> float:
    """What `/api/ps` reports a model loaded with `num_ctx` takes, in MB."""
    return int(model.memory_mb(num_ctx) * MIB) / MIB


@pytest.mark.integration
async def test_a_hosts_memory_comes_from_its_exporter_and_its_models_from_its_ollama(
    pages: FixtureServer,
) -> None:
    pages.serve(
        "/metrics",
        node_page(total=16 * GIB, available=9 * GIB, swap_total=2 * GIB, swap_free=1.5 * GIB),
    )
    with ollama_holding(TINY, PHI) as ollama:
        config = lab(
            {
                "name": "gpu-box",
                "ollama_url": ollama.url,
                "node_exporter_url": f"{pages.url}/metrics",
                "cache_limit": 0.6,
            }
        )
        monitor = HostMonitor(config, simulated())
        try:
            assert monitor.statuses() == []
            statuses = await monitor.refresh()
            assert monitor.statuses() == statuses
        finally:
            await monitor.aclose()
    assert [(s.name, s.local) for s in statuses] == [("local", True), ("gpu-box", False)]
    host = statuses[1]
    assert (host.up, host.reason, host.cache_limit) == (True, None, 0.6)
    memory = memory_of(host)
    assert memory.source == "node_exporter, ollama /api/ps"
    assert (memory.total_mb, memory.available_mb, memory.used_mb) == (16384, 9216, 7168)
    assert (memory.swap_total_mb, memory.swap_used_mb) == (2048, 512)
    assert host.pressure is PressureLevel.NORMAL  # 44 % used
    assert {m.name: m.size_mb for m in host.models} == {
        "tinyllama": loaded_mb(TINY),
        "phi3:mini": loaded_mb(PHI),
    }
    assert all(m.server == "ollama" and m.expires_at is not None for m in host.models)
    assert memory.models_mb == pytest.approx(loaded_mb(TINY) + loaded_mb(PHI))
    assert host.latency_ms is not None and host.latency_ms > 0


@pytest.mark.integration
async def test_without_an_exporter_a_host_is_known_by_what_its_servers_report() -> None:
    with ollama_holding(PHI) as ollama:
        host = (await refresh(lab({"name": "cpu-box", "ollama_url": ollama.url})))[1]
    memory = memory_of(host)
    assert host.up and memory.source == "ollama /api/ps"
    assert memory.models_mb == loaded_mb(PHI)
    assert (memory.total_mb, memory.available_mb) == (None, None)
    assert host.pressure is None


@pytest.mark.integration
async def test_another_hosts_psi_is_the_stall_share_between_two_scrapes(
    pages: FixtureServer,
) -> None:
    pages.serve("/metrics", node_page(total=16 * GIB, available=12 * GIB, waiting_s=100.0))
    clock = Clock(5000.0)
    config = lab({"name": "gpu-box", "node_exporter_url": f"{pages.url}/metrics"})
    monitor = HostMonitor(config, simulated(), clock=clock)
    try:
        first = (await monitor.refresh())[1]
        # Ten seconds on, tasks had waited 2.5 s more for memory, and all of them 0.6 s.
        pages.serve(
            "/metrics",
            node_page(total=16 * GIB, available=12 * GIB, waiting_s=102.5, stalled_s=0.6),
        )
        clock.now += 10
        second = (await monitor.refresh())[1]
    finally:
        await monitor.aclose()
    assert memory_of(first).psi_some_avg10 is None
    assert first.pressure is PressureLevel.NORMAL
    assert memory_of(second).psi_some_avg10 == pytest.approx(25.0)
    assert memory_of(second).psi_full_avg10 == pytest.approx(6.0)
    # 25 % of usage alone would be normal; a full stall above 5 % is critical, as it is here.
    assert second.pressure is PressureLevel.CRITICAL


@pytest.mark.integration
async def test_a_real_node_exporter_reads_this_machines_memory(real_node_exporter: str) -> None:
    config = lab({"name": "this-box", "node_exporter_url": real_node_exporter})
    clock = Clock(time.time())
    monitor = HostMonitor(config, simulated(), clock=clock)
    try:
        first = (await monitor.refresh())[1]
        clock.now += 10
        second = (await monitor.refresh())[1]
    finally:
        await monitor.aclose()
    assert (first.up, first.reason) == (True, None)
    memory = memory_of(first)
    assert memory.source == "node_exporter"
    assert memory.total_mb == meminfo_kb("MemTotal") / 1024
    assert memory.available_mb is not None and 0 < memory.available_mb <= memory.total_mb
    if Path("/proc/pressure/memory").exists():
        some = memory_of(second).psi_some_avg10
        assert some is not None and 0 <= some <= 100


async def test_an_unreachable_host_is_down_with_what_failed_and_where() -> None:
    url = closed_url()
    host = (await refresh(lab({"name": "lab-cpu", "ollama_url": url, "openai_url": f"{url}/v1"})))[
        1
    ]
    assert not host.up
    assert host.reason == (
        f"connection refused at {url}/api/ps; connection refused at {url}/v1/models"
    )
    assert (host.memory, host.models, host.pressure, host.latency_ms) == (None, (), None, None)


@pytest.mark.integration
async def test_a_silent_host_costs_the_timeout_and_never_holds_up_the_others(
    pages: FixtureServer, silent_url: str
) -> None:
    pages.serve("/metrics", node_page(total=64 * GIB, available=40 * GIB))
    config = lab(
        {"name": "hung", "ollama_url": silent_url},
        {"name": "big-box", "node_exporter_url": f"{pages.url}/metrics"},
    )
    monitor = HostMonitor(config, simulated(), timeout_s=0.5)
    started = time.perf_counter()
    try:
        _, hung, big = await monitor.refresh()
    finally:
        await monitor.aclose()
    # The timeout, plus slack for a busy machine; the silent server's own read timeout is 10 s.
    assert time.perf_counter() - started < 0.5 + 2.0
    assert not hung.up and hung.reason == f"no answer within 500 ms at {silent_url}/api/ps"
    assert big.up and memory_of(big).total_mb == 65536


@pytest.mark.integration
async def test_a_host_that_goes_down_is_asked_again_after_a_doubling_delay(
    pages: FixtureServer,
) -> None:
    pages.serve("/metrics", "exporter crashed", status=503)
    clock = Clock(1000.0)
    config = lab({"name": "gpu-box", "node_exporter_url": f"{pages.url}/metrics"})
    monitor = HostMonitor(config, simulated(), clock=clock)

    async def at(now: float) -> HostStatus:
        clock.now = now
        return (await monitor.refresh())[1]

    try:
        down = await at(1000.0)
        assert not down.up and down.reason == f"HTTP 503 at {pages.url}/metrics"
        assert down.retry_at == 1002.0
        # Until then the host is not asked; its last status stands.
        assert await at(1001.9) == down
        assert pages.hits["/metrics"] == 1
        delays = []
        clock.now = 1002.0
        for _ in range(7):
            retried = await at(clock.now)
            assert retried.retry_at is not None and not retried.up
            delays.append(retried.retry_at - retried.checked_at)
            clock.now = retried.retry_at
        assert delays == [4, 8, 16, 32, 60, 60, 60]
        assert pages.hits["/metrics"] == 8
        pages.serve("/metrics", node_page(total=16 * GIB, available=8 * GIB))
        back = await at(clock.now)
        assert (back.up, back.reason, back.retry_at) == (True, None, None)
        pages.serve("/metrics", "exporter crashed", status=503)
        again = await at(clock.now + 1)
        assert again.retry_at == clock.now + 2  # the delay starts over once it answered
    finally:
        await monitor.aclose()


@pytest.mark.integration
async def test_the_local_host_is_the_samplers_machine_with_its_own_servers(
    pages: FixtureServer,
) -> None:
    # A local exporter is only checked: the figures are the sampler's (here a simulated one).
    pages.serve("/metrics", node_page(total=512 * GIB, available=1 * GIB))
    with ollama_holding(TINY) as ollama:
        config = lab(
            local_host={"name": "workstation", "node_exporter_url": f"{pages.url}/metrics"},
            local_ollama=ollama.url,
        )
        local = (await refresh(config))[0]
    assert (local.name, local.local, local.up, local.reason) == ("workstation", True, True, None)
    assert pages.hits["/metrics"] == 1
    memory = memory_of(local)
    assert memory.source == "simulated, ollama /api/ps"
    assert memory.total_mb == 8192
    # The simulated machine holds what its Ollama holds.
    assert memory.available_mb == pytest.approx(6144 - loaded_mb(TINY))
    assert [m.name for m in local.models] == ["tinyllama"]


async def test_a_local_exporter_that_does_not_answer_is_named_and_the_machine_stays_up() -> None:
    url = closed_url()
    local = (await refresh(lab(local_host={"node_exporter_url": f"{url}/metrics"})))[0]
    assert local.up and local.reason == f"connection refused at {url}/metrics"
    assert memory_of(local).total_mb == 8192
    assert memory_of(local).models_mb is None  # no model server to ask


def openai_host(pages: FixtureServer) -> Config:
    return lab({"name": "gpu-box", "openai_url": f"{pages.url}/v1"})


def serve_models(pages: FixtureServer, entries: Sequence[dict[str, Any]]) -> None:
    pages.serve("/health", {"status": "ok"})
    pages.serve("/v1/models", {"object": "list", "data": list(entries)})


@pytest.mark.integration
async def test_a_llama_server_reports_its_model_and_its_busy_slots(pages: FixtureServer) -> None:
    size = 4_683_071_488
    serve_models(
        pages,
        [{"id": "qwen2.5-7b-q4_k_m.gguf", "object": "model", "meta": {"size": size}}],
    )
    pages.serve(
        "/props",
        {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 2, "is_sleeping": False},
    )
    pages.serve(
        "/slots",
        [
            {"id": 0, "n_ctx": 4096, "is_processing": True},
            {"id": 1, "n_ctx": 4096, "is_processing": False},
        ],
    )
    host = (await refresh(openai_host(pages)))[1]
    assert host.up and host.reason is None
    assert [(m.name, m.server, m.size_mb) for m in host.models] == [
        ("qwen2.5-7b-q4_k_m.gguf", "openai", size / MIB)
    ]
    memory = memory_of(host)
    assert memory.source == "openai /v1/models, llama-server /slots"
    assert (memory.models_mb, memory.requests_running) == (size / MIB, 1)


@pytest.mark.integration
async def test_a_vllm_reports_its_kv_cache_and_running_requests(pages: FixtureServer) -> None:
    model = "meta-llama/Llama-3.1-8B-Instruct"
    serve_models(pages, [{"id": model, "object": "model", "max_model_len": 32768}])
    pages.serve(
        "/metrics",
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="{model}"}} 3.0\n'
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{engine="0",model_name="{model}"}} 1.0\n'
        "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        f'vllm:gpu_cache_usage_perc{{engine="0",model_name="{model}"}} 0.42\n'
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes 2.1e+09\n",
    )
    host = (await refresh(openai_host(pages)))[1]
    assert [(m.name, m.size_mb) for m in host.models] == [(model, None)]
    memory = memory_of(host)
    assert memory.source == "openai /v1/models, vllm /metrics"
    assert memory.kv_cache_percent == pytest.approx(42.0)
    assert memory.requests_running == 3
    assert memory.models_mb is None  # vLLM does not say what its model takes


@pytest.mark.integration
async def test_llama_swap_lists_what_it_started_not_everything_it_could(
    pages: FixtureServer,
) -> None:
    serve_models(pages, [{"id": name, "object": "model"} for name in ("coder", "llama-8b", "qwen")])
    pages.serve(
        "/running",
        {"running": [{"model": "coder", "state": "ready"}, {"model": "qwen", "state": "starting"}]},
    )
    host = (await refresh(openai_host(pages)))[1]
    assert [m.name for m in host.models] == ["coder"]
    assert memory_of(host).source == "llama-swap /running"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("statuses", "loaded"),
    [
        ({"qwen": "loaded", "gemma": "unloaded", "phi": "sleeping"}, ["qwen"]),
        # One model listed is the loaded one for a plain llama-server, but not for a router.
        ({"gemma": "unloaded"}, []),
    ],
    ids=["several", "one-unloaded"],
)
async def test_a_llama_server_router_lists_the_models_it_has_loaded(
    pages: FixtureServer, statuses: dict[str, str], loaded: list[str]
) -> None:
    serve_models(
        pages,
        [
            {"id": name, "object": "model", "status": {"value": value}}
            for name, value in statuses.items()
        ],
    )
    host = (await refresh(openai_host(pages)))[1]
    assert host.up
    assert [m.name for m in host.models] == loaded
    assert memory_of(host).source == "llama-server /v1/models"
