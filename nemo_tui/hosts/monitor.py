"""Keeping track of the lab's hosts: each refresh asks every host at once, within one deadline.

The local host is this machine: its memory comes from the local sampler (the OS, or
`--simulate-memory`, which describes this machine only), its servers are the ones under
`backends` (`backends.ollama`, and `backends.openai` when enabled). When
`local_host.node_exporter_url` is set, that exporter is scraped too, as a check that the other
machines of the lab can read this one: a failure shows in the local host's `reason`. Its figures
are not used: they are read from the same kernel, without the cgroup limit, the GPUs and the
simulation the local sampler accounts for, and the rest of nemo-tui decides on the sampler's.

Another host's memory comes from its node_exporter when it has one; without one, only what its
model servers report is known (`HostMemory.source` says which). A host none of whose endpoints
answers is down: the reason names what failed and where, and it is not asked again until a
backoff delay has passed (2 s, doubling to 60 s; reset once it answers). A slow host costs at
most the timeout, and never delays the others, which are asked at the same time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx
import msgspec

from nemo_tui.backends.http import make_client, secret_or_none
from nemo_tui.backends.ollama import OllamaBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend
from nemo_tui.config import Config, HostEntry
from nemo_tui.core.memory.node_exporter import NodeMemory
from nemo_tui.core.memory.profile import MemorySampler, with_loaded_models
from nemo_tui.errors import NemoError
from nemo_tui.hosts.probes import Endpoints, Report, ask_all, gauges, merge_models
from nemo_tui.hosts.status import (
    SOURCE_NODE_EXPORTER,
    HostMemory,
    HostModel,
    HostStatus,
    host_pressure,
    local_status,
    models_memory,
)
from nemo_tui.ollama_host import InvalidOllamaHost

BACKOFF_FIRST_S = 2.0
"""How long a host that went down is left alone before it is asked again."""
BACKOFF_MAX_S = 60.0
"""The longest wait between two attempts at a host that stays down."""


@dataclass(slots=True)
class _Remote:
    """Another host, what is needed to ask it, and what its last answers were."""

    entry: HostEntry
    endpoints: Endpoints
    failures: int = 0
    """Refreshes in a row at which the host was down."""
    retry_at: float | None = None
    last: HostStatus | None = None
    scrape: tuple[NodeMemory, float] | None = None
    """Its last node_exporter page and when it was read, for the next PSI figure."""


class HostMonitor:
    """Asks every host of the lab what it holds, and remembers the answers.

    Args:
        config: The configuration: `hosts`, `local_host`, `backends`, the thresholds.
        local_sampler: Takes this machine's memory sample (the real or the simulated one).
        clock: The wall clock (`time.time`), for `checked_at`, PSI and the backoff.
        timeout_s: How long one refresh waits for any host.
    """

    def __init__(
        self,
        config: Config,
        local_sampler: MemorySampler,
        *,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
    ) -> None:
        self._config = config
        self._sampler = local_sampler
        self._clock = clock
        self._timeout_s = timeout_s
        self._local = _local_endpoints(config, timeout_s)
        self._local_last: HostStatus | None = None
        self._remotes = [
            _Remote(entry, _remote_endpoints(entry, timeout_s)) for entry in config.hosts
        ]
        self._lock = asyncio.Lock()

    async def refresh(self) -> list[HostStatus]:
        """Ask every host, except those backing off after going down, all at once.

        Returns:
            The hosts, the local one first, then in config order (see `statuses`).
        """
        async with self._lock:
            now = self._clock()
            local, *remotes = await asyncio.gather(
                self._refresh_local(now), *(self._refresh_remote(r, now) for r in self._remotes)
            )
            self._local_last = local
            for remote, status in zip(self._remotes, remotes, strict=True):
                remote.last = status
        return self.statuses()

    def statuses(self) -> list[HostStatus]:
        """The hosts as last refreshed, the local one first, then in config order; empty before
        the first refresh."""
        if self._local_last is None:
            return []
        return [self._local_last, *(r.last for r in self._remotes if r.last is not None)]

    async def aclose(self) -> None:
        """Close every connection."""
        await self._local.aclose()
        for remote in self._remotes:
            await remote.endpoints.aclose()

    async def _refresh_local(self, now: float) -> HostStatus:
        profile = self._sampler.sample()
        reports = await ask_all(self._local.probes(), self._timeout_s)
        models, model_sources = merge_models(reports)
        fill, running, gauge_sources = gauges(reports)
        # A simulated machine's figures cannot see what the servers hold: count what they say.
        profile = with_loaded_models(
            profile,
            sum(m.size_mb for m in models if m.size_mb is not None),
            sum(m.vram_mb for m in models if m.vram_mb is not None),
        )
        return local_status(
            self._config,
            profile,
            checked_at=now,
            models=models,
            models_mb=models_memory(models) if model_sources else None,
            server_sources=(*model_sources, *gauge_sources),
            kv_cache_percent=fill,
            requests_running=running,
            reason=_reason(reports, self._local.broken),
            latency_ms=_latency(reports),
        )

    async def _refresh_remote(self, remote: _Remote, now: float) -> HostStatus:
        if remote.retry_at is not None and now < remote.retry_at and remote.last is not None:
            return remote.last
        reports = await ask_all(remote.endpoints.probes(), self._timeout_s)
        up = any(r.required and r.failure is None for r in reports)
        reason = _reason(reports, remote.endpoints.broken)
        cache_limit = remote.entry.cache_limit or self._config.memory_thresholds.cache_limit
        if not up:
            remote.failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (remote.failures - 1))
            remote.retry_at = now + delay
            return HostStatus(
                name=remote.entry.name,
                local=False,
                up=False,
                reason=reason,
                memory=None,
                pressure=None,
                models=(),
                latency_ms=None,
                cache_limit=cache_limit,
                checked_at=now,
                retry_at=remote.retry_at,
            )
        remote.failures = 0
        remote.retry_at = None
        models, model_sources = merge_models(reports)
        memory = _remote_memory(remote, reports, models, model_sources, now)
        return HostStatus(
            name=remote.entry.name,
            local=False,
            up=True,
            reason=reason,
            memory=memory,
            pressure=host_pressure(memory, self._config.memory_thresholds.pressure_threshold),
            models=models,
            latency_ms=_latency(reports),
            cache_limit=cache_limit,
            checked_at=now,
        )


def _remote_memory(
    remote: _Remote,
    reports: Sequence[Report],
    models: tuple[HostModel, ...],
    model_sources: tuple[str, ...],
    now: float,
) -> HostMemory | None:
    """What is known of another host's memory: its exporter's figures, then its servers'.

    The exporter's page is kept in `remote`, for the PSI figure of the next scrape.
    """
    fill, running, gauge_sources = gauges(reports)
    node = next((r.node for r in reports if r.node is not None), None)
    server_sources = (*model_sources, *gauge_sources)
    figures = HostMemory(
        ram_source=None,
        server_sources=server_sources,
        models_mb=models_memory(models) if model_sources else None,
        kv_cache_percent=fill,
        requests_running=running,
    )
    if node is None:
        return figures if server_sources else None
    previous = remote.scrape
    remote.scrape = (node, now)
    some, full = node.pressure_since(
        previous[0] if previous else None, now - previous[1] if previous else 0.0
    )
    total, available = node.total_mb, node.available_mb
    used = None if available is None else total - available
    return replace(
        figures,
        ram_source=SOURCE_NODE_EXPORTER,
        total_mb=total,
        available_mb=available,
        used_mb=used,
        percent=None if used is None or total <= 0 else used / total * 100,
        swap_total_mb=node.swap_total_mb,
        swap_used_mb=node.swap_used_mb,
        psi_some_avg10=some,
        psi_full_avg10=full,
        page_cache_mb=node.page_cache_mb,
    )


def _reason(reports: Sequence[Report], broken: Sequence[str]) -> str | None:
    """What failed among the required endpoints and the ones that could not be set up."""
    failures = [*broken, *(r.failure for r in reports if r.required and r.failure is not None)]
    return "; ".join(failures) or None


def _latency(reports: Sequence[Report]) -> float | None:
    times = [r.latency_ms for r in reports if r.required and r.latency_ms is not None]
    return min(times) if times else None


def _local_endpoints(config: Config, timeout_s: float) -> Endpoints:
    """The local host's servers, built the way the engine builds them, and its exporter."""
    from nemo_tui.backends.discovery import build_backends

    endpoints = Endpoints()
    _add_exporter(endpoints, config.local_host.node_exporter_url, timeout_s)
    # One server at a time, so an unusable $OLLAMA_HOST does not keep the other one from
    # being asked.
    for server in ("ollama", "openai"):
        try:
            built = build_backends(_only_server(config, server))
        except NemoError as exc:
            endpoints.broken.append(exc.one_line())
            continue
        for backend in built:
            if isinstance(backend, OllamaBackend):
                endpoints.ollama = backend
            elif isinstance(backend, OpenAICompatBackend):
                endpoints.openai = backend
    if endpoints.openai is not None:
        key_env = config.backends.openai.api_key_env
        endpoints.extras = _extras_client(endpoints.openai, timeout_s, key_env)
    return endpoints


def _only_server(config: Config, server: str) -> Config:
    """The config with every backend but one local model server turned off: the embedded
    model lives in nemo-tui's own process, the cloud holds no memory of this machine, and the
    other hosts are asked as hosts of their own."""
    section = config.backends
    ollama = section.ollama.enabled and server == "ollama"
    openai = section.openai.enabled and server == "openai"
    return msgspec.structs.replace(
        config,
        hosts=[],
        backends=msgspec.structs.replace(
            section,
            ollama=msgspec.structs.replace(section.ollama, enabled=ollama),
            openai=msgspec.structs.replace(section.openai, enabled=openai),
            embedded=msgspec.structs.replace(section.embedded, enabled=False),
            gemini=msgspec.structs.replace(section.gemini, enabled=False),
        ),
    )


def _remote_endpoints(entry: HostEntry, timeout_s: float) -> Endpoints:
    endpoints = Endpoints()
    _add_exporter(endpoints, entry.node_exporter_url, timeout_s)
    if entry.ollama_url is not None:
        try:
            endpoints.ollama = OllamaBackend(entry.ollama_url, connect_timeout_s=timeout_s)
        except InvalidOllamaHost as exc:
            endpoints.broken.append(f"ollama_url: {exc}")
    if entry.openai_url is not None:
        key_env = entry.api_key_env
        endpoints.openai = OpenAICompatBackend(
            entry.openai_url,
            api_key=secret_or_none(os.environ.get(key_env)) if key_env else None,
            api_key_env=key_env,
            connect_timeout_s=timeout_s,
        )
        endpoints.extras = _extras_client(endpoints.openai, timeout_s, key_env)
    return endpoints


def _add_exporter(endpoints: Endpoints, url: str | None, timeout_s: float) -> None:
    if url is None:
        return
    endpoints.exporter_url = _metrics_page(url)
    endpoints.exporter = make_client(endpoints.exporter_url, connect_timeout_s=timeout_s)


def _extras_client(
    backend: OpenAICompatBackend, timeout_s: float, key_env: str | None
) -> httpx.AsyncClient:
    key = secret_or_none(os.environ.get(key_env)) if key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return make_client(backend.root, connect_timeout_s=timeout_s, headers=headers)


def _metrics_page(url: str) -> str:
    """node_exporter serves its figures at `/metrics` and an HTML page at `/`: a URL without a
    path means the former."""
    return f"{url.rstrip('/')}/metrics" if urlsplit(url).path in ("", "/") else url
