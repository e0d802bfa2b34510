"""Asking one host's endpoints what they know, all at once, each within the same deadline.

A host has up to three things to ask: its node_exporter (memory), its Ollama (`/api/ps`) and
its OpenAI-compatible server (`/v1/models` through `OpenAICompatBackend`). Those are *required*:
when one fails, the host's `reason` says so, and when all fail the host is down.

An OpenAI-compatible server is also asked, optionally, what only some of them serve; a server
without the endpoint (404), or one that is slow to answer it, is simply not counted:

- llama-server `/slots`: how many slots are working on a request;
- `/metrics` (vLLM always, llama-server with `--metrics`): KV-cache fill and running requests;
- llama-swap `/running`: the models it has started (its `/v1/models` lists every model it
  could start, so that list says nothing about what is in memory);
- llama-server in router mode: the `status` of each model in `/v1/models` (`loaded`,
  `unloaded`, `sleeping`...), which `OpenAICompatBackend.list_loaded` does not read.

Every probe returns a `Report` and never raises; `ask_all` turns one that does not finish in
time into a report of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from nemo_tui.backends.base import BackendError, LoadedModel
from nemo_tui.backends.http import connection_problem
from nemo_tui.backends.ollama import OllamaBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend
from nemo_tui.core.memory.node_exporter import NodeMemory, parse_node_memory
from nemo_tui.errors import NemoError
from nemo_tui.hosts.status import HostModel
from nemo_tui.units import format_seconds

BODY_LIMIT_BYTES = 8 * 1024 * 1024
"""Most of a metrics page that is read. node_exporter's page is tens to hundreds of KB even on a
big server; past this it is some other thing, and reading it to its end could take forever."""
_OLLAMA_SOURCE = "ollama /api/ps"
_OPENAI_SOURCE = "openai /v1/models"
_SLOTS_SOURCE = "llama-server /slots"
_ROUTER_SOURCE = "llama-server /v1/models"
_SWAP_SOURCE = "llama-swap /running"
_VLLM_SOURCE = "vllm /metrics"
_LLAMACPP_SOURCE = "llama-server /metrics"
_KV_FILL = frozenset(
    {"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc", "llamacpp:kv_cache_usage_ratio"}
)
"""KV-cache fill gauges, each a fraction 0..1 whatever its name says: vLLM's older and newer
names, and llama.cpp's, which newer builds no longer serve."""
_RUNNING = frozenset({"vllm:num_requests_running", "llamacpp:requests_processing"})


@dataclass(frozen=True, slots=True)
class Report:
    """What one endpoint said, or why it said nothing."""

    url: str
    """Where it was asked."""
    required: bool
    """A failure counts against the host (see the module doc); an optional one is dropped."""
    failure: str | None = None
    """What failed and where; None when it answered."""
    latency_ms: float | None = None
    node: NodeMemory | None = None
    """A node_exporter's figures."""
    models: tuple[HostModel, ...] | None = None
    """Loaded models, when this endpoint tells them; None when it says nothing about them."""
    authoritative: bool = False
    """Its `models` are what is in memory, where the server's `/v1/models` list is not
    (llama-swap's `/running`, a router's model status)."""
    sources: tuple[str, ...] = ()
    """The labels of what it reported, such as `ollama /api/ps`."""
    kv_cache_percent: float | None = None
    requests_running: int | None = None


@dataclass(frozen=True, slots=True)
class Probe:
    """One endpoint to ask."""

    url: str
    required: bool
    run: Callable[[], Awaitable[Report]]


@dataclass(slots=True)
class Endpoints:
    """The clients for one host's endpoints, and what could not even be set up.

    Attributes:
        exporter_url: The node_exporter page, when there is one.
        exporter: Its client.
        ollama: The Ollama backend, when there is one.
        openai: The OpenAI-compatible backend, when there is one.
        extras: A client for that server's optional endpoints.
        broken: Why a configured endpoint could not be set up (a bad address).
    """

    exporter_url: str | None = None
    exporter: httpx.AsyncClient | None = None
    ollama: OllamaBackend | None = None
    openai: OpenAICompatBackend | None = None
    extras: httpx.AsyncClient | None = None
    broken: list[str] = field(default_factory=list)

    def probes(self) -> list[Probe]:
        """Everything to ask this host, required endpoints first."""
        probes: list[Probe] = []
        if self.exporter is not None and self.exporter_url is not None:
            exporter, url = self.exporter, self.exporter_url
            probes.append(Probe(url, True, lambda: scrape_node_exporter(exporter, url)))
        if self.ollama is not None:
            ollama = self.ollama
            probes.append(Probe(f"{ollama.url}/api/ps", True, lambda: ollama_models(ollama)))
        if self.openai is not None:
            openai = self.openai
            probes.append(Probe(f"{openai.url}/models", True, lambda: openai_models(openai)))
            if self.extras is not None:
                probes.extend(_optional_probes(self.extras, openai))
        return probes

    async def aclose(self) -> None:
        """Close every client."""
        for closable in (self.exporter, self.ollama, self.openai, self.extras):
            if closable is not None:
                await closable.aclose()


async def ask_all(probes: Sequence[Probe], timeout_s: float) -> list[Report]:
    """Ask every endpoint at once and wait for them, but no longer than `timeout_s`.

    Args:
        probes: What to ask.
        timeout_s: The deadline for all of them together.

    Returns:
        One report per probe, in order; one that did not finish in time says so.
    """
    if not probes:
        return []
    tasks = [asyncio.ensure_future(probe.run()) for probe in probes]
    try:
        await asyncio.wait(tasks, timeout=timeout_s)
    finally:
        late = [task for task in tasks if not task.done()]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    reports: list[Report] = []
    for probe, task in zip(probes, tasks, strict=True):
        if task.cancelled():
            reports.append(
                Report(
                    probe.url,
                    probe.required,
                    failure=f"no answer within {format_seconds(timeout_s)} at {probe.url}",
                )
            )
        elif (error := task.exception()) is not None:
            reports.append(Report(probe.url, probe.required, failure=failure(error, probe.url)))
        else:
            reports.append(task.result())
    return reports


def failure(error: BaseException, url: str) -> str:
    """What failed and where, for a host's `reason`: `connection refused at http://...`.

    Args:
        error: What a request raised (an httpx error, or a backend's error wrapping one).
        url: The endpoint, named when the error does not carry its own request.
    """
    cause = error if isinstance(error, httpx.RequestError) else error.__cause__
    if isinstance(cause, httpx.RequestError):
        # An error raised before its request was attached has none to name.
        with contextlib.suppress(RuntimeError):
            url = str(cause.request.url)
        return f"{connection_problem(cause)} at {url}"
    if isinstance(error, BackendError) and error.status is not None:
        return f"HTTP {error.status}: {error.message} at {url}"
    if isinstance(error, NemoError):
        return f"{error.message} at {url}"
    return f"{type(error).__name__}: {error} at {url}"


async def scrape_node_exporter(client: httpx.AsyncClient, url: str) -> Report:
    """Read a node_exporter page."""
    started = time.perf_counter()
    try:
        status, body = await fetch(client, url)
    except (httpx.RequestError, PageTooLarge) as exc:
        return Report(url, True, failure=failure(exc, url))
    latency = (time.perf_counter() - started) * 1000
    if status >= 400:
        return Report(url, True, failure=f"HTTP {status} at {url}", latency_ms=latency)
    try:
        node = parse_node_memory(body.decode("utf-8", errors="replace"))
    except NemoError as exc:
        return Report(url, True, failure=failure(exc, url), latency_ms=latency)
    return Report(url, True, latency_ms=latency, node=node)


async def ollama_models(backend: OllamaBackend) -> Report:
    """The models an Ollama holds (`/api/ps`), with their sizes."""
    return await _loaded_models(
        backend, f"{backend.url}/api/ps", "ollama", _OLLAMA_SOURCE, vram_known=True
    )


async def openai_models(backend: OpenAICompatBackend) -> Report:
    """The model an OpenAI-compatible server holds, as `OpenAICompatBackend.list_loaded` tells
    it (one listed model, unless llama-server's `/props` says it sleeps)."""
    return await _loaded_models(
        backend, f"{backend.url}/models", "openai", _OPENAI_SOURCE, vram_known=False
    )


async def _loaded_models(
    backend: OllamaBackend | OpenAICompatBackend,
    url: str,
    server: str,
    source: str,
    *,
    vram_known: bool,
) -> Report:
    """What a server's `list_loaded` says it holds, as a report on `url`."""
    started = time.perf_counter()
    try:
        loaded = await backend.list_loaded()
    except BackendError as exc:
        return Report(url, True, failure=failure(exc, url))
    return Report(
        url,
        True,
        latency_ms=(time.perf_counter() - started) * 1000,
        models=tuple(_host_model(model, server, vram_known=vram_known) for model in loaded),
        sources=(source,),
    )


def _host_model(model: LoadedModel, server: str, *, vram_known: bool) -> HostModel:
    return HostModel(
        name=model.name,
        server=server,
        size_mb=model.size_mb,
        # Only Ollama says how much of a model is in VRAM; the others' 0 means "not said".
        vram_mb=model.vram_mb if vram_known else None,
        expires_at=model.expires_at,
    )


def _optional_probes(client: httpx.AsyncClient, backend: OpenAICompatBackend) -> list[Probe]:
    root, url = backend.root, backend.url
    return [
        Probe(f"{root}/slots", False, lambda: llama_slots(client, f"{root}/slots")),
        Probe(f"{root}/metrics", False, lambda: server_metrics(client, f"{root}/metrics")),
        Probe(f"{root}/running", False, lambda: llama_swap_running(client, f"{root}/running")),
        Probe(f"{url}/models", False, lambda: router_models(client, f"{url}/models")),
    ]


async def llama_slots(client: httpx.AsyncClient, url: str) -> Report:
    """llama-server's `/slots`: the slots working on a request."""
    data = await _optional_json(client, url)
    if not isinstance(data, list) or not all(isinstance(slot, dict) for slot in data):
        return Report(url, False, failure="no llama-server slots")
    busy = sum(1 for slot in data if slot.get("is_processing") is True)
    return Report(url, False, sources=(_SLOTS_SOURCE,), requests_running=busy)


async def server_metrics(client: httpx.AsyncClient, url: str) -> Report:
    """A vLLM's or llama-server's Prometheus `/metrics`: KV-cache fill and running requests."""
    try:
        status, body = await fetch(client, url)
    except (httpx.RequestError, PageTooLarge) as exc:
        return Report(url, False, failure=failure(exc, url))
    if status >= 400:
        return Report(url, False, failure=f"HTTP {status} at {url}")
    fill: float | None = None
    running: float | None = None
    sources: list[str] = []
    try:
        for family in text_string_to_metric_families(_gauge_lines(body)):
            for sample in family.samples:
                if sample.name in _KV_FILL:
                    fill = max(fill or 0.0, float(sample.value) * 100.0)
                elif sample.name in _RUNNING:
                    running = (running or 0.0) + float(sample.value)
                else:
                    continue
                label = _VLLM_SOURCE if sample.name.startswith("vllm:") else _LLAMACPP_SOURCE
                if label not in sources:
                    sources.append(label)
    except ValueError as exc:
        return Report(url, False, failure=f"not Prometheus text ({exc}) at {url}")
    return Report(
        url,
        False,
        sources=tuple(sources),
        kv_cache_percent=fill,
        requests_running=None if running is None else int(running),
    )


async def llama_swap_running(client: httpx.AsyncClient, url: str) -> Report:
    """llama-swap's `/running`: `{"running": [{"model": ..., "state": "ready"}, ...]}`."""
    data = await _optional_json(client, url)
    running = data.get("running") if isinstance(data, dict) else None
    if not isinstance(running, list):
        return Report(url, False, failure="not llama-swap")
    models = tuple(
        HostModel(name=entry["model"], server="openai", size_mb=None, vram_mb=None, expires_at=None)
        for entry in running
        if isinstance(entry, dict)
        and isinstance(entry.get("model"), str)
        and entry.get("state", "ready") == "ready"
    )
    return Report(url, False, models=models, authoritative=True, sources=(_SWAP_SOURCE,))


async def router_models(client: httpx.AsyncClient, url: str) -> Report:
    """A llama-server router's `/v1/models`, whose entries carry `status: {"value": ...}`."""
    data = await _optional_json(client, url)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return Report(url, False, failure="no model list")
    statuses = [
        (entry.get("id"), entry["status"].get("value"))
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("status"), dict)
    ]
    if not statuses:
        return Report(url, False, failure="not a llama-server router")
    models = tuple(
        HostModel(name=name, server="openai", size_mb=None, vram_mb=None, expires_at=None)
        for name, value in statuses
        if isinstance(name, str) and value == "loaded"
    )
    return Report(url, False, models=models, authoritative=True, sources=(_ROUTER_SOURCE,))


async def _optional_json(client: httpx.AsyncClient, url: str) -> Any:
    """The JSON at `url`, or None when the server has no such endpoint or sent no JSON."""
    try:
        status, body = await fetch(client, url)
    except (httpx.RequestError, PageTooLarge):
        return None
    if status >= 400:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class PageTooLarge(Exception):
    """A response longer than `BODY_LIMIT_BYTES`."""


async def fetch(client: httpx.AsyncClient, url: str) -> tuple[int, bytes]:
    """GET `url` and read at most `BODY_LIMIT_BYTES` of its body.

    Returns:
        The status and the body.

    Raises:
        httpx.RequestError: the request failed.
        PageTooLarge: the body is longer than the limit.
    """
    async with client.stream("GET", url) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > BODY_LIMIT_BYTES:
                raise PageTooLarge(f"the page is longer than {BODY_LIMIT_BYTES // 2**20} MiB")
        return response.status_code, bytes(body)


def merge_models(reports: Sequence[Report]) -> tuple[tuple[HostModel, ...], tuple[str, ...]]:
    """The models loaded on a host, and the sources that told them.

    An authoritative list (llama-swap's `/running`, a router's status) replaces what
    `/v1/models` suggested for the same server, keeping the size that list gave a model of the
    same name.

    Args:
        reports: Every report of one host.

    Returns:
        The models, Ollama's first, and the labels of the reports they came from.
    """
    told = [r for r in reports if r.failure is None and r.models is not None]
    authoritative = [r for r in told if r.authoritative]
    listed = [r for r in told if _OPENAI_SOURCE in r.sources]
    sizes = {m.name: m.size_mb for r in listed for m in r.models or () if m.size_mb is not None}
    models: list[HostModel] = []
    sources: list[str] = []
    for report in told:
        if report.authoritative or (authoritative and _OPENAI_SOURCE in report.sources):
            continue
        models.extend(report.models or ())
        sources.extend(report.sources)
    for report in authoritative:
        models.extend(replace(m, size_mb=sizes.get(m.name)) for m in report.models or ())
        sources.extend(report.sources)
    return tuple(models), tuple(sources)


def gauges(reports: Sequence[Report]) -> tuple[float | None, int | None, tuple[str, ...]]:
    """A host's KV-cache fill and running requests, and their sources.

    `/slots` counts running requests more directly than a gauge, so it wins when both answer.

    Returns:
        `(kv_cache_percent, requests_running, sources)`.
    """
    fill: float | None = None
    running: int | None = None
    sources: list[str] = []
    for report in sorted(reports, key=lambda r: _SLOTS_SOURCE not in r.sources):
        if report.failure is not None or report.models is not None:
            continue
        used = False
        if report.kv_cache_percent is not None and fill is None:
            fill, used = report.kv_cache_percent, True
        if report.requests_running is not None and running is None:
            running, used = report.requests_running, True
        if used:
            sources.extend(s for s in report.sources if s not in sources)
    return fill, running, tuple(sources)


def _gauge_lines(body: bytes) -> str:
    """Only the series of `_KV_FILL` and `_RUNNING` from a `/metrics` page: a vLLM's also
    carries histograms with many buckets per model, which the parser need not read."""
    kept: list[str] = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            words = line.split(" ", 3)
            name = words[2] if len(words) > 2 else ""
        else:
            name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in _KV_FILL or name in _RUNNING:
            kept.append(line)
    return "\n".join(kept) + "\n"
