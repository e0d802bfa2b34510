"""Another machine's memory, read from the page its Prometheus node_exporter serves.

node_exporter publishes `/proc/meminfo` as gauges named `node_memory_<field>_bytes`, and, on
kernels with PSI, `/proc/pressure/memory` as two counters of seconds:
`node_pressure_memory_waiting_seconds_total` (time at least one task stalled on memory, PSI
`some`) and `node_pressure_memory_stalled_seconds_total` (time all tasks stalled, PSI `full`).

The kernel's own `avg10` is a running average the exporter does not publish, so one page gives
no pressure figure. Two pages do: the stalled seconds a counter gained between them, over the
wall-clock seconds between them, as a percentage (`stall_percent`). That is the share of time
stalled over the whole interval between the two scrapes, which for scrapes about ten seconds
apart reads like `avg10`, and over longer intervals like a plain average of that length.

The page is read with prometheus-client's parser (imported with this module, ~90 ms: only the
code that scrapes imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from nemo_tui.errors import NemoError
from nemo_tui.units import bytes_to_mb

_TOTAL = "node_memory_MemTotal_bytes"
_AVAILABLE = "node_memory_MemAvailable_bytes"
_BUFFERS = "node_memory_Buffers_bytes"
_CACHED = "node_memory_Cached_bytes"
_SWAP_TOTAL = "node_memory_SwapTotal_bytes"
_SWAP_FREE = "node_memory_SwapFree_bytes"
_WAITING = "node_pressure_memory_waiting_seconds_total"
_STALLED = "node_pressure_memory_stalled_seconds_total"
_WANTED = frozenset(
    {_TOTAL, _AVAILABLE, _BUFFERS, _CACHED, _SWAP_TOTAL, _SWAP_FREE, _WAITING, _STALLED}
)
_FAMILY_PREFIXES = ("node_memory_", "node_pressure_memory_")
_COMMENT_PREFIXES = tuple(
    f"# {kind} {prefix}" for kind in ("HELP", "TYPE") for prefix in _FAMILY_PREFIXES
)


class NotNodeExporterMemory(NemoError):
    """A page that carries no node_exporter memory figures (or is no Prometheus text at all)."""

    title = "Not a node_exporter page"


@dataclass(frozen=True, slots=True)
class NodeMemory:
    """The memory figures of one node_exporter page, in MB; None where the page has no such
    metric (an old kernel without MemAvailable or PSI, a collector turned off)."""

    total_mb: float
    """`MemTotal`: the machine's RAM."""
    available_mb: float | None
    """`MemAvailable`: what can be allocated without swapping."""
    page_cache_mb: float | None
    """`Buffers` plus `Cached`; memory-mapped model weights live here."""
    swap_total_mb: float | None
    swap_free_mb: float | None
    waiting_s: float | None
    """Seconds, since boot, that some task stalled on memory (the PSI `some` counter)."""
    stalled_s: float | None
    """Seconds, since boot, that every task stalled on memory (the PSI `full` counter)."""

    @property
    def swap_used_mb(self) -> float | None:
        """Swap in use; None when either swap figure is missing."""
        if self.swap_total_mb is None or self.swap_free_mb is None:
            return None
        return max(0.0, self.swap_total_mb - self.swap_free_mb)

    def pressure_since(
        self, earlier: NodeMemory | None, elapsed_s: float
    ) -> tuple[float | None, float | None]:
        """PSI `some` and `full` as percentages of the time between an earlier page and this one.

        Args:
            earlier: The page scraped before this one from the same exporter, or None for the
                first scrape.
            elapsed_s: Wall-clock seconds between the two scrapes.

        Returns:
            `(some, full)`, each None when it cannot be told: no earlier page, a counter
            missing from either page, no time elapsed, or a counter that went down (the
            exporter's machine rebooted between the scrapes).
        """
        if earlier is None:
            return None, None
        return (
            stall_percent(earlier.waiting_s, self.waiting_s, elapsed_s),
            stall_percent(earlier.stalled_s, self.stalled_s, elapsed_s),
        )


def stall_percent(before_s: float | None, after_s: float | None, elapsed_s: float) -> float | None:
    """The share of `elapsed_s` a stall counter grew by, in percent (0..100).

    Args:
        before_s: The counter at the first scrape.
        after_s: The counter at the second scrape.
        elapsed_s: Seconds between the scrapes.

    Returns:
        The percentage, or None when either reading is missing, no time passed, or the counter
        went down (it restarted from zero).
    """
    if before_s is None or after_s is None or elapsed_s <= 0 or after_s < before_s:
        return None
    # Scrape times are taken by the reader, not the exporter, so network jitter can make a
    # fully stalled interval read slightly above 100 %.
    return min(100.0, (after_s - before_s) / elapsed_s * 100.0)


def parse_node_memory(text: str) -> NodeMemory:
    """Read the memory figures from a node_exporter page (Prometheus text format).

    Args:
        text: The body of the exporter's `/metrics`.

    Returns:
        The figures found; only `MemTotal` is required.

    Raises:
        NotNodeExporterMemory: the text is not Prometheus text, or has no
            `node_memory_MemTotal_bytes` (not a node_exporter, or its meminfo collector is off).
    """
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(_memory_lines(text)):
            for sample in family.samples:
                if sample.name in _WANTED and not sample.labels:
                    values[sample.name] = float(sample.value)
    except ValueError as exc:
        raise NotNodeExporterMemory(
            f"the page is not Prometheus text ({exc})",
            fix="point node_exporter_url at the exporter's /metrics",
        ) from exc
    total = values.get(_TOTAL)
    if total is None:
        raise NotNodeExporterMemory(
            f"the page has no {_TOTAL}",
            fix="point node_exporter_url at a node_exporter with its meminfo collector on",
        )
    buffers, cached = values.get(_BUFFERS), values.get(_CACHED)
    return NodeMemory(
        total_mb=bytes_to_mb(total),
        available_mb=_mb(values.get(_AVAILABLE)),
        page_cache_mb=None if buffers is None or cached is None else bytes_to_mb(buffers + cached),
        swap_total_mb=_mb(values.get(_SWAP_TOTAL)),
        swap_free_mb=_mb(values.get(_SWAP_FREE)),
        waiting_s=values.get(_WAITING),
        stalled_s=values.get(_STALLED),
    )


def _mb(value: float | None) -> float | None:
    return None if value is None else bytes_to_mb(value)


def _memory_lines(text: str) -> str:
    """Only the memory families of a page.

    A big server's page has thousands of samples (per CPU, disk, interface) and the parser is
    pure Python; handing it the memory lines alone keeps a scrape of any machine to a few ms.
    """
    kept = [
        line
        for line in text.splitlines()
        if line.startswith(_FAMILY_PREFIXES) or line.startswith(_COMMENT_PREFIXES)
    ]
    return "\n".join(kept) + "\n"
