"""Memory snapshots, pressure levels and simulation, against fake /proc and cgroup files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from nemo_tui.core.memory.probes import NvmlProbe, RssProbe, read_psi
from nemo_tui.core.memory.profile import (
    GpuMemory,
    MemoryProfile,
    PressureChange,
    PressureLevel,
    PressureWatcher,
    SimulatedGpuSampler,
    SimulatedSampler,
    SystemSampler,
    parse_simulation,
    pressure_level,
    with_loaded_models,
)
from nemo_tui.errors import UsageError

GIB = 1024**3
MIB = 1024**2

# An 8 GB host with 4 GB available, 1124 MB of page cache and 512 MB of a 2 GB swap in use.
MEMINFO = """\
MemTotal:        8388608 kB
MemFree:         3000000 kB
MemAvailable:    4194304 kB
Buffers:          102400 kB
Cached:          1048576 kB
SwapCached:            0 kB
SwapTotal:       2097152 kB
SwapFree:        1572864 kB
"""


@dataclass
class FakeMachine:
    """Fake /proc and cgroup trees under a temporary directory."""

    proc: Path
    cgroup: Path

    def write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def own_cgroup(self, path: str) -> None:
        self.write(self.proc / "self" / "cgroup", f"0::{path}\n")

    def limit(self, path: str, limit: str, current: int, inactive_file: int = 0) -> None:
        directory = self.cgroup / path.strip("/")
        self.write(directory / "memory.max", f"{limit}\n")
        self.write(directory / "memory.current", f"{current}\n")
        self.write(directory / "memory.stat", f"anon 1\nfile 2\ninactive_file {inactive_file}\n")

    def psi(self, text: str) -> None:
        self.write(self.proc / "pressure" / "memory", text)

    def sample(self) -> MemoryProfile:
        return SystemSampler(proc_root=self.proc, cgroup_root=self.cgroup, use_gpu=False).sample()


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    fake = FakeMachine(proc=tmp_path / "proc", cgroup=tmp_path / "cgroup")
    fake.write(fake.proc / "meminfo", MEMINFO)
    fake.own_cgroup("/")
    fake.cgroup.mkdir()
    return fake


def profile(usage: float, *, some: float | None = None, full: float | None = None) -> MemoryProfile:
    sampled = SimulatedSampler(1000.0, 1000.0 * (1 - usage)).sample()
    return replace(sampled, psi_some_avg10=some, psi_full_avg10=full)


# Host memory


def test_host_figures_come_from_meminfo(machine: FakeMachine) -> None:
    sampled = machine.sample()
    assert sampled.total_mb == 8192
    assert sampled.available_mb == 4096
    assert sampled.used_mb == 4096
    assert sampled.percent == 50
    assert sampled.usage_fraction == 0.5
    assert sampled.page_cache_mb == 1124
    assert (sampled.swap_total_mb, sampled.swap_used_mb) == (2048, 512)
    assert (sampled.host_total_mb, sampled.host_available_mb) == (8192, 4096)
    assert sampled.cgroup_limit_mb is None and sampled.cgroup_used_mb is None
    assert sampled.gpus == ()
    assert not sampled.simulated
    assert sampled.process_rss_mb > 0
    assert sampled.timestamp > 0


def test_without_meminfo_psutil_reports_this_machine(machine: FakeMachine) -> None:
    (machine.proc / "meminfo").unlink()
    sampled = machine.sample()
    assert sampled.total_mb > 0
    assert 0 <= sampled.available_mb <= sampled.total_mb
    assert sampled.used_mb == pytest.approx(sampled.total_mb - sampled.available_mb)


# PSI


def test_psi_figures_are_reported(machine: FakeMachine) -> None:
    machine.psi(
        "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n"
        "full avg10=3.25 avg60=1.00 avg300=0.50 total=45\n"
    )
    sampled = machine.sample()
    assert (sampled.psi_some_avg10, sampled.psi_full_avg10) == (12.5, 3.25)


def test_psi_is_none_on_kernels_without_it(machine: FakeMachine) -> None:
    sampled = machine.sample()
    assert (sampled.psi_some_avg10, sampled.psi_full_avg10) == (None, None)


def test_psi_missing_full_line_or_bad_value_is_none(tmp_path: Path) -> None:
    path = tmp_path / "memory"
    path.write_text("some avg10=1.50 avg60=0.00 avg300=0.00 total=0\n")
    assert read_psi(str(path)) == (1.5, None)
    path.write_text("some avg10=oops\nfull avg60=1.0\n")
    assert read_psi(str(path)) == (None, None)


# cgroup v2


def test_cgroup_limit_shrinks_total_and_available(machine: FakeMachine) -> None:
    machine.limit("/", str(2 * GIB), current=1 * GIB)
    sampled = machine.sample()
    assert sampled.total_mb == 2048
    assert sampled.available_mb == 1024
    assert sampled.percent == 50
    assert (sampled.cgroup_limit_mb, sampled.cgroup_used_mb) == (2048, 1024)
    assert (sampled.host_total_mb, sampled.host_available_mb) == (8192, 4096)


def test_cgroup_max_means_no_limit(machine: FakeMachine) -> None:
    machine.limit("/", "max", current=1 * GIB)
    sampled = machine.sample()
    assert sampled.total_mb == 8192
    assert sampled.cgroup_limit_mb is None


def test_no_cgroup_files_means_no_limit(machine: FakeMachine) -> None:
    machine.own_cgroup("/user.slice/session-1.scope")
    assert machine.sample().cgroup_limit_mb is None


def test_cgroup_limit_above_host_total_is_ignored(machine: FakeMachine) -> None:
    machine.limit("/", str(64 * GIB), current=1 * GIB)
    sampled = machine.sample()
    assert sampled.total_mb == 8192
    assert sampled.cgroup_limit_mb is None


def test_host_availability_wins_when_smaller_than_cgroup_headroom(machine: FakeMachine) -> None:
    machine.limit("/", str(6 * GIB), current=1 * GIB)
    sampled = machine.sample()
    assert sampled.total_mb == 6144
    assert sampled.available_mb == 4096


def test_inactive_file_cache_is_not_counted_as_used(machine: FakeMachine) -> None:
    machine.limit("/", str(2 * GIB), current=1536 * MIB, inactive_file=512 * MIB)
    sampled = machine.sample()
    assert sampled.cgroup_used_mb == 1024
    assert sampled.available_mb == 1024


def test_limit_on_a_parent_slice_applies(machine: FakeMachine) -> None:
    machine.own_cgroup("/user.slice/app.scope")
    machine.limit("/user.slice/app.scope", "max", current=1 * GIB)
    machine.limit("/user.slice", str(3 * GIB), current=2560 * MIB)
    sampled = machine.sample()
    assert sampled.cgroup_limit_mb == 3072
    assert sampled.available_mb == 512


def test_tightest_headroom_wins_among_nested_limits(machine: FakeMachine) -> None:
    machine.own_cgroup("/pod/app")
    machine.limit("/pod/app", str(4 * GIB), current=1 * GIB)
    machine.limit("/pod", str(6 * GIB), current=5 * GIB)
    sampled = machine.sample()
    assert (sampled.cgroup_limit_mb, sampled.available_mb) == (6144, 1024)


def test_container_without_cgroup_namespace_uses_the_root(machine: FakeMachine) -> None:
    machine.own_cgroup("/system.slice/docker-abc.scope")
    machine.limit("/", str(2 * GIB), current=512 * MIB)
    assert machine.sample().cgroup_limit_mb == 2048


def test_cgroup_path_outside_the_namespace_uses_the_root(machine: FakeMachine) -> None:
    machine.own_cgroup("/../escape")
    machine.limit("/", str(2 * GIB), current=512 * MIB)
    machine.limit("/../escape", str(1 * GIB), current=0)
    assert machine.sample().cgroup_limit_mb == 2048


# Pressure levels


@pytest.mark.parametrize(
    ("usage", "some", "full", "expected"),
    [
        (0.50, None, None, PressureLevel.NORMAL),
        (0.75, None, None, PressureLevel.NORMAL),
        (0.80, None, None, PressureLevel.ELEVATED),
        (0.90, None, None, PressureLevel.ELEVATED),
        (0.95, None, None, PressureLevel.CRITICAL),
        (0.10, 10.0, None, PressureLevel.NORMAL),
        (0.10, 10.5, None, PressureLevel.ELEVATED),
        (0.10, 0.0, 5.0, PressureLevel.NORMAL),
        (0.10, 20.0, 5.5, PressureLevel.CRITICAL),
    ],
)
def test_pressure_level_rules(
    usage: float, some: float | None, full: float | None, expected: PressureLevel
) -> None:
    assert pressure_level(profile(usage, some=some, full=full), 0.75) is expected


def test_pressure_threshold_is_configurable() -> None:
    assert pressure_level(profile(0.6), 0.5) is PressureLevel.ELEVATED
    assert pressure_level(profile(0.6), 0.7) is PressureLevel.NORMAL


def test_watcher_starts_normal() -> None:
    watcher = PressureWatcher(0.75)
    assert watcher.level is PressureLevel.NORMAL
    assert watcher.update(profile(0.5)) is None


def test_watcher_reports_only_changes() -> None:
    watcher = PressureWatcher(0.75)

    high = profile(0.8)
    assert watcher.update(high) == PressureChange(
        PressureLevel.NORMAL, PressureLevel.ELEVATED, high
    )
    assert watcher.update(profile(0.85)) is None

    change = watcher.update(profile(0.1, full=9.0))
    assert change is not None
    assert (change.previous, change.current) == (PressureLevel.ELEVATED, PressureLevel.CRITICAL)

    change = watcher.update(profile(0.2))
    assert change is not None
    assert change.current is PressureLevel.NORMAL
    assert watcher.level is PressureLevel.NORMAL


def test_watcher_first_update_under_pressure_is_a_change() -> None:
    change = PressureWatcher(0.75).update(profile(0.95))
    assert change is not None
    assert (change.previous, change.current) == (PressureLevel.NORMAL, PressureLevel.CRITICAL)


def levels_seen(watcher: PressureWatcher, profiles: list[MemoryProfile]) -> list[PressureLevel]:
    return [change.current for p in profiles if (change := watcher.update(p)) is not None]


def test_usage_hovering_at_the_threshold_changes_the_level_once() -> None:
    watcher = PressureWatcher(0.75)
    hovering = [profile(usage) for usage in (0.76, 0.74, 0.755, 0.735, 0.76, 0.74, 0.751)]
    assert levels_seen(watcher, hovering) == [PressureLevel.ELEVATED]
    assert watcher.level is PressureLevel.ELEVATED


def test_usage_well_below_the_threshold_drops_the_level() -> None:
    watcher = PressureWatcher(0.75)
    assert levels_seen(watcher, [profile(0.76), profile(0.74), profile(0.72)]) == [
        PressureLevel.ELEVATED,
        PressureLevel.NORMAL,
    ]


def test_usage_hovering_at_critical_stays_critical_until_well_below() -> None:
    watcher = PressureWatcher(0.75)
    samples = [profile(usage) for usage in (0.91, 0.89, 0.905, 0.885, 0.87)]
    assert levels_seen(watcher, samples) == [PressureLevel.CRITICAL, PressureLevel.ELEVATED]


def test_leaving_critical_holds_elevated_within_its_margin() -> None:
    watcher = PressureWatcher(0.75)
    assert levels_seen(watcher, [profile(0.95), profile(0.74), profile(0.72)]) == [
        PressureLevel.CRITICAL,
        PressureLevel.ELEVATED,
        PressureLevel.NORMAL,
    ]


def test_rising_is_immediate_even_while_a_level_is_held() -> None:
    watcher = PressureWatcher(0.75)
    assert levels_seen(watcher, [profile(0.76), profile(0.74), profile(0.92)]) == [
        PressureLevel.ELEVATED,
        PressureLevel.CRITICAL,
    ]


def test_psi_some_hovering_changes_the_level_once() -> None:
    watcher = PressureWatcher(0.75)
    hovering = [profile(0.1, some=some) for some in (10.5, 9.0, 11.0, 8.5, 10.1)]
    assert levels_seen(watcher, hovering) == [PressureLevel.ELEVATED]
    assert levels_seen(watcher, [profile(0.1, some=7.5)]) == [PressureLevel.NORMAL]


def test_psi_full_hovering_changes_the_level_once() -> None:
    watcher = PressureWatcher(0.75)
    hovering = [profile(0.1, full=full) for full in (5.5, 4.5, 5.2, 4.2, 5.1)]
    assert levels_seen(watcher, hovering) == [PressureLevel.CRITICAL]
    assert levels_seen(watcher, [profile(0.1, full=3.5)]) == [PressureLevel.NORMAL]


def test_a_single_profile_is_judged_without_hysteresis() -> None:
    assert pressure_level(profile(0.74), 0.75) is PressureLevel.NORMAL
    assert pressure_level(profile(0.1, some=9.0), 0.75) is PressureLevel.NORMAL


def test_with_available_recomputes_use(machine: FakeMachine) -> None:
    sampled = machine.sample().with_available(2048)
    assert (sampled.available_mb, sampled.used_mb, sampled.percent) == (2048, 6144, 75)
    assert sampled.host_available_mb == 2048
    assert sampled.with_available(-10).available_mb == 0
    assert sampled.with_available(10**6).available_mb == 8192


def test_with_available_keeps_host_figures_under_a_cgroup_limit(machine: FakeMachine) -> None:
    machine.limit("/", str(2 * GIB), current=1 * GIB)
    sampled = machine.sample().with_available(256)
    assert sampled.available_mb == 256
    assert sampled.host_available_mb == 4096


# Simulation


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8GB", (8192.0, 6144.0)),
        ("4GB:1.5GB", (4096.0, 1536.0)),
        ("2048MB", (2048.0, 1536.0)),
        ("2GB:2GB", (2048.0, 2048.0)),
        (" 4gb : 1gb ", (4096.0, 1024.0)),
    ],
)
def test_parse_simulation(spec: str, expected: tuple[float, float]) -> None:
    assert parse_simulation(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "lots", "4GB:", ":1GB", "4GB:5GB", "1GB:2GB:3GB", "0GB", "-2GB", "4XB"]
)
def test_parse_simulation_rejects_bad_input_with_a_fix(spec: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_simulation(spec)
    assert f"'{spec}'" in caught.value.message
    assert caught.value.fix


def test_simulated_machine_is_marked_and_has_no_gpu() -> None:
    sampled = SimulatedSampler(4096.0, 1536.0).sample()
    assert sampled.simulated
    assert (sampled.total_mb, sampled.available_mb, sampled.used_mb) == (4096, 1536, 2560)
    assert sampled.percent == 62.5
    assert sampled.gpus == ()
    assert sampled.psi_some_avg10 is None and sampled.cgroup_limit_mb is None
    assert sampled.process_rss_mb > 0


def test_simulated_available_defaults_to_three_quarters() -> None:
    assert SimulatedSampler(2048.0).sample().available_mb == 1536


def test_simulated_gpu_has_all_its_vram_free() -> None:
    (gpu,) = SimulatedSampler(8192.0, gpu_vram_mb=6144.0).sample().gpus
    assert (gpu.total_mb, gpu.used_mb, gpu.free_mb) == (6144, 0, 6144)


@pytest.mark.parametrize(
    ("total", "available", "vram"),
    [(0.0, None, None), (1024.0, 2048.0, None), (1024.0, -1.0, None), (1024.0, None, 0.0)],
)
def test_simulated_sampler_rejects_impossible_machines(
    total: float, available: float | None, vram: float | None
) -> None:
    with pytest.raises(ValueError):
        SimulatedSampler(total, available, vram)


def test_simulated_gpu_is_marked_simulated() -> None:
    (gpu,) = SimulatedSampler(8192.0, gpu_vram_mb=6144.0).sample().gpus
    assert gpu.simulated


def test_loaded_models_fill_a_simulated_machine() -> None:
    # A 4 GB machine with 600 MB in use before any model: a 2.5 GB model takes it past the
    # 75 % pressure threshold, and two of them past its total.
    empty = SimulatedSampler(4096.0, 3496.0).sample()
    one = with_loaded_models(empty, 2560.0)
    assert (one.used_mb, one.available_mb) == (3160, 936)
    assert one.percent == pytest.approx(3160 / 4096 * 100)
    assert (one.host_total_mb, one.host_available_mb) == (4096, 936)
    assert one.simulated
    assert pressure_level(empty, 0.75) is PressureLevel.NORMAL
    assert pressure_level(one, 0.75) is PressureLevel.ELEVATED
    two = with_loaded_models(empty, 5120.0)
    assert (two.used_mb, two.available_mb) == (4096, 0)
    assert pressure_level(two, 0.75) is PressureLevel.CRITICAL


def test_a_simulated_gpu_takes_the_part_of_the_models_in_vram() -> None:
    empty = SimulatedSampler(8192.0, 6144.0, gpu_vram_mb=4096.0).sample()
    loaded = with_loaded_models(empty, 3000.0, models_vram_mb=2000.0)
    assert loaded.used_mb == 2048 + 1000
    (gpu,) = loaded.gpus
    assert (gpu.used_mb, gpu.total_mb, gpu.simulated) == (2000, 4096, True)
    overfull = with_loaded_models(empty, 9000.0, models_vram_mb=5000.0)
    assert overfull.gpus[0].used_mb == 4096


def test_loaded_models_leave_live_figures_alone(machine: FakeMachine) -> None:
    live = machine.sample()
    assert with_loaded_models(live, 2560.0, models_vram_mb=1000.0) == live
    real_gpu = replace(live, gpus=(GpuMemory(0, "Real GPU", 8192.0, 1000.0),))
    assert with_loaded_models(real_gpu, 2560.0, models_vram_mb=1000.0) == real_gpu


def test_simulate_gpu_alone_keeps_ram_live_and_only_the_gpu_simulated(
    machine: FakeMachine,
) -> None:
    live = SystemSampler(proc_root=machine.proc, cgroup_root=machine.cgroup, use_gpu=False)
    sampler = SimulatedGpuSampler(6144.0, live)
    before = sampler.sample()
    machine.write(machine.proc / "meminfo", MEMINFO.replace("4194304", "2097152"))
    after = sampler.sample()
    assert (before.available_mb, after.available_mb) == (4096, 2048)
    assert not before.simulated and not after.simulated
    (gpu,) = after.gpus
    assert (gpu.total_mb, gpu.used_mb, gpu.simulated) == (6144, 0, True)
    assert after.any_simulated
    # With a model in (this host's real) RAM and none in VRAM, only the GPU could change.
    assert with_loaded_models(after, 2560.0) == after
    with pytest.raises(ValueError):
        SimulatedGpuSampler(0.0, live)


# NVML


class FakeNvmlError(Exception):
    pass


def fake_nvml(
    monkeypatch: pytest.MonkeyPatch,
    devices: list[tuple[str | bytes, int, int]],
    *,
    init: Callable[[], None] | None = None,
) -> dict[str, int]:
    calls = {"init": 0}

    def nvml_init() -> None:
        calls["init"] += 1
        if init is not None:
            init()

    module = SimpleNamespace(
        NVMLError=FakeNvmlError,
        nvmlInit=nvml_init,
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda index: devices[index],
        nvmlDeviceGetName=lambda handle: handle[0],
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(
            total=handle[1], used=handle[2], free=handle[1] - handle[2]
        ),
    )
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return calls


def test_gpus_are_reported_through_nvml(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvml(monkeypatch, [("NVIDIA T4", 16 * GIB, 1 * GIB), (b"NVIDIA L4", 24 * GIB, 0)])
    sampled = SystemSampler(proc_root=machine.proc, cgroup_root=machine.cgroup).sample()
    assert sampled.gpus == (
        GpuMemory(0, "NVIDIA T4", 16384, 1024),
        GpuMemory(1, "NVIDIA L4", 24576, 0),
    )
    assert sampled.gpus[0].free_mb == 15360


def test_nvml_is_initialised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_nvml(monkeypatch, [("NVIDIA T4", 16 * GIB, 1 * GIB)])
    probe = NvmlProbe()
    assert len(probe.read()) == 1
    assert len(probe.read()) == 1
    assert calls["init"] == 1


def test_gpu_use_can_be_turned_off(machine: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_nvml(monkeypatch, [("NVIDIA T4", 16 * GIB, 1 * GIB)])
    assert machine.sample().gpus == ()
    assert calls["init"] == 0


def test_missing_nvml_package_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert NvmlProbe().read() == ()


def test_missing_driver_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise FakeNvmlError("NVML Shared Library Not Found")

    fake_nvml(monkeypatch, [("NVIDIA T4", 16 * GIB, 1 * GIB)], init=no_driver)
    assert NvmlProbe().read() == ()


def test_gpu_that_stops_answering_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml(monkeypatch, [("NVIDIA T4", 16 * GIB, 1 * GIB)])
    probe = NvmlProbe()
    assert len(probe.read()) == 1

    def lost(handle: object) -> None:
        raise FakeNvmlError("GPU is lost")

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlDeviceGetMemoryInfo", lost)
    assert probe.read() == ()


def test_this_process_rss_comes_from_statm(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "statm").write_text("50000 2560 300 10 0 900 0\n")
    page = os.sysconf("SC_PAGE_SIZE")
    assert RssProbe(tmp_path).read_mb() == 2560 * page / MIB


def test_this_process_rss_without_statm_asks_psutil(tmp_path: Path) -> None:
    measured = RssProbe(tmp_path).read_mb()
    reference = psutil.Process().memory_info().rss / MIB
    # The same process measured twice: only what was allocated in between differs.
    assert abs(measured - reference) < 16


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_statm_and_psutil_agree_on_this_process() -> None:
    assert abs(RssProbe().read_mb() - psutil.Process().memory_info().rss / MIB) < 16


def test_a_simulated_size_too_large_to_be_a_machine_is_refused() -> None:
    with pytest.raises(UsageError, match="larger than any machine"):
        parse_simulation("9" * 400 + "GB")
