"""Reading another machine's memory from a node_exporter page: the figures, PSI from two
scrapes, and a page that is not a node_exporter's."""

from __future__ import annotations

import pytest

from nemo_tui.core.memory.node_exporter import (
    NodeMemory,
    NotNodeExporterMemory,
    parse_node_memory,
    stall_percent,
)

MIB = 2**20

# What node_exporter 1.5 (Debian's prometheus-node-exporter) serves for a 16 GiB machine with
# its meminfo and pressure collectors, among the families of its other collectors.
PAGE = """\
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 612345.67
node_cpu_seconds_total{cpu="0",mode="user"} 23456.78
# HELP node_memory_Buffers_bytes Memory information field Buffers_bytes.
# TYPE node_memory_Buffers_bytes gauge
node_memory_Buffers_bytes 2.68435456e+08
# HELP node_memory_Cached_bytes Memory information field Cached_bytes.
# TYPE node_memory_Cached_bytes gauge
node_memory_Cached_bytes 3.221225472e+09
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 9.771679744e+09
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 1.7179869184e+10
# HELP node_memory_SwapFree_bytes Memory information field SwapFree_bytes.
# TYPE node_memory_SwapFree_bytes gauge
node_memory_SwapFree_bytes 1.610612736e+09
# HELP node_memory_SwapTotal_bytes Memory information field SwapTotal_bytes.
# TYPE node_memory_SwapTotal_bytes gauge
node_memory_SwapTotal_bytes 2.147483648e+09
# HELP node_pressure_cpu_waiting_seconds_total Total time in seconds that processes have waited for CPU time
# TYPE node_pressure_cpu_waiting_seconds_total counter
node_pressure_cpu_waiting_seconds_total 4960.984249
# HELP node_pressure_memory_stalled_seconds_total Total time in seconds no process could make progress due to memory congestion
# TYPE node_pressure_memory_stalled_seconds_total counter
node_pressure_memory_stalled_seconds_total 1.5
# HELP node_pressure_memory_waiting_seconds_total Total time in seconds that processes have waited for memory
# TYPE node_pressure_memory_waiting_seconds_total counter
node_pressure_memory_waiting_seconds_total 12.25
# HELP node_scrape_collector_success node_exporter: Whether a collector succeeded.
# TYPE node_scrape_collector_success gauge
node_scrape_collector_success{collector="meminfo"} 1
node_scrape_collector_success{collector="pressure"} 1
"""  # noqa: E501 - node_exporter's own HELP lines


def test_a_page_gives_the_machines_memory_in_mb() -> None:
    memory = parse_node_memory(PAGE)
    assert memory.total_mb == 17179869184 / MIB == 16384
    assert memory.available_mb == 9771679744 / MIB
    assert memory.page_cache_mb == (268435456 + 3221225472) / MIB
    assert (memory.swap_total_mb, memory.swap_free_mb) == (2048, 1536)
    assert memory.swap_used_mb == 512
    assert (memory.waiting_s, memory.stalled_s) == (12.25, 1.5)


def test_one_page_gives_no_pressure_figure() -> None:
    assert parse_node_memory(PAGE).pressure_since(None, 0.0) == (None, None)


def page_with_counters(waiting_s: float, stalled_s: float) -> str:
    return PAGE.replace(
        "node_pressure_memory_waiting_seconds_total 12.25",
        f"node_pressure_memory_waiting_seconds_total {waiting_s}",
    ).replace(
        "node_pressure_memory_stalled_seconds_total 1.5",
        f"node_pressure_memory_stalled_seconds_total {stalled_s}",
    )


def test_two_pages_give_the_share_of_time_stalled_between_them() -> None:
    first = parse_node_memory(page_with_counters(12.25, 1.5))
    # Ten seconds later, tasks had waited 2.5 s more for memory, and all of them 0.5 s more.
    second = parse_node_memory(page_with_counters(14.75, 2.0))
    assert second.pressure_since(first, 10.0) == pytest.approx((25.0, 5.0))


def test_counters_that_went_down_mean_a_reboot_and_no_figure() -> None:
    before = parse_node_memory(page_with_counters(500.0, 40.0))
    after_reboot = parse_node_memory(page_with_counters(1.0, 0.0))
    assert after_reboot.pressure_since(before, 30.0) == (None, None)


def test_a_stall_share_never_reads_above_all_the_time() -> None:
    # A scrape that arrived a little late makes the interval look shorter than the stall.
    assert stall_percent(10.0, 20.5, 10.0) == 100.0
    assert stall_percent(10.0, 10.0, 0.0) is None


def test_missing_figures_are_unknown_not_zero() -> None:
    page = "\n".join(
        line
        for line in PAGE.splitlines()
        if "MemAvailable" not in line and "Swap" not in line and "pressure_memory" not in line
    )
    memory = parse_node_memory(page)
    assert memory.total_mb == 16384
    assert memory.available_mb is None
    assert (memory.swap_total_mb, memory.swap_used_mb) == (None, None)
    second = NodeMemory(16384, 8000, None, None, None, None, None)
    assert second.pressure_since(memory, 10.0) == (None, None)


def test_a_page_without_memtotal_is_not_a_node_exporter_memory_page() -> None:
    vllm_metrics = (
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 2.0\n'
    )
    with pytest.raises(NotNodeExporterMemory, match="no node_memory_MemTotal_bytes"):
        parse_node_memory(vllm_metrics)


def test_the_exporters_html_landing_page_is_refused() -> None:
    html = "<html><head><title>Node Exporter</title></head><body><h1>Node Exporter</h1>"
    with pytest.raises(NotNodeExporterMemory, match="no node_memory_MemTotal_bytes"):
        parse_node_memory(html)


def test_a_broken_memory_line_is_refused_as_not_prometheus_text() -> None:
    broken = PAGE.replace(
        "node_memory_MemTotal_bytes 1.7179869184e+10", "node_memory_MemTotal_bytes 16 GB"
    )
    with pytest.raises(NotNodeExporterMemory, match="not Prometheus text"):
        parse_node_memory(broken)
