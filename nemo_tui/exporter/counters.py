"""Counters for Prometheus, fed from the history file every nemo-tui process appends to.

The dashboard and every CLI command append what their queries, script runs and evictions did to
one history file (`nemo_tui.engine.history`). The exporter follows that file the way `tail -f`
does, so a query asked in another process counts as soon as its line is written, and it counts
the lines in the same `Metrics` that `stats --json` reports from.

Counter semantics, for `rate()` and `increase()`:

- When the exporter starts, the counts are those of the newest records the file holds (the same
  window `stats --json` reads: `Metrics.capacity` lines), so its first scrape agrees with
  `stats --json`. A restarted exporter can therefore start lower than it stopped: Prometheus
  sees a counter reset, as for any restarted exporter.
- From then on every new line is counted once and the counts never fall, also when another
  process trims the file: the file is rewritten (a new file replaces it) with its newest lines,
  and only the records newer than the newest one counted are taken from it.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from nemo_tui.core.reports.metrics import Metrics, QueryRecord
from nemo_tui.engine.history import HistoryRecord, add_record, parse_record

FIRST_TOKEN_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
"""Time to the first token: a warm small model answers in tenths of a second; a cold load of a
large one, or a CPU-only machine, takes tens of seconds."""
DURATION_BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""A whole answer: from a one-line reply to a long answer from a large model on a CPU."""


class LatencyHistogram:
    """Bucket counts and a sum, as a Prometheus histogram keeps them (cumulative `le` buckets).

    Args:
        bounds: The buckets' upper bounds in seconds, ascending; `+Inf` is added.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum_s = 0.0
        """The sum of every observed value."""

    def observe(self, seconds: float) -> None:
        """Count one measurement."""
        index = next((i for i, bound in enumerate(self.bounds) if seconds <= bound), -1)
        self._counts[index] += 1
        self.sum_s += seconds

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self._counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """`(upper bound, values at or below it)` for every bucket, `+Inf` last."""
        running = 0
        buckets = []
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


class HistoryCounters:
    """Everything the history file counts, kept up to date by `refresh()`.

    Not thread-safe: refresh and read it from one thread (the engine's event loop).

    Args:
        path: The history file; it need not exist yet.
        capacity: How many of its newest lines the first read counts, and how many queries the
            metrics keep for their rates; None for the engine's (`Metrics`' default).
    """

    def __init__(self, path: Path, capacity: int | None = None) -> None:
        self.path = path
        self.metrics = Metrics() if capacity is None else Metrics(capacity)
        """The counts, rates and percentiles `stats --json` would report from the same lines."""
        self.first_token = LatencyHistogram(FIRST_TOKEN_BUCKETS_S)
        """Seconds to the first token of every answered query counted."""
        self.duration = LatencyHistogram(DURATION_BUCKETS_S)
        """Seconds from sending to the end of the answer, of every answered query counted."""
        self._file_id: tuple[int, int] | None = None
        self._offset = 0
        """Where the next unread line of the file starts."""
        self._newest_at = -math.inf
        """The time of the newest record counted: what a rewritten file is read after."""
        self._started = False

    def refresh(self) -> int:
        """Count the lines added since the last refresh (on the first, the newest lines).

        A line still being written is left for the next refresh; an unreadable one is skipped.
        A missing or unreadable file counts nothing.

        Returns:
            How many records were counted.
        """
        try:
            with self.path.open("rb") as stream:
                status = os.fstat(stream.fileno())
                file_id = (status.st_dev, status.st_ino)
                # Replaced (trimmed by another process) or cut short: its lines are all read
                # again, and only the records newer than those counted are new.
                rewritten = self._started and (
                    file_id != self._file_id or status.st_size < self._offset
                )
                lines: Iterable[bytes]
                if not self._started:
                    lines = deque(stream, maxlen=self.metrics.capacity)
                else:
                    stream.seek(0 if rewritten else self._offset)
                    lines = list(stream)
                records = self._complete(lines, stream.tell())
        except OSError:
            self._started = True
            return 0
        if rewritten:
            records = self._newer(records)
        self._started = True
        self._file_id = file_id
        for record in records:
            self._count(record)
        return len(records)

    def _complete(self, lines: Iterable[bytes], end: int) -> list[HistoryRecord]:
        """The records on the whole lines of `lines`, which run to byte `end` of the file.

        The next read starts at the last line when a newline does not end it yet: its writer
        may not be done with it.
        """
        whole = list(lines)
        if whole and not whole[-1].endswith(b"\n"):
            end -= len(whole.pop())
        self._offset = end
        return [record for line in whole if (record := parse_record(line)) is not None]

    def _newer(self, records: list[HistoryRecord]) -> list[HistoryRecord]:
        """Of a rewritten file's records, those newer than the newest one already counted."""
        return [record for record in records if record.at > self._newest_at]

    def _count(self, record: HistoryRecord) -> None:
        add_record(self.metrics, record)
        self._newest_at = max(self._newest_at, record.at)
        if isinstance(record, QueryRecord) and not record.failed:
            # As `Metrics.latency_percentiles`: a quick failure is not a fast answer.
            self.duration.observe(record.total_s)
            if record.first_token_s is not None:
                self.first_token.observe(record.first_token_s)
