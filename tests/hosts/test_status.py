"""A host's status as JSON: the same memory keys as `status --json`, the pressure rules of this
machine, and what is unknown left null."""

from __future__ import annotations

from datetime import UTC, datetime

from nemo_tui.config import Config, parse_config
from nemo_tui.core.memory.profile import (
    GpuMemory,
    PressureLevel,
    SimulatedSampler,
    pressure_level,
)
from nemo_tui.core.reports.memory_json import memory_json
from nemo_tui.hosts.status import HostMemory, HostModel, host_pressure, local_status

HOST_KEYS = {"name", "up", "reason", "memory", "models", "local", "latency_ms", "cache_limit"}


def test_the_local_host_reports_the_memory_status_reports() -> None:
    sampler = SimulatedSampler(8192, 3000, gpu_vram_mb=6144)
    profile = sampler.sample()
    config = Config()
    status = local_status(config, profile, checked_at=profile.timestamp).to_json()
    assert set(status) == HOST_KEYS
    level = pressure_level(profile, config.memory_thresholds.pressure_threshold)
    memory = status["memory"]
    assert isinstance(memory, dict)
    expected = memory_json(profile, level)
    assert {key: memory[key] for key in expected} == expected
    assert memory["source"] == "simulated"
    assert memory["models_mb"] is None
    assert (status["name"], status["up"], status["local"], status["reason"]) == (
        "local",
        True,
        True,
        None,
    )


def test_the_local_host_takes_its_configured_name() -> None:
    config = parse_config("local_host:\n  name: workstation\n")
    profile = SimulatedSampler(4096).sample()
    assert local_status(config, profile, checked_at=0.0).name == "workstation"


def test_a_host_known_only_by_its_servers_has_no_pressure_and_null_figures() -> None:
    memory = HostMemory(ram_source=None, server_sources=("ollama /api/ps",), models_mb=4812.5)
    assert host_pressure(memory, 0.75) is None
    shown = memory.to_json(None)
    assert shown["total_mb"] is None and shown["available_mb"] is None
    assert shown["pressure"] is None
    assert shown["models_mb"] == 4812.5
    assert shown["source"] == "ollama /api/ps"


def test_another_hosts_pressure_follows_the_local_rules() -> None:
    def pressure(available_mb: float, psi_full: float | None = None) -> PressureLevel | None:
        memory = HostMemory(
            ram_source="node_exporter",
            total_mb=16384,
            available_mb=available_mb,
            psi_full_avg10=psi_full,
        )
        return host_pressure(memory, 0.75)

    assert pressure(8192) is PressureLevel.NORMAL
    assert pressure(3000) is PressureLevel.ELEVATED  # 82 % used, above 75 %
    assert pressure(1000) is PressureLevel.CRITICAL  # 94 % used, above 90 %
    assert pressure(8192, psi_full=12.0) is PressureLevel.CRITICAL


def test_a_model_says_when_it_will_be_unloaded() -> None:
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    model = HostModel("llama3.1:8b", "ollama", 6346.2, 6346.2, when)
    assert model.to_json() == {
        "name": "llama3.1:8b",
        "server": "ollama",
        "size_mb": 6346.2,
        "vram_mb": 6346.2,
        "expires_at": "2026-03-01T12:30:00+00:00",
    }


def test_gpus_are_listed_as_status_lists_them() -> None:
    gpu = GpuMemory(0, "RTX 4090", 24564.0, 1200.0)
    memory = HostMemory(ram_source="os", total_mb=65536, available_mb=60000, gpus=(gpu,))
    assert memory.to_json(PressureLevel.NORMAL)["gpus"] == [
        {"index": 0, "name": "RTX 4090", "total_mb": 24564.0, "used_mb": 1200.0, "simulated": False}
    ]
