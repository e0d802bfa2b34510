"""What is known about each host of the lab: up or down, its memory, the models loaded there.

`HostStatus` is the one value the CLI (`nemo-tui hosts`, `status --json`), the dashboard and the
metrics build on; `HostMonitor` (in `nemo_tui.hosts.monitor`) produces them. This module does no
I/O and imports nothing heavy, so `status` can describe the local host without the network.

A host's memory says where its figures came from (`HostMemory.source`): the local host's from
the OS (or `--simulate-memory`), another host's RAM figures from its node_exporter, and the
models' memory and the servers' own gauges from the servers that reported them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nemo_tui.config import Config
from nemo_tui.core.memory.profile import GpuMemory, MemoryProfile, PressureLevel, pressure_level
from nemo_tui.core.reports.memory_json import gpus_json, mb_json

SOURCE_OS = "os"
"""The local host's figures, read from the kernel."""
SOURCE_SIMULATED = "simulated"
"""The local host's figures, pretended by `--simulate-memory`."""
SOURCE_NODE_EXPORTER = "node_exporter"
"""Another host's figures, from its Prometheus node_exporter."""


@dataclass(frozen=True, slots=True)
class HostModel:
    """A model loaded on a host, as its server reports it."""

    name: str
    server: str
    """The server holding it: `ollama` or `openai` (an OpenAI-compatible server)."""
    size_mb: float | None
    """Memory it takes, RAM and VRAM together; None when the server does not say."""
    vram_mb: float | None
    """The part of it in GPU memory; None when the server does not say."""
    expires_at: datetime | None
    """When the server will unload it; None means never or not said."""

    def to_json(self) -> dict[str, object]:
        """The model as JSON: `name`, `server`, `size_mb`, `vram_mb`, `expires_at` (ISO 8601)."""
        return {
            "name": self.name,
            "server": self.server,
            "size_mb": mb_json(self.size_mb),
            "vram_mb": mb_json(self.vram_mb),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class HostMemory:
    """A host's memory: the figures of `status --json`'s `memory`, None where unknown.

    A host read through its node_exporter has the RAM, swap, page cache and PSI figures; one
    without has only what its model servers report (`models_mb`, and a vLLM's or llama-server's
    gauges). The fields that describe nemo-tui's own process or container (`process_rss_mb`,
    `cgroup_*`) are known for the local host only.
    """

    ram_source: str | None
    """Where the RAM figures (total to PSI) came from: `os`, `simulated` or `node_exporter`;
    None when no RAM figure is known."""
    server_sources: tuple[str, ...] = ()
    """The server endpoints `models_mb`, `kv_cache_percent` and `requests_running` came from,
    such as `ollama /api/ps`, `llama-server /slots`, `vllm /metrics`, `llama-swap /running`."""
    total_mb: float | None = None
    available_mb: float | None = None
    used_mb: float | None = None
    percent: float | None = None
    swap_total_mb: float | None = None
    swap_used_mb: float | None = None
    psi_some_avg10: float | None = None
    """For another host: the share of time some task stalled between its last two scrapes."""
    psi_full_avg10: float | None = None
    cgroup_limit_mb: float | None = None
    cgroup_used_mb: float | None = None
    process_rss_mb: float | None = None
    page_cache_mb: float | None = None
    simulated: bool = False
    gpus: tuple[GpuMemory, ...] = ()
    models_mb: float | None = None
    """What the loaded models take together (0 when none is loaded); None when no model
    server answered, or one did not say how much a model takes (see `models_memory`)."""
    kv_cache_percent: float | None = None
    """How full a vLLM's (or llama-server's) KV cache is, 0..100, from its `/metrics`."""
    requests_running: int | None = None
    """Requests the OpenAI-compatible server is working on (llama-server slots, vLLM)."""

    @property
    def source(self) -> str:
        """Where the figures came from, RAM first: e.g. `node_exporter, ollama /api/ps`."""
        sources = [self.ram_source] if self.ram_source else []
        return ", ".join([*sources, *self.server_sources])

    @classmethod
    def from_profile(
        cls,
        profile: MemoryProfile,
        *,
        models_mb: float | None = None,
        server_sources: tuple[str, ...] = (),
        kv_cache_percent: float | None = None,
        requests_running: int | None = None,
    ) -> HostMemory:
        """The local host's memory from a sample of this machine (or the simulated one).

        Args:
            profile: The sample; its figures are kept as they are.
            models_mb: What the local servers report their loaded models take.
            server_sources: The endpoints that reported it.
            kv_cache_percent: A local vLLM's KV-cache fill.
            requests_running: Requests a local OpenAI-compatible server is working on.
        """
        return cls(
            ram_source=SOURCE_SIMULATED if profile.simulated else SOURCE_OS,
            server_sources=server_sources,
            total_mb=profile.total_mb,
            available_mb=profile.available_mb,
            used_mb=profile.used_mb,
            percent=profile.percent,
            swap_total_mb=profile.swap_total_mb,
            swap_used_mb=profile.swap_used_mb,
            psi_some_avg10=profile.psi_some_avg10,
            psi_full_avg10=profile.psi_full_avg10,
            cgroup_limit_mb=profile.cgroup_limit_mb,
            cgroup_used_mb=profile.cgroup_used_mb,
            process_rss_mb=profile.process_rss_mb,
            page_cache_mb=profile.page_cache_mb,
            simulated=profile.simulated,
            gpus=profile.gpus,
            models_mb=models_mb,
            kv_cache_percent=kv_cache_percent,
            requests_running=requests_running,
        )

    def to_profile(self, timestamp: float = 0.0) -> MemoryProfile | None:
        """A `MemoryProfile` of this host, for the pressure rules and the recommender.

        Args:
            timestamp: When the figures were read.

        Returns:
            The profile, with the figures that are unknown set to 0 (swap, page cache) or None
            (PSI, cgroup); None when total or available memory is unknown.
        """
        if self.total_mb is None or self.available_mb is None:
            return None
        total, available = self.total_mb, self.available_mb
        return MemoryProfile(
            total_mb=total,
            available_mb=available,
            used_mb=total - available,
            percent=(total - available) / total * 100 if total > 0 else 0.0,
            swap_total_mb=self.swap_total_mb or 0.0,
            swap_used_mb=self.swap_used_mb or 0.0,
            process_rss_mb=self.process_rss_mb or 0.0,
            page_cache_mb=self.page_cache_mb or 0.0,
            psi_some_avg10=self.psi_some_avg10,
            psi_full_avg10=self.psi_full_avg10,
            cgroup_limit_mb=self.cgroup_limit_mb,
            cgroup_used_mb=self.cgroup_used_mb,
            host_total_mb=total,
            host_available_mb=available,
            gpus=self.gpus,
            simulated=self.simulated,
            timestamp=timestamp,
        )

    def to_json(self, pressure: PressureLevel | None) -> dict[str, object]:
        """The keys of `status --json`'s `memory` (null where unknown), plus `source`,
        `models_mb`, `kv_cache_percent` and `requests_running`.

        Args:
            pressure: The host's pressure level, or None when it cannot be judged.
        """
        return {
            "total_mb": mb_json(self.total_mb),
            "available_mb": mb_json(self.available_mb),
            "used_mb": mb_json(self.used_mb),
            "percent": mb_json(self.percent),
            "swap_total_mb": mb_json(self.swap_total_mb),
            "swap_used_mb": mb_json(self.swap_used_mb),
            "pressure": None if pressure is None else pressure.value,
            "psi_some_avg10": self.psi_some_avg10,
            "psi_full_avg10": self.psi_full_avg10,
            "cgroup_limit_mb": mb_json(self.cgroup_limit_mb),
            "cgroup_used_mb": mb_json(self.cgroup_used_mb),
            "process_rss_mb": mb_json(self.process_rss_mb),
            "page_cache_mb": mb_json(self.page_cache_mb),
            "simulated": self.simulated,
            "gpus": gpus_json(self.gpus),
            "source": self.source,
            "models_mb": mb_json(self.models_mb),
            "kv_cache_percent": mb_json(self.kv_cache_percent),
            "requests_running": self.requests_running,
        }


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One host as last seen."""

    name: str
    local: bool
    """This machine (its memory comes from the OS, its servers are `backends`)."""
    up: bool
    """Something on the host answered; the local host is always up."""
    reason: str | None
    """What failed and where (`connection refused at http://10.0.0.5:11434/api/ps`): why a host
    is down, or which of an up host's servers did not answer; None when all answered."""
    memory: HostMemory | None
    """None when nothing about its memory is known."""
    pressure: PressureLevel | None
    """The local pressure rules applied to what is known; None without total and available."""
    models: tuple[HostModel, ...]
    latency_ms: float | None
    """The quickest answer among the host's servers and exporter; None when none answered."""
    cache_limit: float
    """Largest share of its memory models may use (`cache_limit` of the host, else the
    `memory_thresholds` one)."""
    checked_at: float
    """When it was last asked (`time.time()` seconds)."""
    retry_at: float | None = None
    """While the host is down: when it will be asked again; until then it is not asked."""

    def to_json(self) -> dict[str, object]:
        """The host as JSON: `name`, `up`, `reason`, `memory`, `models`, `local`,
        `latency_ms`, `cache_limit`."""
        return {
            "name": self.name,
            "up": self.up,
            "reason": self.reason,
            "memory": None if self.memory is None else self.memory.to_json(self.pressure),
            "models": [model.to_json() for model in self.models],
            "local": self.local,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "cache_limit": self.cache_limit,
        }


def models_memory(models: Sequence[HostModel]) -> float | None:
    """What loaded models take together, as their servers report it.

    Returns:
        The sum in MB; None when a server did not say for one of them (a vLLM, a model
        llama-swap started), since a sum without it would pass for all of it.
    """
    sizes = [model.size_mb for model in models]
    return None if None in sizes else sum(size for size in sizes if size is not None)


def host_pressure(memory: HostMemory | None, pressure_threshold: float) -> PressureLevel | None:
    """The pressure level of a host, by the same rules as this machine's.

    Args:
        memory: What is known of the host's memory.
        pressure_threshold: The configured usage share (0..1) that marks elevated pressure.

    Returns:
        The level, or None when total or available memory is unknown.
    """
    profile = None if memory is None else memory.to_profile()
    return None if profile is None else pressure_level(profile, pressure_threshold)


def local_status(
    config: Config,
    profile: MemoryProfile,
    *,
    checked_at: float,
    models: tuple[HostModel, ...] = (),
    models_mb: float | None = None,
    server_sources: tuple[str, ...] = (),
    kv_cache_percent: float | None = None,
    requests_running: int | None = None,
    reason: str | None = None,
    latency_ms: float | None = None,
) -> HostStatus:
    """This machine as a host, from a memory sample and what its servers said.

    Without the servers' answers (`status` when no other host is configured, which asks no
    server) it lists no models.

    Args:
        config: The configuration (the local host's name, the thresholds).
        profile: A sample of this machine, or of the simulated one.
        checked_at: When the sample and the answers were taken.
        models: The models the local servers hold.
        models_mb: What they take, as the servers report it; None when no server answered.
        server_sources: The endpoints that reported them.
        kv_cache_percent: A local vLLM's KV-cache fill.
        requests_running: Requests a local OpenAI-compatible server is working on.
        reason: Which local server or exporter did not answer, and why.
        latency_ms: The quickest answer among the local servers.
    """
    return HostStatus(
        name=config.local_host.name,
        local=True,
        up=True,
        reason=reason,
        memory=HostMemory.from_profile(
            profile,
            models_mb=models_mb,
            server_sources=server_sources,
            kv_cache_percent=kv_cache_percent,
            requests_running=requests_running,
        ),
        pressure=pressure_level(profile, config.memory_thresholds.pressure_threshold),
        models=models,
        latency_ms=latency_ms,
        cache_limit=config.memory_thresholds.cache_limit,
        checked_at=checked_at,
    )
