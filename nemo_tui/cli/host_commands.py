"""`nemo-tui hosts`: the lab's hosts, their memory and the models loaded there; and the `hosts`
list of `status --json`."""

from __future__ import annotations

import argparse
import json

from nemo_tui.cli.context import CommandContext, make_context
from nemo_tui.cli.output import show
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import MemoryProfile, MemorySampler
from nemo_tui.hosts.status import HostMemory, HostStatus, local_status
from nemo_tui.units import format_mb


def hosts(args: argparse.Namespace) -> int:
    """`nemo-tui hosts`: ask every host once and print one line per host (or JSON).

    A host that is down is listed with why; it does not make the command fail.
    """
    import asyncio

    ctx = make_context(args)
    statuses = asyncio.run(refresh_once(ctx.config, ctx.sampler))
    if args.json:
        print(json.dumps([status.to_json() for status in statuses], indent=2))
        return 0
    for line in describe_hosts(statuses):
        show(line)
    return 0


def status_hosts(ctx: CommandContext, profile: MemoryProfile) -> list[dict[str, object]]:
    """The `hosts` list of `status --json`.

    With no other host configured, nothing is asked: the local host is the sample `status`
    already took, without its models. With hosts, every host is asked once, and the local host
    is described by that same sample.

    Args:
        ctx: The command's context.
        profile: The sample `status` reports as `memory`.
    """
    if not ctx.config.hosts:
        return [local_status(ctx.config, profile, checked_at=profile.timestamp).to_json()]
    # asyncio costs `status` ~25 ms of imports, which only the probes need.
    import asyncio

    statuses = asyncio.run(refresh_once(ctx.config, TakenSample(profile)))
    return [status.to_json() for status in statuses]


async def refresh_once(config: Config, sampler: MemorySampler) -> list[HostStatus]:
    """Ask every host once and close the connections.

    Args:
        config: The configuration with the hosts.
        sampler: This machine's memory.
    """
    from nemo_tui.hosts.monitor import HostMonitor

    monitor = HostMonitor(config, sampler)
    try:
        return await monitor.refresh()
    finally:
        await monitor.aclose()


class TakenSample:
    """A sampler that hands out a sample already taken, so `status` reports one sample."""

    def __init__(self, profile: MemoryProfile) -> None:
        self._profile = profile

    def sample(self) -> MemoryProfile:
        """The sample given at creation, every time."""
        return self._profile


def describe_hosts(statuses: list[HostStatus]) -> list[str]:
    """One line per host: name, up or down and why, memory, pressure, models, latency.

    Args:
        statuses: The hosts.
    """
    width = max((len(status.name) for status in statuses), default=0)
    lines: list[str] = []
    for status in statuses:
        name = status.name.ljust(width)
        if not status.up:
            lines.append(f"{name}  down  {status.reason or 'no answer'}")
            continue
        parts = [name, "up  ", _describe_memory(status.memory)]
        if status.pressure is not None:
            parts.append(f"pressure {status.pressure.value}")
        parts.append(_describe_models(status))
        if status.latency_ms is not None:
            parts.append(f"{status.latency_ms:.0f} ms")
        if status.reason:
            parts.append(f"(not answering: {status.reason})")
        lines.append("  ".join(parts))
    return lines


def _describe_memory(memory: HostMemory | None) -> str:
    if memory is None:
        return "memory unknown"
    if memory.total_mb is not None and memory.available_mb is not None:
        return (
            f"{format_mb(memory.available_mb)} free of {format_mb(memory.total_mb)}"
            f" ({memory.ram_source})"
        )
    if memory.models_mb is not None:
        return f"models use {format_mb(memory.models_mb)} ({memory.source})"
    return f"memory unknown ({memory.source})" if memory.source else "memory unknown"


def _describe_models(status: HostStatus) -> str:
    if not status.models:
        told = status.memory is not None and status.memory.models_mb is not None
        return "no model loaded" if told else "models unknown"
    shown = [
        f"{model.name} ({format_mb(model.size_mb)})" if model.size_mb is not None else model.name
        for model in status.models
    ]
    return "models: " + ", ".join(shown)
