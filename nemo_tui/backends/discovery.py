"""Which backends exist: build them from the config in fallback order, probe them, describe them.

With the built-in defaults this gives Ollama on its default address (or `$OLLAMA_HOST`), then the
embedded model when xllamacpp and the model are installed, then Gemini when an API key is
present. The OpenAI-compatible server is used only when the config enables it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nemo_tui.backends.base import Backend, BackendHealth
from nemo_tui.core.models.backend_names import remote_backend_name
from nemo_tui.units import format_seconds

if TYPE_CHECKING:
    import httpx

    from nemo_tui import config as cfg

_EMBEDDED_MODULE = "nemo_tui.backends.embedded"


def build_backends(
    config: cfg.Config, *, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> list[Backend]:
    """The enabled backends in fallback order: ollama, openai, embedded, the other hosts' servers
    (`ollama@HOST`, `openai@HOST`), gemini.

    API keys are read from the environment variables the config names (for Gemini, a key in the
    config file is used when its variable is unset). Gemini is left out without a key, and the
    embedded backend when xllamacpp or its model is missing.

    Args:
        config: The validated configuration.
        transports: Per-backend-name transports used instead of the network (tests).
    """
    # Each backend is imported only when it is used: they pull in httpx (tens of ms and several
    # MB), which callers that only probe or describe backends, and the dashboard's first frame,
    # do not need, and every module imported stays in the dashboard's resident memory.
    transports = transports or {}
    section = config.backends
    backends: list[Backend] = []
    if section.ollama.enabled:
        from nemo_tui.backends.ollama import OllamaBackend

        backends.append(
            OllamaBackend(
                section.ollama.url,
                keep_alive=section.ollama.keep_alive,
                connect_timeout_s=section.ollama.timeout_s,
                transport=transports.get("ollama"),
            )
        )
    if section.openai.enabled:
        from nemo_tui.backends.openai_compat import OpenAICompatBackend

        key_env = section.openai.api_key_env
        backends.append(
            OpenAICompatBackend(
                section.openai.url,
                api_key=os.environ.get(key_env) if key_env else None,
                api_key_env=key_env,
                connect_timeout_s=section.openai.timeout_s,
                transport=transports.get("openai"),
            )
        )
    if section.embedded.enabled:
        embedded = _embedded_backend(config)
        if embedded is not None:
            backends.append(embedded)
    backends.extend(_host_backends(config, transports))
    gemini = section.gemini
    gemini_key = _gemini_key(config)
    if gemini.enabled and gemini_key:
        from nemo_tui.backends.gemini import GeminiBackend

        backends.append(
            GeminiBackend(
                gemini.model,
                api_key=gemini_key,
                base_url=gemini.url,
                timeout_s=gemini.timeout_s,
                transport=transports.get("gemini"),
                api_key_env=gemini.api_key_env,
            )
        )
    return backends


def _host_backends(
    config: cfg.Config, transports: Mapping[str, httpx.AsyncBaseTransport]
) -> list[Backend]:
    """The model servers of the lab's other hosts, named `ollama@HOST` and `openai@HOST`."""
    backends: list[Backend] = []
    for host in config.hosts:
        if host.ollama_url is not None:
            from nemo_tui.backends.ollama import OllamaBackend

            name = remote_backend_name("ollama", host.name)
            backends.append(
                OllamaBackend(
                    host.ollama_url,
                    keep_alive=config.backends.ollama.keep_alive,
                    connect_timeout_s=config.backends.ollama.timeout_s,
                    transport=transports.get(name),
                    name=name,
                )
            )
        if host.openai_url is not None:
            from nemo_tui.backends.openai_compat import OpenAICompatBackend

            name = remote_backend_name("openai", host.name)
            key_env = host.api_key_env
            backends.append(
                OpenAICompatBackend(
                    host.openai_url,
                    api_key=os.environ.get(key_env) if key_env else None,
                    api_key_env=key_env,
                    connect_timeout_s=config.backends.openai.timeout_s,
                    transport=transports.get(name),
                    name=name,
                )
            )
    return backends


def unusable_backends(config: cfg.Config) -> tuple[str, ...]:
    """Backends known to be unusable without asking them: Gemini when it is off or has no key.

    For commands that plan without probing, so they do not count on a cloud that cannot answer.
    """
    gemini = config.backends.gemini
    return () if gemini.enabled and _gemini_key(config) else ("gemini",)


def _gemini_key(config: cfg.Config) -> str | None:
    gemini = config.backends.gemini
    return os.environ.get(gemini.api_key_env) or gemini.api_key


def _embedded_backend(config: cfg.Config) -> Backend | None:
    """The embedded llama.cpp backend, or None when it cannot run here.

    Imported only here: it pulls in httpx and psutil, which the dashboard's first frame does
    not need.
    """
    if importlib.util.find_spec(_EMBEDDED_MODULE) is None:
        return None
    from nemo_tui.backends.embedded import create_embedded_backend

    return create_embedded_backend(config)


async def probe_all(backends: Sequence[Backend], timeout_s: float = 2.0) -> list[BackendHealth]:
    """Probe every backend at once; never raises.

    Args:
        backends: What to probe.
        timeout_s: How long one probe may take before it counts as down.

    Returns:
        One health per backend, in the same order.
    """
    return list(await asyncio.gather(*(_probe(b, timeout_s) for b in backends)))


async def _probe(backend: Backend, timeout_s: float) -> BackendHealth:
    url = str(getattr(backend, "url", ""))
    try:
        return await asyncio.wait_for(backend.health(), timeout_s)
    except TimeoutError:
        return BackendHealth(
            backend.name, url, up=False, detail=f"no answer within {format_seconds(timeout_s)}"
        )
    except Exception as exc:  # one faulty backend must not hide the others
        return BackendHealth(backend.name, url, up=False, detail=f"probe failed: {exc}")


def describe_health(healths: Sequence[BackendHealth]) -> list[str]:
    """One line per backend saying whether it is up, e.g. `ollama  up  v0.12.3  http://...`.

    A backend that is down gets its reason and fix instead:
    `ollama  down  connection refused — start it with \\`ollama serve\\``.
    """
    width = max((len(h.backend) for h in healths), default=0)
    lines: list[str] = []
    for health in healths:
        name = health.backend.ljust(width)
        if health.up:
            parts = [name, "up"]
            if health.version:
                version = health.version
                parts.append(f"v{version}" if version[:1].isdigit() else version)
            if health.detail:
                parts.append(health.detail)
            parts.append(health.url)
        else:
            parts = [name, "down", health.detail or f"unreachable at {health.url}"]
        lines.append("  ".join(parts))
    return lines
