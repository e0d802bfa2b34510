"""What the engine knows about its backends: which are up, what they have installed and loaded.

Models a server has but the catalog does not know (say `llama3.2:3b` pulled into Ollama) are added
to the catalog from the server's own metadata, so they can be recommended, estimated and chosen
by hand like the built-in tiers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from nemo_tui.backends.base import Backend, BackendError, BackendHealth, InstalledModel, LoadedModel
from nemo_tui.backends.discovery import probe_all
from nemo_tui.core.models.backend_names import backend_host, backend_kind, remote_backend_name
from nemo_tui.core.models.cache_policy import CachedModel, CacheTracker
from nemo_tui.core.models.catalog import (
    Catalog,
    ModelArchitecture,
    ModelSpec,
    Tier,
    model_key,
    spec_from_architecture,
)
from nemo_tui.core.models.recommender import ResidentModel
from nemo_tui.units import bytes_to_mb, format_mb


class BackendRegistry:
    """The backends, their health, their models, and the catalog enriched with what they serve.

    Args:
        backends: The backends in fallback order.
        catalog: The configured catalog; models found on servers are added to a copy.
        tracker: Where resident models are recorded (shared with the engine's cache actions).
    """

    def __init__(
        self, backends: Sequence[Backend], catalog: Catalog, tracker: CacheTracker
    ) -> None:
        self._backends = list(backends)
        self._base_catalog = catalog
        self.catalog = catalog
        self.tracker = tracker
        self._health: dict[str, BackendHealth] = {}
        self._installed: dict[str, list[InstalledModel]] = {}
        self._discovered: dict[str, ModelSpec] = {}
        self._metadata: dict[tuple[str, str, str | None], ModelArchitecture | None] = {}
        """Figures read per (backend, model, digest): an unchanged model is not asked again."""

    @property
    def backends(self) -> list[Backend]:
        """All configured backends, up or not, in fallback order."""
        return list(self._backends)

    def healths(self) -> list[BackendHealth]:
        """The last probe's result for every backend."""
        return [self._health[b.name] for b in self._backends if b.name in self._health]

    def is_up(self, name: str) -> bool:
        """True when the backend answered the last probe."""
        health = self._health.get(name)
        return health is not None and health.up

    def up_names(self, host: str | None = None) -> set[str]:
        """Kinds of the backends on a host (None: this machine) that answered the last probe.

        On this machine a backend's kind is its name (`ollama`, `gemini`); the recommender
        compares them with the catalog's `backend` of each model.
        """
        return {
            backend_kind(b.name)
            for b in self._backends
            if backend_host(b.name) == host and self.is_up(b.name)
        }

    def remote_hosts(self) -> list[str]:
        """The other hosts that have a model server, in config order."""
        hosts: list[str] = []
        for backend in self._backends:
            host = backend_host(backend.name)
            if host is not None and host not in hosts:
                hosts.append(host)
        return hosts

    def backend(self, name: str) -> Backend | None:
        """The backend with this name, up or not."""
        return next((b for b in self._backends if b.name == name), None)

    def backend_for(self, spec: ModelSpec, host: str | None = None) -> Backend | None:
        """The backend that serves `spec` on a host (None: this machine), or None when it is not
        configured there or down. A cloud model is served from this machine whatever the host."""
        kind = backend_kind(spec.backend)
        name = kind if host is None or not spec.local else remote_backend_name(kind, host)
        backend = self.backend(name)
        return backend if backend is not None and self.is_up(backend.name) else None

    def installed_names(self, host: str | None = None) -> set[str]:
        """Names of every model an up backend on a host (None: this machine) can serve now; on
        this machine the cloud model is included."""
        names = {
            m.name
            for name, models in self._installed.items()
            if backend_host(name) == host and self.is_up(name)
            for m in models
        }
        if host is None:
            for spec in self.catalog.cloud_models():
                if self.is_up(spec.backend):
                    names.add(spec.name)
        return names

    def resident(self, host: str | None = None) -> dict[str, ResidentModel]:
        """Models loaded on a host (None: this machine) as the recommender sees them.

        One whose backend reports no size counts as 0 MB there: the recommender adds resident
        sizes up as memory that unloading would free, and nobody measured this one's.
        """
        return {
            m.name: ResidentModel(
                m.name, m.size_mb if m.size_mb is not None else 0.0, m.context_length
            )
            for m in self.residents_on(host)
        }

    def residents_on(self, host: str | None) -> list[CachedModel]:
        """The loaded models of one host (None: this machine), most recently used first."""
        return [m for m in self.tracker.resident() if backend_host(m.backend) == host]

    def loaded_on(self, name: str, host: str | None) -> CachedModel | None:
        """The model called `name` loaded on a host (None: this machine), or None."""
        key = model_key(name)
        return next((m for m in self.residents_on(host) if model_key(m.name) == key), None)

    async def probe(self, timeout_s: float = 2.0) -> list[BackendHealth]:
        """Probe every backend, then learn what the up ones have installed and loaded.

        Returns:
            The health of each backend, in fallback order.
        """
        healths = await probe_all(self._backends, timeout_s)
        self._health = {h.backend: h for h in healths}
        up = [b for b in self._backends if self.is_up(b.name)]
        await asyncio.gather(*(self._learn_installed(b) for b in up))
        await self.sync_loaded()
        self._rebuild_catalog()
        return healths

    async def sync_loaded(self) -> None:
        """Re-read which models each up local backend holds in memory."""
        for backend in self._backends:
            if backend.local and self.is_up(backend.name):
                await self.sync_backend(backend)

    async def sync_backend(self, backend: Backend) -> None:
        """Re-read which models one backend holds in memory: one `list_loaded` (Ollama's
        `/api/ps`); a backend that cannot answer keeps what was known."""
        try:
            loaded = await backend.list_loaded()
        except BackendError:
            return
        self.tracker.sync(backend.name, [_cached(m) for m in loaded])

    async def _learn_installed(self, backend: Backend) -> None:
        try:
            models = await backend.list_installed()
        except BackendError:
            models = []
        self._installed[backend.name] = models
        for model in models:
            known = self._base_catalog.get(model.name)
            if known is not None and known.architecture is not None:
                continue
            cache_key = (backend.name, model.name, model.digest)
            if model.digest is not None and cache_key in self._metadata:
                arch = self._metadata[cache_key]
            else:
                try:
                    arch = await backend.model_metadata(model.name)
                except BackendError:
                    arch = None  # asked again next probe: the failure may pass
                else:
                    if model.digest is not None:
                        self._metadata[cache_key] = arch
            if arch is not None:
                self._discovered[model.name] = (
                    known.with_architecture(arch)
                    if known is not None
                    else spec_from_architecture(
                        model.name, arch, backend.name, f"installed on {backend.name}"
                    )
                )
            elif known is None:
                self._discovered[model.name] = _sized_by_file(model, backend.name)

    def _rebuild_catalog(self) -> None:
        catalog = self._base_catalog
        for spec in self._discovered.values():
            catalog = catalog.with_model(spec)
        self.catalog = catalog


def _sized_by_file(model: InstalledModel, backend: str) -> ModelSpec:
    """A catalog entry for a served model with no metadata: sized from its file, when known.

    Servers such as llama-server hold their one model from start-up and manage its memory
    themselves; with no file size either, the entry says so and estimates nothing.
    """
    if model.disk_bytes:
        weights = bytes_to_mb(model.disk_bytes)
        low, high = weights * 1.1, weights * 1.5
        tier = Tier.LOW if high <= 2048 else Tier.MEDIUM if high <= 4096 else Tier.HIGH
        note = f"on {backend}, sized from its {format_mb(weights)} file"
    else:
        low = high = 0.0
        tier = Tier.LOW
        note = f"on {backend}, which manages its memory itself"
    return ModelSpec(model.name, tier, backend, note, min_memory_mb=low, max_memory_mb=high)


def _cached(model: LoadedModel) -> CachedModel:
    expires: float | None = None
    if isinstance(model.expires_at, datetime):
        expires = model.expires_at.timestamp()
    return CachedModel(
        name=model.name,
        backend=model.backend,
        size_mb=model.size_mb,
        vram_mb=model.vram_mb,
        context_length=model.context_length,
        expires_at=expires,
    )
