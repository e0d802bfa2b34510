"""The dashboard serves nemo-tui's Prometheus metrics while it runs when `metrics.listen` says
where, and stops when it closes; without the setting it serves nothing."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.support import free_port
from tests.ui.support import make_rig, settle, started


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
async def test_the_dashboard_serves_its_metrics_where_the_config_says(tmp_path: Path) -> None:
    port = free_port()
    rig = make_rig(tmp_path, config_text=f"metrics:\n  listen: 127.0.0.1:{port}\n")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await settle(pilot, lambda: any("Serving metrics at" in note for note in rig.notes))
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        total = families["nemo_tui_host_memory_total_bytes"].samples[0]
        assert total.labels["host"] == "local"
        assert total.value == rig.sampler.sample().total_mb * 2**20
    # Closed with the dashboard: the port is free again.
    assert not await asyncio.to_thread(listening, port)


async def test_a_port_in_use_is_said_and_the_dashboard_runs_on(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        rig = make_rig(tmp_path, config_text=f"metrics:\n  listen: 127.0.0.1:{port}\n")
        async with rig.app.run_test(size=(120, 40)) as pilot:
            await started(pilot)
            await settle(pilot, lambda: any("Metrics not served" in n for n in rig.notes))
            assert str(port) in next(n for n in rig.notes if "Metrics not served" in n)
