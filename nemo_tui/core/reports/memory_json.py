"""Stable JSON shapes for what nemo-tui reports, shared by the CLI, `stats` and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence

from nemo_tui.core.memory.profile import GpuMemory, MemoryProfile, PressureLevel


def mb_json(value: float | None) -> float | None:
    """A size in MB as JSON shows it: to 0.1 MB, null when unknown."""
    return None if value is None else round(value, 1)


def gpus_json(gpus: Sequence[GpuMemory]) -> list[dict[str, object]]:
    """The `gpus` list of a `memory` object."""
    return [
        {
            "index": gpu.index,
            "name": gpu.name,
            "total_mb": mb_json(gpu.total_mb),
            "used_mb": mb_json(gpu.used_mb),
            "simulated": gpu.simulated,
        }
        for gpu in gpus
    ]


def memory_json(profile: MemoryProfile, pressure: PressureLevel) -> dict[str, object]:
    """The `memory` object of `status --json` (keys are a stable interface for scripts).

    `simulated` says the RAM figures are pretended (`--simulate-memory`); each GPU says the same
    of its own (`--simulate-gpu`).
    """
    return {
        "total_mb": mb_json(profile.total_mb),
        "available_mb": mb_json(profile.available_mb),
        "used_mb": mb_json(profile.used_mb),
        "percent": round(profile.percent, 1),
        "swap_total_mb": mb_json(profile.swap_total_mb),
        "swap_used_mb": mb_json(profile.swap_used_mb),
        "pressure": pressure.value,
        "psi_some_avg10": profile.psi_some_avg10,
        "psi_full_avg10": profile.psi_full_avg10,
        "cgroup_limit_mb": mb_json(profile.cgroup_limit_mb),
        "cgroup_used_mb": mb_json(profile.cgroup_used_mb),
        "process_rss_mb": mb_json(profile.process_rss_mb),
        "page_cache_mb": mb_json(profile.page_cache_mb),
        "simulated": profile.simulated,
        "gpus": gpus_json(profile.gpus),
    }
