"""Backend names across hosts: `ollama` on this machine, `ollama@gpu-box` on another host.

A small module of its own: the backends' discovery imports it, and it must stay cheap to import.
"""

from __future__ import annotations

HOST_SEPARATOR = "@"
"""Joins a backend's kind and its host in the name of another host's backend: `ollama@gpu-box`."""


def remote_backend_name(kind: str, host: str) -> str:
    """The name of a backend of `kind` (ollama, openai) on another host."""
    return f"{kind}{HOST_SEPARATOR}{host}"


def backend_kind(name: str) -> str:
    """The kind of a backend by its name: `ollama` for `ollama` and for `ollama@gpu-box`."""
    return name.partition(HOST_SEPARATOR)[0]


def backend_host(name: str) -> str | None:
    """The other host a backend runs on, or None for this machine (and the cloud)."""
    kind, separator, host = name.partition(HOST_SEPARATOR)
    return host if separator else None
