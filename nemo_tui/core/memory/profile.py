"""Memory snapshots: how much the machine (or its container) has free, how hard it is pressed.

This module is the public face of memory sampling. It owns:

- the `MemoryProfile` snapshot (with its `GpuMemory` entries),
- the samplers that produce one: `SystemSampler` for this machine, which combines the probes in
  `nemo_tui.core.memory.probes` (meminfo, PSI, cgroup v2, NVML), `SimulatedSampler` for a
  machine of a chosen size (`--simulate-memory`, with `--simulate-gpu`), and
  `SimulatedGpuSampler` for this machine's live memory with a simulated GPU (`--simulate-gpu`
  alone),
- `with_loaded_models`, which counts loaded models in the simulated part of a profile, since a
  simulated machine's figures cannot see what the model servers hold,
- the pressure level (`normal`, `elevated`, `critical`) of a profile, and `PressureWatcher`,
  which turns a stream of profiles into level changes with hysteresis, so usage hovering at a
  threshold does not make the level flap.

A sample reads a handful of small kernel files and never starts a subprocess, so the monitor can
take one every second without showing up in a profile (see bench/bench_memory.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

# GpuMemory is re-exported (below): it is part of every MemoryProfile, so callers import it here.
from nemo_tui.core.memory.probes import (
    CgroupProbe,
    NvmlProbe,
    RssProbe,
    read_host_memory,
    read_psi,
)
from nemo_tui.core.memory.probes import GpuMemory as GpuMemory
from nemo_tui.errors import UsageError
from nemo_tui.units import format_mb, parse_size_mb

CRITICAL_USAGE = 0.90
"""Usage share above which pressure is critical whatever the configured threshold."""
PSI_SOME_ELEVATED = 10.0
"""PSI `some avg10` (% of time at least one task stalled on memory) that marks elevated pressure."""
PSI_FULL_CRITICAL = 5.0
"""PSI `full avg10` (% of time all tasks stalled on memory) that marks critical pressure."""
USAGE_RELEASE_MARGIN = 0.02
"""How far (2 points of share) usage must fall below a threshold to release the level it raised."""
PSI_SOME_RELEASE_MARGIN = 2.0
"""How far PSI `some avg10` must fall below `PSI_SOME_ELEVATED` to release elevated pressure."""
PSI_FULL_RELEASE_MARGIN = 1.0
"""How far PSI `full avg10` must fall below `PSI_FULL_CRITICAL` to release critical pressure."""
SIMULATED_AVAILABLE_SHARE = 0.75
"""Share of a simulated machine's total that is free when the user gives no AVAILABLE."""


class PressureLevel(StrEnum):
    """How hard memory is pressed, from the usage share and Linux PSI."""

    NORMAL = "normal"
    ELEVATED = "elevated"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class MemoryProfile:
    """One snapshot of the memory this process can count on.

    When a cgroup limit applies, `total_mb` and `available_mb` describe the container, not the
    host; the host's own figures stay in `host_total_mb` and `host_available_mb`.
    """

    total_mb: float
    """Effective total: the host's, or the cgroup limit when one applies."""
    available_mb: float
    """What can still be allocated without swapping or hitting the cgroup limit."""
    used_mb: float
    """`total_mb - available_mb`."""
    percent: float
    """Used share of the effective total, 0..100."""
    swap_total_mb: float
    swap_used_mb: float
    process_rss_mb: float
    """Resident memory of this process (an in-process model counts here)."""
    page_cache_mb: float
    """Host page cache and buffers; memory-mapped model weights live here, not in any RSS."""
    psi_some_avg10: float | None
    """PSI `some avg10`; None where the kernel does not report PSI."""
    psi_full_avg10: float | None
    """PSI `full avg10`; None where the kernel does not report PSI."""
    cgroup_limit_mb: float | None
    """The tightest cgroup memory limit that applies, or None."""
    cgroup_used_mb: float | None
    """Working set charged to that cgroup (usage minus inactive file cache), or None."""
    host_total_mb: float
    host_available_mb: float
    gpus: tuple[GpuMemory, ...] = ()
    simulated: bool = False
    """True when the RAM, swap and page cache figures come from `--simulate-memory`, not from
    this machine; a simulated GPU is marked on its own `GpuMemory`."""
    timestamp: float = 0.0
    """`time.time()` when sampled."""

    @property
    def usage_fraction(self) -> float:
        """Used share of the effective total, 0..1."""
        return _usage(self.total_mb, self.available_mb)

    @property
    def any_simulated(self) -> bool:
        """Whether any figure is pretended: the machine's memory or one of its GPUs."""
        return self.simulated or any(gpu.simulated for gpu in self.gpus)

    def with_available(self, available_mb: float) -> MemoryProfile:
        """A copy of this profile with a different amount of available memory.

        Used figures follow; the value is clamped to 0..total. Without a cgroup limit the host's
        availability follows too, so host and effective figures stay equal as they are when
        sampled.

        Args:
            available_mb: The availability to pretend, in MB.

        Returns:
            The adjusted copy.
        """
        available = min(max(0.0, available_mb), self.total_mb)
        host_available = available if self.cgroup_limit_mb is None else self.host_available_mb
        return replace(
            self,
            available_mb=available,
            used_mb=self.total_mb - available,
            percent=_usage(self.total_mb, available) * 100,
            host_available_mb=host_available,
        )


def _usage(total_mb: float, available_mb: float) -> float:
    return (total_mb - available_mb) / total_mb if total_mb > 0 else 0.0


def pressure_level(profile: MemoryProfile, pressure_threshold: float) -> PressureLevel:
    """The pressure level of a profile.

    Critical: usage above `CRITICAL_USAGE`, or PSI full avg10 above `PSI_FULL_CRITICAL`.
    Elevated: usage above `pressure_threshold`, or PSI some avg10 above `PSI_SOME_ELEVATED`.

    Args:
        profile: The snapshot to judge.
        pressure_threshold: The configured usage share (0..1) that marks elevated pressure.

    Returns:
        The level. This judges one profile alone; `PressureWatcher` adds hysteresis on top.
    """
    return _level(profile, pressure_threshold, held=PressureLevel.NORMAL)


def _level(
    profile: MemoryProfile, pressure_threshold: float, *, held: PressureLevel
) -> PressureLevel:
    # Levels up to the one already held are judged against thresholds lowered by the release
    # margins, so a level ends only once every rule that could keep it is clearly below;
    # levels above it still need their full threshold, so rising stays immediate.
    keep_critical = held is PressureLevel.CRITICAL
    keep_elevated = held is not PressureLevel.NORMAL
    usage = profile.usage_fraction
    if _above(usage, CRITICAL_USAGE, USAGE_RELEASE_MARGIN, keep_critical) or _above(
        profile.psi_full_avg10, PSI_FULL_CRITICAL, PSI_FULL_RELEASE_MARGIN, keep_critical
    ):
        return PressureLevel.CRITICAL
    if _above(usage, pressure_threshold, USAGE_RELEASE_MARGIN, keep_elevated) or _above(
        profile.psi_some_avg10, PSI_SOME_ELEVATED, PSI_SOME_RELEASE_MARGIN, keep_elevated
    ):
        return PressureLevel.ELEVATED
    return PressureLevel.NORMAL


def _above(value: float | None, threshold: float, margin: float, held: bool) -> bool:
    if value is None:
        return False
    return value > (threshold - margin if held else threshold)


class MemorySampler(Protocol):
    """Anything that can take a memory snapshot: the real machine or a simulated one."""

    def sample(self) -> MemoryProfile:
        """Take one snapshot."""
        ...


class SystemSampler:
    """Samples this machine: host memory, PSI, the cgroup limit, this process's RSS and GPUs.

    Args:
        proc_root: Where `/proc` is; tests point it at fake files.
        cgroup_root: Where the cgroup v2 hierarchy is mounted.
        use_gpu: Whether to ask NVML for GPUs (the first sample then pays NVML's start-up).
    """

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        use_gpu: bool = True,
    ) -> None:
        self._meminfo = str(proc_root / "meminfo")
        self._psi = str(proc_root / "pressure" / "memory")
        self._cgroup = CgroupProbe(proc_root=proc_root, cgroup_root=cgroup_root)
        self._gpu = NvmlProbe() if use_gpu else None
        self._rss = RssProbe(proc_root)

    def sample(self) -> MemoryProfile:
        """Take one snapshot of this machine.

        Returns:
            The profile; with a cgroup limit, total is the limit and available is the smaller
            of the host's availability and the cgroup's headroom.
        """
        host = read_host_memory(self._meminfo)
        some, full = read_psi(self._psi)
        group = self._cgroup.read(host.total_mb)
        total = host.total_mb
        available = host.available_mb
        if group is not None:
            total = group.limit_mb
            available = min(available, group.headroom_mb)
        return MemoryProfile(
            total_mb=total,
            available_mb=available,
            used_mb=total - available,
            percent=_usage(total, available) * 100,
            swap_total_mb=host.swap_total_mb,
            swap_used_mb=host.swap_used_mb,
            process_rss_mb=self._rss.read_mb(),
            page_cache_mb=host.page_cache_mb,
            psi_some_avg10=some,
            psi_full_avg10=full,
            cgroup_limit_mb=group.limit_mb if group else None,
            cgroup_used_mb=group.used_mb if group else None,
            host_total_mb=host.total_mb,
            host_available_mb=host.available_mb,
            gpus=self._gpu.read() if self._gpu else (),
            timestamp=time.time(),
        )


class SimulatedSampler:
    """A machine of a chosen size, for trying nemo-tui as if on a 2, 4 or 8 GB computer.

    The figures it samples are the machine before any model is loaded: they stay fixed, and the
    engine adds the models it knows to be loaded (`with_loaded_models`). The RSS of this process
    is still measured. There is no swap, PSI or cgroup, and no GPU unless one is given.

    Args:
        total_mb: The simulated total memory.
        available_mb: The simulated free memory; defaults to 75 % of the total.
        gpu_vram_mb: VRAM of one simulated GPU, or None for none.

    Raises:
        ValueError: total or VRAM is not positive, or available is outside 0..total.
    """

    def __init__(
        self,
        total_mb: float,
        available_mb: float | None = None,
        gpu_vram_mb: float | None = None,
    ) -> None:
        available = total_mb * SIMULATED_AVAILABLE_SHARE if available_mb is None else available_mb
        if total_mb <= 0 or not 0 <= available <= total_mb:
            raise ValueError(f"cannot simulate {available} MB free of {total_mb} MB")
        self._total = total_mb
        self._available = available
        self._gpus = () if gpu_vram_mb is None else (_simulated_gpu(gpu_vram_mb),)
        self._rss = RssProbe()

    def sample(self) -> MemoryProfile:
        """Take one snapshot of the simulated machine, marked `simulated`."""
        return MemoryProfile(
            total_mb=self._total,
            available_mb=self._available,
            used_mb=self._total - self._available,
            percent=_usage(self._total, self._available) * 100,
            swap_total_mb=0.0,
            swap_used_mb=0.0,
            process_rss_mb=self._rss.read_mb(),
            page_cache_mb=0.0,
            psi_some_avg10=None,
            psi_full_avg10=None,
            cgroup_limit_mb=None,
            cgroup_used_mb=None,
            host_total_mb=self._total,
            host_available_mb=self._available,
            gpus=self._gpus,
            simulated=True,
            timestamp=time.time(),
        )


class SimulatedGpuSampler:
    """This machine's live memory with one simulated GPU in place of its real ones.

    Every sample reads RAM, swap, PSI and the cgroup afresh; only the GPU is pretended.

    Args:
        gpu_vram_mb: VRAM of the simulated GPU.
        live: Where the live figures come from; by default this machine, without asking NVML
            (its GPUs are replaced anyway).

    Raises:
        ValueError: the VRAM is not positive.
    """

    def __init__(self, gpu_vram_mb: float, live: MemorySampler | None = None) -> None:
        self._gpus = (_simulated_gpu(gpu_vram_mb),)
        self._live = live or SystemSampler(use_gpu=False)

    def sample(self) -> MemoryProfile:
        """Take one snapshot of this machine, with the simulated GPU as its only GPU."""
        return replace(self._live.sample(), gpus=self._gpus)


def _simulated_gpu(vram_mb: float) -> GpuMemory:
    if vram_mb <= 0:
        raise ValueError(f"cannot simulate a GPU with {vram_mb} MB of VRAM")
    return GpuMemory(0, "Simulated GPU", float(vram_mb), 0.0, simulated=True)


def with_loaded_models(
    profile: MemoryProfile, models_mb: float, models_vram_mb: float = 0.0
) -> MemoryProfile:
    """A profile with loaded models counted in its simulated parts, as that machine would hold
    them.

    Live figures already include what the model servers hold and are left alone. On simulated
    RAM the models take their whole size, less the part a simulated GPU holds: without a
    simulated GPU the simulated machine has nowhere else to keep them, whatever this host's
    GPU does. The first simulated GPU takes the part the backends report in VRAM. Both are
    clamped to their totals.

    Args:
        profile: A sample; its simulated figures describe the machine with no model loaded.
        models_mb: Everything the loaded models occupy, RAM and VRAM together.
        models_vram_mb: The part of it the backends placed in GPU memory.

    Returns:
        The profile with the models counted; the same profile when nothing in it is simulated.
    """
    simulated_gpu = next((gpu for gpu in profile.gpus if gpu.simulated), None)
    counted = profile
    if simulated_gpu is not None and models_vram_mb > 0:
        used = min(simulated_gpu.total_mb, simulated_gpu.used_mb + models_vram_mb)
        filled = replace(simulated_gpu, used_mb=used)
        counted = replace(
            profile, gpus=tuple(filled if gpu is simulated_gpu else gpu for gpu in profile.gpus)
        )
    if not profile.simulated:
        return counted
    in_ram = models_mb - models_vram_mb if simulated_gpu is not None else models_mb
    return counted.with_available(profile.available_mb - max(0.0, in_ram))


def parse_simulation(spec: str) -> tuple[float, float]:
    """Parse `--simulate-memory TOTAL[:AVAILABLE]`, such as `8GB`, `4GB:1.5GB` or `2048MB`.

    Args:
        spec: The flag's value.

    Returns:
        `(total_mb, available_mb)`; available is 75 % of total when not given.

    Raises:
        UsageError: a size cannot be read, or AVAILABLE is larger than TOTAL.
    """
    fix = "write TOTAL or TOTAL:AVAILABLE, such as 8GB or 4GB:1.5GB"
    parts = spec.split(":")
    if len(parts) > 2:
        raise UsageError(f"cannot simulate '{spec}': more than one ':'", fix=fix)
    try:
        sizes = [parse_size_mb(part) for part in parts]
    except UsageError as error:
        raise UsageError(f"cannot simulate '{spec}': {error.message}", fix=fix) from error
    total = sizes[0]
    available = sizes[1] if len(sizes) == 2 else total * SIMULATED_AVAILABLE_SHARE
    if available > total:
        raise UsageError(
            f"cannot simulate '{spec}': {format_mb(available)} available is more than "
            f"{format_mb(total)} total",
            fix="give an AVAILABLE no larger than TOTAL, such as 4GB:3GB",
        )
    return total, available


@dataclass(frozen=True, slots=True)
class PressureChange:
    """The pressure level moved; the engine and UI react to this (optimize, warn, unload)."""

    previous: PressureLevel
    current: PressureLevel
    profile: MemoryProfile


class PressureWatcher:
    """Turns a stream of profiles into level changes, the automatic optimization triggers.

    The levels have hysteresis, so usage hovering at a threshold (75.1 %, 74.9 %, 75.2 % ...
    against the default 75 %) gives one change, not one per sample. Rising is immediate: a
    profile past a threshold raises the level at once, as `pressure_level` would. Dropping is
    not: a level is released only once usage is at least `USAGE_RELEASE_MARGIN` (2 points)
    below the threshold that raised it, PSI `some avg10` at least `PSI_SOME_RELEASE_MARGIN`
    below `PSI_SOME_ELEVATED` and PSI `full avg10` at least `PSI_FULL_RELEASE_MARGIN` below
    `PSI_FULL_CRITICAL`. Any rule still within its margin holds the level, and leaving critical
    lands on elevated while usage or PSI is still within elevated's margins.

    Args:
        pressure_threshold: The configured usage share (0..1) that marks elevated pressure.
    """

    def __init__(self, pressure_threshold: float) -> None:
        self._threshold = pressure_threshold
        self._level = PressureLevel.NORMAL

    @property
    def level(self) -> PressureLevel:
        """The level held after the last profile, with hysteresis; normal before the first."""
        return self._level

    def update(self, profile: MemoryProfile) -> PressureChange | None:
        """Take a new profile and report whether the level changed.

        Args:
            profile: The latest snapshot.

        Returns:
            The change, or None when the level is the same as before, including while a
            falling figure is still within its release margin. The first profile reports a
            change (from normal) only when it is not normal.
        """
        current = _level(profile, self._threshold, held=self._level)
        if current == self._level:
            return None
        change = PressureChange(previous=self._level, current=current, profile=profile)
        self._level = current
        return change
