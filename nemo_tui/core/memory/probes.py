"""Memory probes: the kernel files and libraries a memory sample is read from.

This module owns the readers behind `SystemSampler` (in `nemo_tui.core.memory.profile`) and the
figures each one returns:

- host memory from `/proc/meminfo` (psutil on systems without it),
- this process's resident memory from `/proc/self/statm` (psutil on systems without it),
- Linux PSI memory pressure from `/proc/pressure/memory`,
- the cgroup v2 memory limit of this process's container or slice,
- per-GPU VRAM from NVML when the optional `nvidia-ml-py` is installed.

Each probe reads a handful of small files and never starts a subprocess (see
bench/bench_memory.py). A missing or unreadable source never raises: the probe falls back
(psutil, imported only then) or reports nothing (None, or no GPUs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from nemo_tui.units import bytes_to_mb

_KB = 1024


@dataclass(frozen=True, slots=True)
class GpuMemory:
    """The memory of one GPU, as NVML reports it or `--simulate-gpu` pretends;
    `nemo_tui.core.memory.profile` re-exports it."""

    index: int
    name: str
    total_mb: float
    used_mb: float
    simulated: bool = False
    """True for the GPU of `--simulate-gpu`, whose figures come from no device."""

    @property
    def free_mb(self) -> float:
        """VRAM not in use."""
        return max(0.0, self.total_mb - self.used_mb)


@dataclass(frozen=True, slots=True)
class HostMemory:
    """The host-wide figures of one sample, before any cgroup limit."""

    total_mb: float
    available_mb: float
    page_cache_mb: float
    swap_total_mb: float
    swap_used_mb: float


_MEMINFO_KEYS = frozenset(
    {b"MemTotal", b"MemAvailable", b"Buffers", b"Cached", b"SwapTotal", b"SwapFree"}
)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    data = _read(path)
    if data is None:
        return None
    try:
        return int(data)
    except ValueError:
        return None


def read_meminfo(path: str) -> HostMemory | None:
    """Read host memory from a Linux `meminfo` file.

    One read of one file: psutil reads it twice plus `/proc/vmstat` for the same figures.

    Args:
        path: The `meminfo` file, normally `/proc/meminfo`.

    Returns:
        The figures, or None when the file is missing or lacks MemTotal/MemAvailable.
    """
    data = _read(path)
    if data is None:
        return None
    kb: dict[bytes, int] = {}
    try:
        for line in data.splitlines():
            key, _, rest = line.partition(b":")
            if key in _MEMINFO_KEYS:
                kb[key] = int(rest.split()[0])
    except (ValueError, IndexError):
        return None
    if b"MemTotal" not in kb or b"MemAvailable" not in kb:
        return None
    swap_total = kb.get(b"SwapTotal", 0)
    return HostMemory(
        total_mb=kb[b"MemTotal"] / _KB,
        available_mb=kb[b"MemAvailable"] / _KB,
        page_cache_mb=(kb.get(b"Buffers", 0) + kb.get(b"Cached", 0)) / _KB,
        swap_total_mb=swap_total / _KB,
        swap_used_mb=(swap_total - kb.get(b"SwapFree", swap_total)) / _KB,
    )


def _psutil_host() -> HostMemory:
    import psutil

    virtual = psutil.virtual_memory()
    swap = psutil.swap_memory()
    # Only some platforms report cached/buffers (macOS does not).
    cache = float(getattr(virtual, "cached", 0)) + float(getattr(virtual, "buffers", 0))
    return HostMemory(
        total_mb=bytes_to_mb(virtual.total),
        available_mb=bytes_to_mb(virtual.available),
        page_cache_mb=bytes_to_mb(cache),
        swap_total_mb=bytes_to_mb(swap.total),
        swap_used_mb=bytes_to_mb(swap.used),
    )


def read_host_memory(meminfo_path: str) -> HostMemory:
    """Read host memory from `meminfo`, or from psutil where that file cannot be read.

    Args:
        meminfo_path: The `meminfo` file, normally `/proc/meminfo`.

    Returns:
        The figures; psutil's when the file is missing or incomplete (macOS, Windows).
    """
    return read_meminfo(meminfo_path) or _psutil_host()


class RssProbe:
    """The resident memory of this process.

    On Linux one small read of `statm`; psutil (imported only then) where that file is
    missing. Both give the same figure: psutil reads the same file.

    Args:
        proc_root: Where `/proc` is.
    """

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._statm = str(proc_root / "self" / "statm")
        self._page_bytes = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._process: Any = None
        """psutil's handle on this process, made on the first read that needs it."""

    def read_mb(self) -> float:
        """This process's RSS in MB."""
        try:
            with open(self._statm, "rb") as statm:
                resident_pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            if self._process is None:
                import psutil

                self._process = psutil.Process()
            return bytes_to_mb(self._process.memory_info().rss)
        return bytes_to_mb(resident_pages * self._page_bytes)


def read_psi(path: str) -> tuple[float | None, float | None]:
    """Read the `some` and `full` avg10 figures from a PSI file.

    Args:
        path: The pressure file, normally `/proc/pressure/memory`.

    Returns:
        `(some avg10, full avg10)`; None for each line that is missing or unreadable, and for
        both on kernels without PSI (the file is absent, or reading it fails when PSI is off).
    """
    data = _read(path)
    found: dict[bytes, float | None] = {}
    for line in data.splitlines() if data else ():
        kind, _, fields = line.partition(b" ")
        found[kind] = _avg10(fields)
    return found.get(b"some"), found.get(b"full")


def _avg10(fields: bytes) -> float | None:
    for field in fields.split():
        name, _, value = field.partition(b"=")
        if name == b"avg10":
            try:
                return float(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """The limit and working set of the cgroup that constrains this process most."""

    limit_mb: float
    used_mb: float

    @property
    def headroom_mb(self) -> float:
        """What can still be charged before the kernel reclaims hard or kills."""
        return max(0.0, self.limit_mb - self.used_mb)


class CgroupProbe:
    """Reads the cgroup v2 memory limit that applies to this process.

    The process's cgroup comes from `/proc/self/cgroup` (line `0::/path`). A limit set on any
    ancestor also applies (a systemd slice, a pod), so every level up to the root is checked and
    the one with the least headroom wins. When the path does not exist under `cgroup_root` (a
    container without a cgroup namespace sees the host's path), only the root is checked, which
    inside such a container is the container's own cgroup.

    Args:
        proc_root: Where `/proc` is.
        cgroup_root: Where the cgroup v2 hierarchy is mounted.
    """

    def __init__(self, *, proc_root: Path, cgroup_root: Path) -> None:
        # Resolved once: a process rarely changes cgroup, and each sample then reads only
        # the limit files.
        self._dirs = [
            str(directory)
            for directory in _cgroup_chain(proc_root, cgroup_root)
            if (directory / "memory.max").is_file()
        ]

    def read(self, host_total_mb: float) -> CgroupMemory | None:
        """The cgroup with the least headroom, ignoring limits at or above the host's total.

        Args:
            host_total_mb: The host's total memory; a limit this large constrains nothing.

        Returns:
            The constraining cgroup, or None when no limit applies.
        """
        tightest: CgroupMemory | None = None
        for directory in self._dirs:
            limit = _read_int(directory + "/memory.max")  # "max" (no limit) is not an int
            if limit is None or bytes_to_mb(limit) >= host_total_mb:
                continue
            current = _read_int(directory + "/memory.current")
            if current is None:
                continue
            # Inactive file cache is charged to the cgroup but reclaimed before any OOM kill;
            # counting it would report a container full of old reads as out of memory.
            working_set = max(0, current - _inactive_file(directory + "/memory.stat"))
            group = CgroupMemory(limit_mb=bytes_to_mb(limit), used_mb=bytes_to_mb(working_set))
            if tightest is None or group.headroom_mb < tightest.headroom_mb:
                tightest = group
        return tightest


def _cgroup_chain(proc_root: Path, cgroup_root: Path) -> list[Path]:
    data = _read(str(proc_root / "self" / "cgroup")) or b""
    relative = next(
        (line[3:].decode(errors="replace") for line in data.splitlines() if line[:3] == b"0::"),
        "/",
    )
    parts = PurePosixPath(relative).parts[1:]
    leaf = cgroup_root.joinpath(*parts)
    # ".." appears when the process sits outside its cgroup namespace; never walk out of the root.
    if ".." in parts or not leaf.is_dir():
        return [cgroup_root]
    return [leaf, *(parent for parent in leaf.parents if parent.is_relative_to(cgroup_root))]


def _inactive_file(path: str) -> int:
    for line in (_read(path) or b"").splitlines():
        key, _, value = line.partition(b" ")
        if key == b"inactive_file":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class NvmlProbe:
    """Reads per-GPU memory through NVML (`pynvml`, from the optional `nvidia-ml-py`).

    NVML is loaded and initialised on the first read only, and only once. A missing package,
    a missing driver or any NVML failure means no GPUs are reported; it never raises.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._devices: list[tuple[int, str, Any]] | None = None

    def read(self) -> tuple[GpuMemory, ...]:
        """The memory of every GPU NVML can see; empty when there is none or NVML is absent."""
        if self._devices is None:
            self._devices = self._start()
        if not self._devices:
            return ()
        try:
            infos = [
                (index, name, self._nvml.nvmlDeviceGetMemoryInfo(handle))
                for index, name, handle in self._devices
            ]
        except (self._nvml.NVMLError, OSError):
            return ()
        return tuple(
            GpuMemory(index, name, bytes_to_mb(info.total), bytes_to_mb(info.used))
            for index, name, info in infos
        )

    def _start(self) -> list[tuple[int, str, Any]]:
        try:
            import pynvml
        except ImportError:
            return []
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            devices = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                # nvidia-ml-py before 11.515 returns bytes.
                if isinstance(name, bytes):
                    name = name.decode(errors="replace")
                devices.append((index, str(name), handle))
        except (pynvml.NVMLError, OSError):
            return []
        return devices
