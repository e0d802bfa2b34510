"""Stable JSON shapes for what nemo-tui reports, shared by the CLI, `stats` and the dashboard."""

from __future__ import annotations

from nemo_tui.core.memory.profile import MemoryProfile, PressureLevel


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def memory_json(profile: MemoryProfile, pressure: PressureLevel) -> dict[str, object]:
    """The `memory` object of `status --json` (keys are a stable interface for scripts).

    `simulated` says the RAM figures are pretended (`--simulate-memory`); each GPU says the same
    of its own (`--simulate-gpu`).
    """
    return {
        "total_mb": _mb(profile.total_mb),
        "available_mb": _mb(profile.available_mb),
        "used_mb": _mb(profile.used_mb),
        "percent": round(profile.percent, 1),
        "swap_total_mb": _mb(profile.swap_total_mb),
        "swap_used_mb": _mb(profile.swap_used_mb),
        "pressure": pressure.value,
        "psi_some_avg10": profile.psi_some_avg10,
        "psi_full_avg10": profile.psi_full_avg10,
        "cgroup_limit_mb": _mb(profile.cgroup_limit_mb),
        "cgroup_used_mb": _mb(profile.cgroup_used_mb),
        "process_rss_mb": _mb(profile.process_rss_mb),
        "page_cache_mb": _mb(profile.page_cache_mb),
        "simulated": profile.simulated,
        "gpus": [
            {
                "index": gpu.index,
                "name": gpu.name,
                "total_mb": _mb(gpu.total_mb),
                "used_mb": _mb(gpu.used_mb),
                "simulated": gpu.simulated,
            }
            for gpu in profile.gpus
        ],
    }
