"""`--simulate-memory` and `--simulate-gpu`: which figures each pretends, and which stay live."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nemo_tui.cli.context import make_sampler
from nemo_tui.core.memory import profile as memory
from nemo_tui.core.memory.probes import HostMemory
from nemo_tui.core.memory.profile import PressureLevel
from nemo_tui.core.reports.memory_json import memory_json


@pytest.fixture
def changing_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's RAM as a series of readings: 6 GB free of 16 GB, then 5, 4, ..."""
    readings: Iterator[float] = iter(range(6, 0, -1))

    def next_reading(path: str) -> HostMemory:
        return HostMemory(16 * 1024.0, next(readings) * 1024.0, 2048.0, 0.0, 0.0)

    monkeypatch.setattr(memory, "read_host_memory", next_reading)


@pytest.mark.usefixtures("changing_host")
def test_simulate_gpu_alone_reads_ram_live_on_every_sample() -> None:
    sampler = make_sampler(None, "8GB")
    first, second = sampler.sample(), sampler.sample()
    assert (first.available_mb, second.available_mb) == (6 * 1024, 5 * 1024)
    assert first.total_mb == 16 * 1024
    assert not second.simulated
    (gpu,) = second.gpus
    assert (gpu.total_mb, gpu.simulated) == (8192, True)


@pytest.mark.usefixtures("changing_host")
def test_status_json_says_which_figures_are_simulated() -> None:
    gpu_only = memory_json(make_sampler(None, "8GB").sample(), PressureLevel.NORMAL)
    assert gpu_only["simulated"] is False
    assert gpu_only["gpus"] == [
        {"index": 0, "name": "Simulated GPU", "total_mb": 8192, "used_mb": 0, "simulated": True}
    ]
    both = memory_json(make_sampler("4GB", "2GB").sample(), PressureLevel.NORMAL)
    assert both["simulated"] is True and both["total_mb"] == 4096
    gpus = both["gpus"]
    assert isinstance(gpus, list) and [gpu["simulated"] for gpu in gpus] == [True]
